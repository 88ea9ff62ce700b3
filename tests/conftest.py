"""Session fixtures: one tiny release-layout checkpoint (written by the CLI, as users do), its diffusers-layout
conversion, and the diffusers reference pipeline loaded from it with ``from_pretrained`` in fp32, eval mode."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from reference_checkpoint import convert_reference

from ideogram_trt.cli import main
from ideogram_trt.model.checkpoint import Checkpoint, open_checkpoint

# Under pytest-xdist every worker gets one core: torch and ONNX Runtime would otherwise each start a thread per
# core in every worker and fight over the two cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ckpt") / "tiny"
    assert main(["make-tiny", str(out), "--seed", "0"]) == 0
    return out


@pytest.fixture(scope="session")
def checkpoint(tiny_dir: Path) -> Checkpoint:
    return open_checkpoint(tiny_dir)


@pytest.fixture(scope="session")
def diffusers_dir(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The parity tests' reference checkpoint, converted by tests/reference_checkpoint.py (not by the package,
    so a dequantization bug cannot sit on both sides; test_reference_checkpoint.py checks the package's own
    converter gives the same tensors)."""
    return convert_reference(tiny_dir, tmp_path_factory.mktemp("ckpt") / "tiny-diffusers")


@pytest.fixture(scope="session")
def reference_pipeline(diffusers_dir: Path):
    from diffusers import Ideogram4Pipeline

    pipe = Ideogram4Pipeline.from_pretrained(diffusers_dir, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    for name in ("transformer", "unconditional_transformer", "text_encoder", "vae"):
        assert not getattr(pipe, name).training, f"reference {name} is not in eval mode"
    return pipe


@pytest.fixture(scope="session")
def bf16_engines(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny checkpoint's bf16-recipe ONNX Runtime engine set at 256x256 and 256x384, built by the CLI once for
    every module that runs engines (tests must not change it)."""
    out = tmp_path_factory.mktemp("engines") / "bf16"
    argv = ["build-engines", "--model", str(tiny_dir), "--out", str(out), "--recipe", "bf16", "--flavor", "onnxruntime"]
    assert main([*argv, "--buckets", "256x256,256x384"]) == 0
    return out


@pytest.fixture(scope="session")
def one_graph_engines(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small ONNX Runtime engine set, fp8-wo dit_uncond at 256x256 only, for tests that read a manifest (tests
    must not change it)."""
    out = tmp_path_factory.mktemp("engines") / "one-graph"
    assert main(["build-engines", "--model", str(tiny_dir), "--out", str(out), "--recipe", "fp8-wo",
                 "--flavor", "onnxruntime", "--buckets", "256x256", "--components", "dit_uncond"]) == 0  # fmt: skip
    return out


@pytest.fixture(scope="session")
def calibration_file(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Calibration over four shipped prompts × V4_TURBO_12 at 256x256, written by the CLI."""
    out = tmp_path_factory.mktemp("calibration") / "tiny.json"
    args = ["calibrate", "--model", str(tiny_dir), "--out", str(out), "--resolution", "256x256"]
    assert main([*args, "--preset", "V4_TURBO_12", "--limit", "4"]) == 0
    return out


class Exports:
    """Exports of the tiny checkpoint, made once per (recipe, dtype, graphs, options) and shared by tests."""

    def __init__(self, root: Path, checkpoint_dir: Path, calibration: Path) -> None:
        self.root, self.checkpoint_dir, self.calibration = root, checkpoint_dir, calibration
        self._done: dict[tuple, Path] = {}

    def get(self, recipe: str, dtype: str, graphs: tuple[str, ...], **flags: bool) -> Path:
        from ideogram_trt.core.components import Component
        from ideogram_trt.export.exporter import ExportOptions, export
        from ideogram_trt.export.recipes import GraphDType, Recipe

        key = (recipe, dtype, graphs, tuple(sorted(flags.items())))
        if key not in self._done:
            out = self.root / f"{recipe}-{dtype}-{len(self._done)}"
            options = ExportOptions(
                Recipe(recipe),
                GraphDType(dtype),
                tuple(Component(g) for g in graphs),
                calibration=self.calibration if recipe == "fp8" else None,
                **flags,
            )
            export(self.checkpoint_dir, out, options, quiet=True)
            self._done[key] = out
        return self._done[key]


@pytest.fixture(scope="session")
def exports(tiny_dir: Path, calibration_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Exports:
    return Exports(tmp_path_factory.mktemp("exports"), tiny_dir, calibration_file)
