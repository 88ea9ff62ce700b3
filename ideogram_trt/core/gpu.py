"""The GPUs this machine can see, from ``nvidia-smi`` (present wherever the NVIDIA driver is): name, compute
capability and memory. No driver, no GPUs — never an exception."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    compute_capability: str  # "9.0"
    memory_mib: int


def _query(fields: str, units: bool = True) -> list[str]:
    """nvidia-smi's CSV lines for ``--query-gpu=fields``; none without a driver or when the query fails."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    csv = "--format=csv,noheader" if units else "--format=csv,noheader,nounits"
    try:
        result = subprocess.run([smi, f"--query-gpu={fields}", csv], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return []
    return result.stdout.strip().splitlines() if result.returncode == 0 else []


def visible_gpus() -> list[GpuInfo]:
    gpus = []
    for line in _query("index,name,compute_cap,memory.total", units=False):
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 4 and parts[0].isdigit():
            memory = int(parts[3]) if parts[3].isdigit() else 0
            gpus.append(GpuInfo(int(parts[0]), parts[1], parts[2], memory))
    return gpus


def card_lines() -> list[str]:
    """One line per GPU for benchmark records: name, driver, max SM clock and power limit, as nvidia-smi
    prints them (the card line BENCHMARKS.md asks for). Empty without a driver."""
    return _query("name,driver_version,clocks.max.sm,power.limit")
