"""Content hashes of a checkpoint: per component folder and for the whole checkpoint.

They tie every exported graph, calibration file and engine to the exact weights it came from. File digests are
sha256 of the bytes (28 GB for the release: about a minute), cached per (path, size, mtime) under
``$IDEOGRAM_TRT_CACHE`` (default ``~/.cache/ideogram-trt``) so later runs pay nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

CACHE_ENV = "IDEOGRAM_TRT_CACHE"
CHUNK = 16 << 20


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "ideogram-trt")


def _load_cache(path: Path) -> dict[str, str]:
    try:
        value = json.loads(path.read_text())
        return value if isinstance(value, dict) else {}
    except (OSError, json.JSONDecodeError):
        return {}


def file_digest(path: Path) -> str:
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    cache_file = cache_dir() / "file-digests.json"
    cache = _load_cache(cache_file)
    if key in cache:
        return cache[key]
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    value = digest.hexdigest()
    cache[key] = value
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache))
        tmp.replace(cache_file)
    except OSError:
        pass  # a read-only home only costs re-hashing next time
    return value


def folder_digest(folder: Path) -> str:
    """sha256 over every file of a component folder (relative name + content digest), order-independent."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode())
        digest.update(file_digest(path).encode())
    return digest.hexdigest()


def checkpoint_digests(root: Path, components: tuple[str, ...]) -> dict[str, str]:
    return {name: folder_digest(root / name) for name in components if (root / name).is_dir()}


def combined_digest(parts: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
