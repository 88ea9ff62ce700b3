"""bf16 graphs parsed and built by TensorRT-RTX for compute capability 8.9 with one optimization profile per
resolution bucket (two buckets), and the FP8 weights those graphs store. TensorRT-RTX builds ahead of time on the
CPU; no GPU here can run the plans, so this proves the graphs are accepted, not that they compute right (ONNX
Runtime does that in test_export.py).

Together with test_engines.py, which builds all four components of the fp8-wo and fp8 recipes through
`build-engines` (three buckets), every component x recipe is built: here the bf16 recipe, and the optional
masked conditional DiT of every recipe."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from ideogram_trt.core.buckets import Bucket
from ideogram_trt.engines.profiles import AxisRange, ProfileRanges, profile_for
from ideogram_trt.engines.tensorrt_adapter import BuildTarget, EngineBuildError, Flavor, build_engine

BUCKETS = (Bucket(256, 256), Bucket(256, 384))
RANGES = ProfileRanges(batch=AxisRange(1, 1, 2), text=AxisRange(1, 32, 128))
TARGET = BuildTarget(Flavor.TENSORRT_RTX, compute_capabilities=("8.9",))
DITS = ("dit_cond", "dit_cond_masked", "dit_uncond")
DITS_AND_VAE = (*DITS, "vae_decoder")
TEXT = ("text_encoder",)
# As in test_export.py, tests sharing an export share a class (one xdist worker each).
DIT_CASES = [
    *(pytest.param("bf16", graph, DITS_AND_VAE, id=f"bf16-{graph}") for graph in DITS_AND_VAE),
    pytest.param("fp8-wo", "dit_cond_masked", DITS, id="fp8-wo-dit_cond_masked"),
    pytest.param("fp8", "dit_cond_masked", DITS, id="fp8-dit_cond_masked"),
]


def build(exports, recipe: str, graph: str, exported: tuple[str, ...]) -> None:
    folder = exports.get(recipe, "bf16", exported)
    sidecar = json.loads((folder / f"{graph}.json").read_text())
    if graph == "text_encoder":  # not per bucket: one profile over batch and text length
        profiles = [profile_for(sidecar["inputs"], None, RANGES)]
    else:
        profiles = [profile_for(sidecar["inputs"], bucket, RANGES) for bucket in BUCKETS]
    result = build_engine(folder / f"{graph}.onnx", profiles, TARGET)
    assert len(result.plan) > 100_000
    assert result.version.startswith("1.")


class TestTextEncoderBf16Build:
    def test_builds(self, exports) -> None:
        build(exports, "bf16", "text_encoder", TEXT)


class TestDiTsBf16:
    @pytest.mark.parametrize(("recipe", "graph", "exported"), DIT_CASES)
    def test_builds(self, exports, recipe: str, graph: str, exported: tuple[str, ...]) -> None:
        build(exports, recipe, graph, exported)

    def test_fp8_wo_weights_are_the_release_weights_bit_for_bit(self, exports, tiny_dir) -> None:
        """The bf16 fp8-wo DiT graph stores the release's E4M3 bytes and dequantizes, with its bf16 scale, to exactly
        w.to(bf16) * scale.to(bf16)[:, None] (spec §8.2)."""
        import ml_dtypes
        import onnx
        from onnx import numpy_helper

        folder = exports.get("fp8-wo", "bf16", DITS)
        model = onnx.load(str(folder / "dit_cond.onnx"))
        values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        producers = {out: node for node in model.graph.node for out in node.output}
        release = load_file(str(tiny_dir / "transformer" / "diffusion_pytorch_model.safetensors"))
        checked = 0
        for node in model.graph.node:
            if node.op_type != "DequantizeLinear" or node.input[0] not in values:
                continue
            module = node.name.split("/")[0]
            weight, scale = values[node.input[0]], values[node.input[1]]
            assert weight.dtype == ml_dtypes.float8_e4m3fn and scale.dtype == ml_dtypes.bfloat16
            stored = release[f"{module}.weight"]
            assert np.array_equal(weight.view(np.uint8), stored.view(torch.uint8).numpy())  # the same bytes
            dequantized = (weight.astype(np.float32) * scale.astype(np.float32)[:, None]).astype(ml_dtypes.bfloat16)
            expected = stored.to(torch.bfloat16) * release[f"{module}.weight_scale"].to(torch.bfloat16)[:, None]
            assert np.array_equal(dequantized.view(np.uint16), expected.view(torch.int16).numpy().view(np.uint16))
            assert node.input[1] not in producers  # a stored scale, not computed
            checked += 1
        assert checked == 6 * 2 + 6  # every linear of the tiny DiT but the text projection (in the text encoder)

    def test_fp8_wo_weights_take_half_the_bytes(self, exports) -> None:
        """One byte per weight instead of two (bf16): the DiTs' weight bytes halve, plus a little for the scales."""
        bf16 = exports.get("bf16", "bf16", DITS_AND_VAE)
        fp8 = exports.get("fp8-wo", "bf16", DITS)
        for graph in ("dit_cond", "dit_uncond"):
            a = json.loads((bf16 / f"{graph}.json").read_text())
            b = json.loads((fp8 / f"{graph}.json").read_text())
            assert 0.5 <= b["weights_bytes"] / a["weights_bytes"] <= 0.6, graph


def test_build_errors_are_reported(tmp_path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(EngineBuildError, match=r"bad.onnx: TensorRT cannot parse the graph"):
        build_engine(bad, [], TARGET)
