"""The serving side stays thin: core imports neither torch, transformers nor diffusers (docs/ARCHITECTURE.md §3)."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys
import ideogram_trt.core.contracts, ideogram_trt.core.rope, ideogram_trt.core.schedule, ideogram_trt.core.tokenization
import ideogram_trt.cli
heavy = sorted(m for m in ("torch", "transformers", "diffusers", "safetensors") if m in sys.modules)
print(",".join(heavy))
"""


def test_core_and_cli_import_without_heavy_packages() -> None:
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
