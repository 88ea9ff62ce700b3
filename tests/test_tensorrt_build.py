"""Every bf16 graph of every recipe, parsed and built by TensorRT-RTX for compute capability 8.9 with one
optimization profile per resolution bucket (two buckets). TensorRT-RTX builds ahead of time on the CPU; no GPU
here can run the plans, so this proves the graphs are accepted, not that they compute right (ONNX Runtime does
that in test_export.py)."""

from __future__ import annotations

import json

import pytest

from ideogram_trt.engines.buckets import Bucket
from ideogram_trt.engines.profiles import AxisRange, ProfileRanges, profile_for
from ideogram_trt.engines.tensorrt_adapter import BuildTarget, EngineBuildError, Flavor, build_engine

BUCKETS = (Bucket(256, 256), Bucket(256, 384))
RANGES = ProfileRanges(batch=AxisRange(1, 1, 2), text=AxisRange(1, 32, 128))
TARGET = BuildTarget(Flavor.TENSORRT_RTX, compute_capabilities=("8.9",))
DITS_AND_VAE = ("dit_cond", "dit_cond_masked", "dit_uncond", "vae_decoder")
TEXT = ("text_encoder",)
# The fp8 recipe's text encoder is the fp8-wo graph (test_export.py proves the modules identical). Each text
# encoder export (~50 s) lives in its own xdist group, shared with nothing else.
EXPORTS = (("bf16", TEXT), ("bf16", DITS_AND_VAE), ("fp8-wo", TEXT), ("fp8-wo", DITS_AND_VAE), ("fp8", DITS_AND_VAE))
CASES = [
    pytest.param(
        recipe, graph, graphs, id=f"{recipe}-{graph}",
        marks=[pytest.mark.xdist_group(f"text-encoder-{recipe}-bf16")] if graphs == TEXT else [],
    )
    for recipe, graphs in EXPORTS
    for graph in graphs
]  # fmt: skip


@pytest.mark.parametrize(("recipe", "graph", "exported"), CASES)
def test_tensorrt_rtx_builds_the_graph(exports, recipe: str, graph: str, exported: tuple[str, ...]) -> None:
    folder = exports.get(recipe, "bf16", exported)
    sidecar = json.loads((folder / f"{graph}.json").read_text())
    if graph == "text_encoder":  # not per bucket: one profile over batch and text length
        profiles = [profile_for(sidecar["inputs"], None, RANGES)]
    else:
        profiles = [profile_for(sidecar["inputs"], bucket, RANGES) for bucket in BUCKETS]
    result = build_engine(folder / f"{graph}.onnx", profiles, TARGET)
    assert len(result.plan) > 100_000
    assert result.version.startswith("1.")


def test_build_errors_are_reported(tmp_path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(EngineBuildError, match=r"bad.onnx: TensorRT cannot parse the graph"):
        build_engine(bad, [], TARGET)
