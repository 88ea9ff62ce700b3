"""mypy checks the TensorRT adapter against the datacenter TensorRT API (`make typecheck` runs it on core and
engines); here: the stubs are really in use — planted API misuse is caught, not waved through as Any."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STUBS = Path(sys.prefix) / "typing-stubs"  # the venv, where `make test` installs them

PLANTED = """
from __future__ import annotations
from typing import TYPE_CHECKING, Any
if TYPE_CHECKING:
    import tensorrt as trt

def build(module: Any) -> None:
    builder: trt.Builder = module.Builder(None)
    config: trt.IBuilderConfig = builder.create_builder_config()
    config.set_flag("FP16")
    config.builder_optimization_level = "high"
    network: trt.INetworkDefinition = builder.create_network(0)
    network.add_identity(3)
"""


def mypy(*targets: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MYPYPATH": str(STUBS)}
    command = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "mypy.ini"), *targets]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, check=False)


def test_planted_tensorrt_misuse_is_caught(tmp_path: Path) -> None:
    assert (STUBS / "tensorrt" / "py.typed").is_file(), "make test installs the stubs (tools/tensorrt_stubs.py)"
    planted = tmp_path / "planted.py"
    planted.write_text(PLANTED)
    result = mypy(str(planted))
    assert result.returncode == 1
    assert 'Argument 1 to "set_flag" of "IBuilderConfig" has incompatible type "str"' in result.stdout
    assert 'Incompatible types in assignment (expression has type "str", variable has type "int")' in result.stdout
    assert 'Argument 1 to "add_identity" of "INetworkDefinition" has incompatible type "int"' in result.stdout


def test_engines_stage_passes() -> None:
    result = mypy("ideogram_trt/core", "ideogram_trt/engines", "ideogram_trt/runtime")
    assert result.returncode == 0, result.stdout
