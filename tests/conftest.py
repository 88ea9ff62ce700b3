"""Session fixtures: one tiny release-layout checkpoint (written by the CLI, as users do), its diffusers-layout
conversion, and the diffusers reference pipeline loaded from it with ``from_pretrained`` in fp32, eval mode."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from helpers import FAKE_GPU_LORA_RANK
from reference_checkpoint import convert_reference

from ideogram_trt.cli import main
from ideogram_trt.model.checkpoint import Checkpoint, open_checkpoint

# Under pytest-xdist every worker gets one core: torch and ONNX Runtime would otherwise each start a thread per
# core in every worker and fight over the two cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


class SharedBuilds:
    """Fixtures' outputs made once per test run, not once per xdist worker: both workers of a run see one folder
    (beside their own temporary folders); the first to need an output builds it under a file lock while the other
    waits, then both read it. Every output here is deterministic and read-only for the tests (none may change it),
    so sharing changes no test's inputs, only who pays for them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def get(self, name: str, build: Callable[[Path], None]) -> Path:
        out = self.root / name
        with (self.root / f"{name}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            done, failed = self.root / f"{name}.done", self.root / f"{name}.failed"
            if failed.exists():  # one attempt per run: every later test that needs it fails at once
                pytest.fail(f"the shared build {name!r} failed earlier in this run (see its first error)")
            if not done.exists():
                try:
                    build(out)
                except BaseException:
                    failed.touch()
                    raise
                done.touch()
        return out


@pytest.fixture(scope="session")
def shared_builds(tmp_path_factory: pytest.TempPathFactory) -> SharedBuilds:
    base = tmp_path_factory.getbasetemp()
    return SharedBuilds((base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "shared-builds")


@pytest.fixture(scope="session")
def tiny_dir(shared_builds: SharedBuilds) -> Path:
    return shared_builds.get("tiny", lambda out: _ok(main(["make-tiny", str(out), "--seed", "0"])))


def _ok(code: int) -> None:
    assert code == 0


@pytest.fixture(scope="session")
def checkpoint(tiny_dir: Path) -> Checkpoint:
    return open_checkpoint(tiny_dir)


@pytest.fixture(scope="session")
def diffusers_dir(tiny_dir: Path, shared_builds: SharedBuilds) -> Path:
    """The parity tests' reference checkpoint, converted by tests/reference_checkpoint.py (not by the package,
    so a dequantization bug cannot sit on both sides; test_reference_checkpoint.py checks the package's own
    converter gives the same tensors)."""

    def build(out: Path) -> None:
        convert_reference(tiny_dir, out)

    return shared_builds.get("tiny-diffusers", build)


@pytest.fixture(scope="session")
def reference_pipeline(diffusers_dir: Path):
    from diffusers import Ideogram4Pipeline

    pipe = Ideogram4Pipeline.from_pretrained(diffusers_dir, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    for name in ("transformer", "unconditional_transformer", "text_encoder", "vae"):
        assert not getattr(pipe, name).training, f"reference {name} is not in eval mode"
    return pipe


@pytest.fixture(scope="session")
def bf16_engines(tiny_dir: Path, shared_builds: SharedBuilds) -> Path:
    """The tiny checkpoint's bf16-recipe ONNX Runtime engine set at 256x256 and 256x384, built by the CLI once for
    every module that runs engines (tests must not change it)."""

    def build(out: Path) -> None:
        argv = ["build-engines", "--model", str(tiny_dir), "--out", str(out), "--recipe", "bf16"]
        _ok(main([*argv, "--flavor", "onnxruntime", "--buckets", "256x256,256x384"]))

    return shared_builds.get("engines-bf16", build)


@pytest.fixture(scope="session")
def one_graph_engines(tiny_dir: Path, shared_builds: SharedBuilds) -> Path:
    """A small ONNX Runtime engine set, fp8-wo dit_uncond at 256x256 only, for tests that read a manifest (tests
    must not change it)."""

    def build(out: Path) -> None:
        _ok(main(["build-engines", "--model", str(tiny_dir), "--out", str(out), "--recipe", "fp8-wo",
                  "--flavor", "onnxruntime", "--buckets", "256x256", "--components", "dit_uncond"]))  # fmt: skip

    return shared_builds.get("engines-one-graph", build)


@pytest.fixture(scope="session")
def calibration_file(tiny_dir: Path, shared_builds: SharedBuilds) -> Path:
    """Calibration over four shipped prompts × V4_TURBO_12 at 256x256, written by the CLI."""

    def build(out: Path) -> None:
        out.mkdir()
        args = ["calibrate", "--model", str(tiny_dir), "--out", str(out / "tiny.json"), "--resolution", "256x256"]
        _ok(main([*args, "--preset", "V4_TURBO_12", "--limit", "4"]))

    return shared_builds.get("calibration", build) / "tiny.json"


@pytest.fixture(scope="session")
def fake_gpu_sets(tiny_dir: Path, calibration_file: Path, shared_builds: SharedBuilds) -> tuple[Path, Path]:
    """The fp8 TensorRT-RTX engine set the fake-GPU tests run (fp32 graphs: the fake runs a plan's ONNX graph in
    ONNX Runtime), and the ONNX Runtime set built from the same export, the fake's oracle. Real builds; shared by
    test_tensorrt_backend.py and test_verify.py (tests must not change them). LoRA-ready (rank up to
    FAKE_GPU_LORA_RANK): without an adapter its side path adds exactly zero."""

    def build(root: Path) -> None:
        common = ["--recipe", "fp8", "--dtype", "fp32", "--buckets", "256x256,256x384", "--max-batch", "2",
                  "--lora-rank", str(FAKE_GPU_LORA_RANK)]  # fmt: skip
        _ok(main(["build-engines", "--model", str(tiny_dir), "--out", str(root / "rtx"), "--flavor", "tensorrt-rtx",
                  "--compute-capability", "8.9", "--max-text-tokens", "64", "--calibration", str(calibration_file),
                  *common]))  # fmt: skip
        _ok(
            main(
                [
                    "build-engines",
                    "--onnx",
                    str(root / "rtx" / "onnx"),
                    "--out",
                    str(root / "ort"),
                    "--flavor",
                    "onnxruntime",
                    *common[:-2],
                ]
            )
        )  # fmt: skip (--lora-rank: the export's)

    root = shared_builds.get("fake-gpu-sets", build)
    return root / "rtx", root / "ort"


class Exports:
    """Exports of the tiny checkpoint, made once per (recipe, dtype, graphs, options) and shared by tests."""

    def __init__(self, shared_builds: SharedBuilds, checkpoint_dir: Path, calibration: Path) -> None:
        self.shared, self.checkpoint_dir, self.calibration = shared_builds, checkpoint_dir, calibration

    def get(self, recipe: str, dtype: str, graphs: tuple[str, ...], **flags: object) -> Path:
        from ideogram_trt.core.components import Component
        from ideogram_trt.export.exporter import ExportOptions, export
        from ideogram_trt.export.recipes import GraphDType, Recipe

        def build(out: Path) -> None:
            options = ExportOptions(
                Recipe(recipe),
                GraphDType(dtype),
                tuple(Component(g) for g in graphs),
                calibration=self.calibration if recipe == "fp8" else None,
                **flags,  # type: ignore[arg-type]
            )
            export(self.checkpoint_dir, out, options, quiet=True)

        flag_text = "".join(f"-{k}={v}" for k, v in sorted(flags.items()))
        return self.shared.get(f"export-{recipe}-{dtype}-{'+'.join(graphs)}{flag_text}", build)


@pytest.fixture(scope="session")
def exports(tiny_dir: Path, calibration_file: Path, shared_builds: SharedBuilds) -> Exports:
    return Exports(shared_builds, tiny_dir, calibration_file)
