"""Session fixtures: one tiny release-layout checkpoint (written by the CLI, as users do), its diffusers-layout
conversion, and the diffusers reference pipeline loaded from it with ``from_pretrained`` in fp32, eval mode."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ideogram_trt.cli import main
from ideogram_trt.model.checkpoint import Checkpoint, open_checkpoint
from ideogram_trt.model.diffusers_layout import convert_to_diffusers


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
    return convert_to_diffusers(tiny_dir, tmp_path_factory.mktemp("ckpt") / "tiny-diffusers")


@pytest.fixture(scope="session")
def reference_pipeline(diffusers_dir: Path):
    from diffusers import Ideogram4Pipeline

    pipe = Ideogram4Pipeline.from_pretrained(diffusers_dir, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    for name in ("transformer", "unconditional_transformer", "text_encoder", "vae"):
        assert not getattr(pipe, name).training, f"reference {name} is not in eval mode"
    return pipe
