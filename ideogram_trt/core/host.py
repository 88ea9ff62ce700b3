"""What a benchmark record says about the machine it ran on: the CPU model and installed package versions.
Never raises: a record with an unknown field beats a benchmark that dies at its last line."""

from __future__ import annotations

import importlib.metadata
import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (``platform.processor()`` is empty on most Linux builds)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except (OSError, UnicodeDecodeError):
        pass
    return platform.processor() or platform.machine()


def package_version(*names: str) -> str | None:
    """The installed version of the first distribution found among ``names`` (wheels ship under several
    names, e.g. onnxruntime / onnxruntime-gpu), or None."""
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def memory_gib() -> float | None:
    """Total host RAM in GiB, from /proc/meminfo."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, UnicodeDecodeError, ValueError, IndexError):
        pass
    return None
