"""Install NVIDIA's datacenter TensorRT type stubs for mypy, patched, into a folder of their own.

The stubs package (tensorrt-stubs 10.13) depends on ``tensorrt``, which is not installable here, so it is
installed with ``--no-deps``; and it goes into its own folder (used as MYPYPATH), never site-packages, where
its bare ``tensorrt/`` directory would make ``import tensorrt`` succeed as an empty namespace package.
Two defects of the generated stub are patched (feasibility.md §6): parameters named ``in`` (a keyword) and a
parameter without a default after defaulted ones; ``py.typed`` markers make mypy use them.

Usage: python tools/tensorrt_stubs.py DEST
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

STUBS = "tensorrt-stubs==10.13.0.35.1"


def main(dest: Path) -> int:
    marker = dest / ".patched"
    if marker.is_file():
        return 0
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(dest), STUBS], check=True
    )
    for stub in dest.rglob("*.pyi"):
        text = stub.read_text()
        text = re.sub(r"([(,] )in: ", r"\1in_: ", text)
        text = re.sub(r"channel_axis: int(?=[,)])", "channel_axis: int = 0", text)
        stub.write_text(text)
    for package in ("tensorrt", "tensorrt_bindings"):
        (dest / package / "py.typed").write_text("partial\n")
    marker.write_text(STUBS + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1])))
