"""bf16 graphs parsed and built by TensorRT-RTX for compute capability 8.9 with one optimization profile per
resolution bucket (two buckets), and the FP8 weights those graphs store. TensorRT-RTX builds ahead of time on the
CPU; no GPU here can run the plans, so this proves the graphs are accepted, not that they compute right (ONNX
Runtime does that in test_export.py).

Together with test_engines.py, which builds all four components of the fp8-wo and fp8 recipes through
`build-engines` (two buckets), every component x recipe is built: here the bf16 recipe, and the optional
masked conditional DiT of every recipe."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from ideogram_trt.core.buckets import Bucket
from ideogram_trt.core.components import Component
from ideogram_trt.core.sidecar import ExportSidecar
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
    inputs = ExportSidecar.load(folder, Component(graph)).inputs
    if graph == "text_encoder":  # not per bucket: one profile over batch and text length
        profiles = [profile_for(inputs, None, RANGES)]
    else:
        profiles = [profile_for(inputs, bucket, RANGES) for bucket in BUCKETS]
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
        w.to(bf16) * scale.to(bf16)[:, None] (docs/MODEL.md §8.2)."""
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

    @pytest.mark.parametrize(("recipe", "exported"), [("bf16", DITS_AND_VAE), ("fp8-wo", DITS), ("fp8", DITS)])
    @pytest.mark.parametrize("graph", DITS)
    def test_timestep_is_rounded_to_bf16_before_the_embedding(
        self, exports, recipe: str, exported: tuple[str, ...], graph: str
    ) -> None:
        """docs/MODEL.md §5.2: a bf16 DiT sees bf16(t) — the runtime uploads the schedule's float32 t and the graph
        rounds it: timestep → Cast(bf16) → Cast(fp32) before any arithmetic, and the embedding runs in fp32 on that.
        The path is read from the graph and run (onnx's reference evaluator) on V4_DEFAULT_20's t at 1024x1024: it
        must give the golden table's bf16 column (docs/MODEL.md §5.5)."""
        import onnx
        from onnx.reference import ReferenceEvaluator
        from test_schedule import GOLDEN_DEFAULT_20

        from ideogram_trt.core import contracts as io
        from ideogram_trt.core.schedule import PresetName, preset_schedule

        model = onnx.load(str(exports.get(recipe, "bf16", exported) / f"{graph}.onnx"), load_external_data=False)
        consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in model.graph.node:
            for name in node.input:
                consumers.setdefault(name, []).append(node)
        # Follow the timestep through the ops that pass its value on unchanged but for dtype; stop at arithmetic.
        passing = {"Cast", "Identity", "Unsqueeze", "Reshape", "Squeeze", "Flatten"}
        path: list[onnx.NodeProto] = []
        seen_by_arithmetic: set[str] = set()
        frontier = [io.TIMESTEP]
        while frontier:
            tensor = frontier.pop()
            for node in consumers.get(tensor, []):
                if node.op_type == "Shape":  # reads no values
                    continue
                if node.op_type in passing and node.input[0] == tensor:
                    path.append(node)
                    frontier.extend(node.output)
                else:
                    seen_by_arithmetic.add(tensor)
        casts = [onnx.helper.get_attribute_value(a) for n in path if n.op_type == "Cast" for a in n.attribute]
        assert onnx.TensorProto.BFLOAT16 in casts, f"{graph}: the timestep reaches arithmetic unrounded ({casts})"
        assert len(seen_by_arithmetic) == 1, f"{graph}: the timestep reaches arithmetic by several paths"
        (seen,) = seen_by_arithmetic
        assert casts[-1] == onnx.TensorProto.FLOAT, f"{graph}: the embedding does not run in fp32 ({casts})"

        # Run that path alone: the t the embedding computes with, for the schedule's own float32 t.
        needed = {i for n in path for i in n.input[1:]}
        constants = [n for n in model.graph.node if n.op_type == "Constant" and set(n.output) & needed]
        sub = onnx.helper.make_graph(
            [*constants, *path],
            "timestep_path",
            [onnx.helper.make_tensor_value_info(io.TIMESTEP, onnx.TensorProto.FLOAT, [None])],
            [onnx.helper.make_tensor_value_info(seen, onnx.TensorProto.FLOAT, None)],
            [t for t in model.graph.initializer if t.name in needed],
        )
        evaluator = ReferenceEvaluator(onnx.helper.make_model(sub, opset_imports=model.opset_import))
        for preset in (PresetName.V4_DEFAULT_20, PresetName.V4_TURBO_12):
            schedule = preset_schedule(preset, 1024, 1024)
            (embedded,) = evaluator.run(None, {io.TIMESTEP: schedule.t})
            embedded = embedded.reshape(-1)
            if preset is PresetName.V4_DEFAULT_20:
                np.testing.assert_allclose(embedded, np.array(GOLDEN_DEFAULT_20)[:, 1], rtol=0, atol=1e-7)
            expected = torch.from_numpy(schedule.t).to(torch.bfloat16).float().numpy()  # torch as the oracle
            assert np.array_equal(embedded, expected), preset
            assert not np.array_equal(embedded, schedule.t)  # the rounding is visible on this schedule


