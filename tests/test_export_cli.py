"""`ideogram-trt export`: bad input gets one line and a non-zero exit, and no partial graph is left behind."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from onnx_support import feeds, session

from ideogram_trt.cli import main
from ideogram_trt.engines.tensorrt_adapter import BuildTarget, Flavor, build_engine


def export_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ideogram_trt", "export", *args], capture_output=True, text=True, check=False
    )


def assert_clean_failure(result: subprocess.CompletedProcess[str], message: str, out: Path) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and message in lines[-1], lines
    assert not any(p.name.startswith(f".{out.name}.partial") for p in out.parent.iterdir())


def test_checkpoint_missing_a_component(tiny_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_dir, broken)
    shutil.rmtree(broken / "unconditional_transformer")
    out = tmp_path / "out"
    result = export_cli("--model", str(broken), "--out", str(out), "--recipe", "fp8-wo", "--components", "dit_uncond")
    assert_clean_failure(result, "broken/unconditional_transformer: missing", out)
    assert not out.exists()
    shutil.rmtree(broken / "vae")
    result = export_cli("--model", str(broken), "--out", str(out), "--recipe", "fp8-wo")
    assert_clean_failure(result, "broken/vae: missing", out)


def test_unknown_recipe(tiny_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = export_cli("--model", str(tiny_dir), "--out", str(out), "--recipe", "int4")
    assert_clean_failure(result, "unknown recipe 'int4': use one of bf16, fp8-wo, fp8", out)
    assert not out.exists()


def test_fp8_without_calibration(tiny_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = export_cli("--model", str(tiny_dir), "--out", str(out), "--recipe", "fp8")
    assert_clean_failure(result, "needs --calibration FILE", out)
    assert not out.exists()


def test_calibration_from_another_checkpoint(calibration_file: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    assert main(["make-tiny", str(other), "--seed", "1"]) == 0
    out = tmp_path / "out"
    args = ["--model", str(other), "--out", str(out), "--recipe", "fp8", "--calibration", str(calibration_file)]
    result = export_cli(*args, "--components", "dit_uncond")
    assert_clean_failure(result, "calibrated on another checkpoint", out)
    assert not out.exists()


def test_output_dir_with_other_content(tiny_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    result = export_cli("--model", str(tiny_dir), "--out", str(out), "--recipe", "fp8-wo")
    assert_clean_failure(result, "exists and holds other files", out)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_failure_mid_export_leaves_nothing(tiny_dir: Path, tmp_path: Path, monkeypatch) -> None:
    from ideogram_trt.export import exporter

    real = exporter.export_graph
    calls = []

    def failing(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 2:
            raise exporter.IdeogramTrtError("simulated failure on the second graph")
        return real(*args, **kwargs)

    monkeypatch.setattr(exporter, "export_graph", failing)
    out = tmp_path / "out"
    assert main(["export", "--model", str(tiny_dir), "--out", str(out), "--recipe", "fp8-wo",
                 "--dtype", "fp32", "--components", "dit_uncond,vae_decoder"]) == 2  # fmt: skip
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == []


def test_external_data_graph_runs_and_builds(tiny_dir: Path, exports, tmp_path: Path) -> None:
    """Weights in a side file (as every full-size graph has them) load in ONNX Runtime and TensorRT-RTX."""
    out = tmp_path / "external"
    assert main(["export", "--model", str(tiny_dir), "--out", str(out), "--recipe", "fp8-wo", "--dtype", "fp32",
                 "--components", "dit_uncond", "--external-data", "always"]) == 0  # fmt: skip
    sidecar = json.loads((out / "dit_uncond.json").read_text())
    assert sidecar["external_data"] == "dit_uncond.onnx.data"
    assert (out / "dit_uncond.onnx.data").stat().st_size > (out / "dit_uncond.onnx").stat().st_size
    inline = exports.get("fp8-wo", "fp32", ("dit_cond", "dit_cond_masked", "dit_uncond", "vae_decoder"))
    inputs = (torch.randn(1, 16, 16), torch.rand(1), torch.randn(16, 32), torch.randn(16, 32))
    a = session(out / "dit_uncond.onnx").run(None, feeds(sidecar["inputs"], inputs))[0]
    b = session(inline / "dit_uncond.onnx").run(None, feeds(sidecar["inputs"], inputs))[0]
    np.testing.assert_array_equal(a, b)
    from ideogram_trt.engines.buckets import Bucket
    from ideogram_trt.engines.profiles import profile_for

    build_engine(out / "dit_uncond.onnx", [profile_for(sidecar["inputs"], Bucket(256, 256))],
                 BuildTarget(Flavor.TENSORRT_RTX, ("8.9",)))  # fmt: skip


@pytest.mark.parametrize("flag", ["--help"])
def test_export_and_calibrate_help(flag: str) -> None:
    for command in ("export", "calibrate", "lint"):
        result = subprocess.run(
            [sys.executable, "-m", "ideogram_trt", command, flag], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0 and "usage: ideogram-trt" in result.stdout
