"""Content hashes of a checkpoint: per component folder and for a set of components.

They tie every exported graph, calibration file and engine to the exact weights it came from (sha256 of the
bytes, cached by file stat; see ``core.digest``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ideogram_trt.core.digest import file_digest, json_digest


def folder_digest(folder: Path) -> str:
    """sha256 over every file of a component folder (relative name + content digest), order-independent."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode())
        digest.update(file_digest(path).encode())
    return digest.hexdigest()


def combined_digest(parts: dict[str, str]) -> str:
    return json_digest(parts)