def test_build_errors_are_reported(tmp_path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(EngineBuildError, match=r"bad.onnx: TensorRT cannot parse the graph"):
        build_engine(bad, [], TARGET)


class TestLoraReadyDiTBuilds:
    """`build-engines --lora-rank`'s conditional DiT (docs/LORA.md §2), bf16 and fp8, built by TensorRT-RTX with the
    rank axis 1 … 16 in its profiles; what the side path adds to the plan, read from the builder's layer report."""

    @pytest.mark.parametrize("recipe", ["bf16", "fp8"])
    def test_builds_with_a_rank_range(self, exports, recipe: str) -> None:
        from ideogram_trt.core.lora import ALL_TARGETS
        from ideogram_trt.engines.anatomy import LayerClass, parse_layer_report

        GEMMS = (LayerClass.GEMM, LayerClass.DEQUANT_GEMM)

        folder = exports.get(recipe, "bf16", ("dit_cond",), lora_rank=16)
        sidecar = ExportSidecar.load(folder, Component.DIT_COND)
        assert sidecar.lora is not None and sidecar.lora.max_rank == 16
        ranges = ProfileRanges(batch=RANGES.batch, text=RANGES.text, lora_rank=AxisRange(1, 16, 16))
        profiles = [profile_for(sidecar.inputs, bucket, ranges) for bucket in BUCKETS]
        for target in ALL_TARGETS:  # Aᵀ [layers, in, rank] and Bᵀ [layers, rank, out]: the rank axis 1 … 16
            for name, axis in ((target.down_input, 2), (target.up_input, 1)):
                shapes = profiles[0][name]
                assert (shapes.min[axis], shapes.opt[axis], shapes.max[axis]) == (1, 16, 16), name
        result = build_engine(folder / "dit_cond.onnx", profiles, TARGET, detailed=True)
        layers = [layer for report in result.layer_reports for layer in parse_layer_report(report, result.version)]
        blocks = sidecar.lora.shape.layers
        # The side path's GEMMs are there: the two of every target, in every block (w1's and w3's down-projections
        # read one input, so TensorRT may run them as one kernel).
        side = {(name.split("/")[0], name.rsplit("/", 1)[-1]) for layer in layers if layer.kind in GEMMS
                for name in layer.onnx_layers if name.rsplit("/", 1)[-1] in ("MatMul_1", "MatMul_2")
                and name.startswith("layers.") and not name.split("/")[0].endswith("attention")}  # fmt: skip
        assert len(side) == 2 * len(ALL_TARGETS) * blocks, sorted(side)
        if recipe == "bf16":  # the fused attention kernel survives the side path (fp8: docs/LORA.md §5)
            assert sum("mha" in layer.name for layer in layers) == blocks * len(profiles)
