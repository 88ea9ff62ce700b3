"""`ideogram-trt export`: bad input gets one line and a non-zero exit, and no partial graph is left behind."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ideogram_trt.cli import main


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


@pytest.mark.parametrize("flag", ["--help"])
def test_export_and_calibrate_help(flag: str) -> None:
    for command in ("export", "calibrate", "lint"):
        result = subprocess.run(
            [sys.executable, "-m", "ideogram_trt", command, flag], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0 and "usage: ideogram-trt" in result.stdout


def test_build_engines_passes_the_export_options_to_its_export(tiny_dir: Path, tmp_path: Path) -> None:
    """--opset, --external-data and --exclude of build-engines --model reach the export it makes in OUT/onnx."""
    import onnx

    from ideogram_trt.core.manifest import Manifest

    out = tmp_path / "set"
    argv = ["build-engines", "--model", str(tiny_dir), "--out", str(out), "--recipe", "bf16", "--flavor",
            "onnxruntime", "--buckets", "256x256", "--components", "vae_decoder"]  # fmt: skip
    assert main([*argv, "--opset", "22", "--external-data", "always", "--exclude", "layers.*.attention.o"]) == 0
    sidecar = json.loads((out / "onnx" / "vae_decoder.json").read_text())
    assert sidecar["opset"] == 22
    assert sidecar["external_data"] == "vae_decoder.onnx.data" and (out / "onnx" / "vae_decoder.onnx.data").is_file()
    assert sidecar["options"]["excluded"] == ["layers.*.attention.o"]
    graph = onnx.load(str(out / "onnx" / "vae_decoder.onnx"), load_external_data=False)
    assert {o.domain: o.version for o in graph.opset_import}[""] == 22
    assert json.loads((out / "manifest.json").read_text())["model"]["opset"] == 22
    assert Manifest.load(out).engines["vae_decoder"].external_data is not None


def test_build_engines_refuses_export_options_with_an_export(tmp_path: Path, capsys) -> None:
    """With --onnx the graphs are exported already: options that would shape them are refused, not ignored."""
    out = tmp_path / "set"
    for extra in (["--opset", "22"], ["--exclude", "x"], ["--external-data", "always"]):
        assert main(["build-engines", "--onnx", str(tmp_path / "onnx"), "--out", str(out), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: {extra[0]} shape the export build-engines makes with --model"), err
        assert len(err.splitlines()) == 1
    assert not out.exists()
