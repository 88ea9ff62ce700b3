"""The package's diffusers-layout converter against the tests' independent one (tests/reference_checkpoint.py):
the same files, and every tensor bit-identical."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open

from ideogram_trt.model.diffusers_layout import convert_to_diffusers


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt") as handle:
        return {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118


def _bytes(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.contiguous().reshape(-1).view(torch.uint8)


def test_package_converter_matches_the_independent_one(tiny_dir: Path, diffusers_dir: Path, tmp_path: Path) -> None:
    ours = convert_to_diffusers(tiny_dir, tmp_path / "package")
    files = sorted(p.relative_to(diffusers_dir) for p in diffusers_dir.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(ours) for p in ours.rglob("*") if p.is_file())
    weights = [rel for rel in files if rel.suffix == ".safetensors"]
    assert len(weights) == 4  # both DiTs, the text encoder, the VAE
    for rel in weights:
        a, b = _tensors(ours / rel), _tensors(diffusers_dir / rel)
        assert a.keys() == b.keys(), rel
        for key in a:
            same = a[key].dtype == b[key].dtype and a[key].shape == b[key].shape
            assert same and torch.equal(_bytes(a[key]), _bytes(b[key])), f"{rel}: {key}"
    for rel in files:
        if rel.suffix == ".json":
            assert json.loads((ours / rel).read_text()) == json.loads((diffusers_dir / rel).read_text()), rel
