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


def visible_gpus() -> list[GpuInfo]:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        result = subprocess.run(
            [smi, "--query-gpu=index,name,compute_cap,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in result.stdout.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 4 and parts[0].isdigit():
            memory = int(parts[3]) if parts[3].isdigit() else 0
            gpus.append(GpuInfo(int(parts[0]), parts[1], parts[2], memory))
    return gpus


def card_lines() -> list[str]:
    """One line per GPU for benchmark records: name, driver, max SM clock and power limit, as nvidia-smi
    prints them (the card line BENCHMARKS.md asks for). Empty without a driver."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    query = "--query-gpu=name,driver_version,clocks.max.sm,power.limit"
    try:
        result = subprocess.run([smi, query, "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return []
    return result.stdout.strip().splitlines() if result.returncode == 0 else []
