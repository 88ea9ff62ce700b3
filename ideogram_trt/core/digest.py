"""sha256 of files, cached so multi-GB plans and checkpoints are hashed once.

A cache entry is keyed on the file's real path, device, inode, size, mtime *and ctime* (nanoseconds). mtime alone
can be put back by anyone who can write the file (``touch -r``), so it cannot vouch for bytes; ctime cannot be set
from user space: every write, truncate, rename or ``touch`` of the file moves it to the current time. So an entry
matches only a file no one has touched since it was hashed (or one restored by someone who can set the system
clock, i.e. root, whom no cache can stop). This is the same rule git's index uses to trust its stat cache.

The cache lives under ``$IDEOGRAM_TRT_CACHE`` (default ``~/.cache/ideogram-trt``), is read only when it belongs to
this user, and is written atomically; a read-only home only costs re-hashing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

from ideogram_trt.core.errors import IdeogramTrtError
from ideogram_trt.core.files import atomic_write

CACHE_ENV = "IDEOGRAM_TRT_CACHE"
CHUNK = 16 << 20


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "ideogram-trt")


def _load(path: Path) -> dict[str, str]:
    try:
        if path.stat().st_uid != os.getuid():  # another user's cache could vouch for anything
            return {}
        value = json.loads(path.read_text())
        return value if isinstance(value, dict) else {}
    except (OSError, ValueError):
        return {}


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_digest(path: Path) -> str:
    """sha256 hex digest of the file's bytes."""
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_dev}|{stat.st_ino}|{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ctime_ns}"
    cache_file = cache_dir() / "file-digests.json"
    cache = _load(cache_file)
    if key in cache:
        return cache[key]
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    value = digest.hexdigest()
    cache[key] = value
    with contextlib.suppress(OSError, IdeogramTrtError):
        atomic_write(cache_file, json.dumps(cache), what="digest cache")
    return value


def json_digest(value: object) -> str:
    """sha256 of a JSON-serializable value in canonical form (sorted keys, no whitespace)."""
    return sha256_bytes(json.dumps(value, sort_keys=True, separators=(",", ":")).encode())
