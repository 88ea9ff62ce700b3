"""Exported graphs in ONNX Runtime against the PyTorch module with the same fake quantization (float64), and the
FP8 weight storage, for every component and recipe on the tiny checkpoint."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from onnx_support import activation_qdq_outputs, feeds, replayed, session

from ideogram_trt.cli import main
from ideogram_trt.core.buckets import Bucket
from ideogram_trt.core.components import Component
from ideogram_trt.core.sidecar import ExportSidecar
from ideogram_trt.engines.profiles import profile_for
from ideogram_trt.engines.tensorrt_adapter import BuildTarget, Flavor, build_engine
from ideogram_trt.export.calibration import Calibration
from ideogram_trt.export.exporter import ExportOptions, build_module
from ideogram_trt.export.graphs import Sizes, example_inputs
from ideogram_trt.export.recipes import GraphDType, Recipe

TEXT = ("text_encoder",)
DITS = ("dit_cond", "dit_cond_masked", "dit_uncond")
DITS_AND_VAE = (*DITS, "vae_decoder")
# Two batch sizes, two text lengths, two image-token grids (16 and 24 tokens).
SIZES = (Sizes(batch=1, text=7, grid_h=4, grid_w=4), Sizes(batch=3, text=19, grid_h=3, grid_w=8))
FP32_BOUND = 1e-5
FP16_BOUND = 5e-3  # feasibility.md §2: fp16 graphs sit a few 1e-3 from the float64 fake-quant reference


def checkpoint_fingerprint(root: Path, components: tuple[str, ...]) -> str:
    """model/fingerprint.py's definition, recomputed from the files: per component folder, sha256 over its files in
    sorted order of (relative POSIX name, sha256 hex of the bytes); then sha256 of {component: folder hash} as
    canonical JSON (sorted keys, no whitespace)."""
    parts = {}
    for name in components:
        digest = hashlib.sha256()
        for path in sorted(p for p in (root / name).rglob("*") if p.is_file()):
            digest.update(path.relative_to(root / name).as_posix().encode())
            digest.update(hashlib.sha256(path.read_bytes()).hexdigest().encode())
        parts[name] = digest.hexdigest()
    return hashlib.sha256(json.dumps(parts, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# Tests that share an export share a test class: `make test` runs pytest-xdist with --dist loadscope, which keeps
# a class on one worker, so each export happens once. The text encoder (36 layers) gets a class per recipe; the
# VAE has no FP8 weights and no recipe changes it (test_the_vae_ignores_the_recipe), so it is exported with the
# bf16 sets only.
DIT_FP32_EXPORTS = [
    ("bf16", DITS_AND_VAE, {}),
    ("fp8-wo", DITS, {}),
    ("fp8", DITS, {}),
    ("fp8", ("dit_cond", "dit_cond_masked"), {"quantize_attention": True}),
]
DIT_FP32_CASES = [
    pytest.param(recipe, graphs, graph, flags, id=f"{recipe}-{graph}{'-' + '-'.join(flags) if flags else ''}")
    for recipe, graphs, flags in DIT_FP32_EXPORTS
    for graph in graphs
]


def _reference(checkpoint, calibration_file, recipe: str, graph: Component, dtype: GraphDType, flags: dict):
    options = ExportOptions(Recipe(recipe), dtype, (graph,), **flags)
    calibration = Calibration.load(calibration_file)
    module = build_module(
        checkpoint,
        graph,
        Recipe(recipe),
        torch.float64,
        options.plan(graph),
        calibration.amax.get(graph.spec.serves.value),
    )
    return module, options.plan(graph)


def _value(model, name: str) -> np.ndarray:
    """The value of an initializer or of a Constant node's output."""
    from onnx import numpy_helper

    for tensor in model.graph.initializer:
        if tensor.name == name:
            return numpy_helper.to_array(tensor)
    (node,) = [n for n in model.graph.node if name in n.output]
    assert node.op_type == "Constant", f"{name} comes from a {node.op_type}, not a constant"
    return numpy_helper.to_array(node.attribute[0].t)


def _relative(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.linalg.norm(actual.astype(np.float64) - expected) / np.linalg.norm(expected))


def check_fp32_graph(checkpoint, calibration_file, exports, monkeypatch, recipe, graphs, graph, flags) -> None:
    """The fp32 graph in ONNX Runtime against the float64 PyTorch module with the same fake quantization, at two
    batch sizes, two text lengths and two image-token counts (FP8 rounding ties replayed; see onnx_support)."""
    folder = exports.get(recipe, "fp32", graphs, **flags)
    sidecar = json.loads((folder / f"{graph}.json").read_text())
    path = folder / f"{graph}.onnx"
    reference, plan = _reference(checkpoint, calibration_file, recipe, Component(graph), GraphDType.FP32, flags)
    quantized_activations = plan.needs_calibration
    extra = activation_qdq_outputs(path) if quantized_activations else []
    assert bool(extra) == quantized_activations
    ort_session = session(path, extra)

    for sizes in SIZES:
        inputs = example_inputs(Component(graph), checkpoint, torch.float32, sizes, seed=sizes.batch)
        results = ort_session.run(None, feeds(sidecar["inputs"], inputs))
        replay = replayed(monkeypatch, results[1:]) if quantized_activations else None
        with torch.no_grad():
            expected = reference(*[t.double() if t.dtype == torch.float32 else t for t in inputs]).double().numpy()
        if replay is not None:
            assert replay.problems == [] and replay.used == len(extra)
            assert replay.flips <= 1e-3 * replay.elements, f"{replay.flips} of {replay.elements} codes differ"
        error = _relative(results[0], expected)
        assert error <= FP32_BOUND, f"{graph} {recipe} {sizes}: relative error {error:.2e}"


class TestTextEncoderFp32Bf16:
    def test_matches_reference(self, checkpoint, calibration_file, exports, monkeypatch) -> None:
        check_fp32_graph(checkpoint, calibration_file, exports, monkeypatch, "bf16", TEXT, "text_encoder", {})


class TestTextEncoderFp32Fp8WeightOnly:
    def test_matches_reference(self, checkpoint, calibration_file, exports, monkeypatch) -> None:
        check_fp32_graph(checkpoint, calibration_file, exports, monkeypatch, "fp8-wo", TEXT, "text_encoder", {})


class TestTextEncoderFp32Fp8Quantized:
    """``--quantize-text-encoder``: the text encoder's GEMMs with activation Q/DQ too."""

    def test_matches_reference(self, checkpoint, calibration_file, exports, monkeypatch) -> None:
        flags = {"quantize_text_encoder": True}
        check_fp32_graph(checkpoint, calibration_file, exports, monkeypatch, "fp8", TEXT, "text_encoder", flags)


class TestDiTsFp32:
    @pytest.mark.parametrize(("recipe", "graphs", "graph", "flags"), DIT_FP32_CASES)
    def test_matches_reference(
        self, checkpoint, calibration_file, exports, monkeypatch, recipe, graphs, graph, flags
    ) -> None:
        check_fp32_graph(checkpoint, calibration_file, exports, monkeypatch, recipe, graphs, graph, flags)

    def test_sidecar_records_what_the_graph_is(self, exports) -> None:
        folder = exports.get("fp8", "fp32", DITS)
        sidecar = json.loads((folder / "dit_cond.json").read_text())
        assert sidecar["recipe"] == "fp8" and sidecar["dtype"] == "fp32" and sidecar["opset"] == 21
        # Recomputed from the files: dit_cond's weights come from transformer/ alone; the calibration hash is the
        # sha256 of the calibration file's bytes.
        assert sidecar["checkpoint"]["fingerprint"] == checkpoint_fingerprint(exports.checkpoint_dir, ("transformer",))
        assert sidecar["calibration"]["sha256"] == hashlib.sha256(exports.calibration.read_bytes()).hexdigest()
        assert sidecar["quantization"]["activation_qdq"] == [
            f"layers.{i}.{name}" for i in range(2) for name in ("attention.qkv", "attention.o", "feed_forward.w1",
                                                                "feed_forward.w2", "feed_forward.w3")
        ]  # fmt: skip
        assert [(i["name"], i["shape"]) for i in sidecar["inputs"]] == [
            ("latents", ["B", "N", 16]),
            ("text_hidden", ["B", "T", 64]),
            ("timestep", ["B"]),
            ("rope_cos", ["T+N", 32]),
            ("rope_sin", ["T+N", 32]),
        ]
        assert sidecar["outputs"] == [{"name": "velocity", "dtype": "float32", "shape": ["B", "N", 16]}]
        assert len(sidecar["rope"]["inv_freq"]) == 16
        index = json.loads((folder / "export.json").read_text())
        assert index == {"recipe": "fp8", "dtype": "fp32", "graphs": {g: f"{g}.json" for g in sorted(DITS)}}

    def test_fp8_graphs_follow_the_recipe(self, exports, tiny_dir: Path, calibration_file: Path) -> None:
        """The fp8 recipe read back from the exported graphs, with every expectation computed here from the files
        and the spec (no package code): each block linear (qkv, o, w1, w2, w3 of every layer) takes its input
        through QuantizeLinear → DequantizeLinear with scale amax/448 from the calibration JSON; the linears the
        recipe keeps out (docs/MODEL.md §8.3's exclusion list; llm_cond_proj lives in the text encoder graph) have none;
        every weight is the checkpoint's E4M3 bytes through DequantizeLinear(axis=0) with its per-row
        weight_scale; and no other Q/DQ exists."""
        import onnx
        from onnx import numpy_helper
        from safetensors import safe_open

        folder = exports.get("fp8", "fp32", DITS)
        amax = json.loads(calibration_file.read_text())["amax"]
        layers = json.loads((tiny_dir / "transformer" / "config.json").read_text())["num_layers"]
        gemms = ("attention.qkv", "attention.o", "feed_forward.w1", "feed_forward.w2", "feed_forward.w3")
        quantized = [f"layers.{i}.{name}" for i in range(layers) for name in gemms]
        excluded = ["input_proj", "t_embedding.mlp_in", "t_embedding.mlp_out", "adaln_proj",
                    *(f"layers.{i}.adaln_modulation" for i in range(layers)),
                    "final_layer.adaln_modulation", "final_layer.linear"]  # fmt: skip
        for graph, table, component in [
            ("dit_cond", "dit_cond", "transformer"),
            ("dit_cond_masked", "dit_cond", "transformer"),
            ("dit_uncond", "dit_uncond", "unconditional_transformer"),
        ]:
            model = onnx.load(str(folder / f"{graph}.onnx"))
            initializers = {t.name: t for t in model.graph.initializer}
            producer = {out: node for node in model.graph.node for out in node.output}

            with safe_open(str(tiny_dir / component / "diffusion_pytorch_model.safetensors"), "pt") as handle:
                stored = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
            linears = {}
            for node in model.graph.node:
                if node.op_type not in ("MatMul", "Gemm"):
                    continue
                weight = producer.get(node.input[1])
                if weight is not None and weight.op_type == "Transpose":
                    weight = producer.get(weight.input[0])
                if weight is None or weight.op_type != "DequantizeLinear":
                    continue  # attention's q·kᵀ and p·v
                # Which linear: the one whose stored E4M3 bytes this DequantizeLinear holds.
                codes = initializers[weight.input[0]]
                assert codes.data_type == onnx.TensorProto.FLOAT8E4M3FN, f"{graph}: {weight.input[0]}"
                code_bytes = numpy_helper.to_array(codes).tobytes()
                matches = [k[: -len(".weight")] for k, t in stored.items() if k.endswith(".weight")
                           and t.dtype == torch.float8_e4m3fn and tuple(t.shape) == tuple(codes.dims)
                           and t.view(torch.uint8).numpy().tobytes() == code_bytes]  # fmt: skip
                assert len(matches) == 1, f"{graph}: {weight.input[0]} matches {matches}"
                name = matches[0]
                assert name not in linears, f"{graph}: {name} twice"
                linears[name] = node
                scale = _value(model, weight.input[1])
                np.testing.assert_array_equal(scale, stored[f"{name}.weight_scale"].numpy(), err_msg=f"{graph} {name}")
                assert [a.i for a in weight.attribute if a.name == "axis"] == [0], f"{graph} {name}: not per row"

                activation = producer.get(node.input[0])
                has_qdq = activation is not None and activation.op_type == "DequantizeLinear"
                if name in excluded:
                    assert not has_qdq, f"{graph}: {name} is excluded but its input has Q/DQ"
                    continue
                assert has_qdq, f"{graph}: {name} has no activation Q/DQ"
                quantize = producer.get(activation.input[0])
                assert quantize is not None and quantize.op_type == "QuantizeLinear", f"{graph} {name}"
                expected = np.float32(amax[table][name] / 448.0)
                for qdq in (quantize, activation):
                    got = _value(model, qdq.input[1])
                    assert got.shape == () and got == expected, f"{graph} {name}: scale {got}, amax/448 = {expected}"
                    zero = _value(model, qdq.input[2])
                    assert zero.dtype.name == "float8_e4m3fn" and not zero.astype(np.float32).any(), f"{graph} {name}"
            assert sorted(linears) == sorted(quantized + excluded), graph
            quantizers = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
            assert len(quantizers) == len(quantized), f"{graph}: {len(quantizers)} QuantizeLinear nodes"

    def test_external_data_graph_runs_and_builds(self, tiny_dir: Path, exports, tmp_path: Path) -> None:
        """Weights in a side file (as every full-size graph has them) load in ONNX Runtime and TensorRT-RTX."""
        out = tmp_path / "external"
        assert main(["export", "--model", str(tiny_dir), "--out", str(out), "--recipe", "fp8-wo", "--dtype", "fp32",
                     "--components", "dit_uncond", "--external-data", "always"]) == 0  # fmt: skip
        sidecar = json.loads((out / "dit_uncond.json").read_text())
        assert sidecar["external_data"] == "dit_uncond.onnx.data"
        assert (out / "dit_uncond.onnx.data").stat().st_size > (out / "dit_uncond.onnx").stat().st_size
        inline = exports.get("fp8-wo", "fp32", DITS)
        inputs = (torch.randn(1, 16, 16), torch.rand(1), torch.randn(16, 32), torch.randn(16, 32))
        a = session(out / "dit_uncond.onnx").run(None, feeds(sidecar["inputs"], inputs))[0]
        b = session(inline / "dit_uncond.onnx").run(None, feeds(sidecar["inputs"], inputs))[0]
        np.testing.assert_array_equal(a, b)
        profile = profile_for(ExportSidecar.load(out, Component.DIT_UNCOND).inputs, Bucket(256, 256))
        build_engine(out / "dit_uncond.onnx", [profile], BuildTarget(Flavor.TENSORRT_RTX, ("8.9",)))


class TestDiTsFp16:
    @pytest.mark.parametrize("graph", ["dit_cond", "dit_uncond", "vae_decoder"])
    def test_fp16_graph_within_fp16_bounds(self, checkpoint, calibration_file, exports, graph) -> None:
        folder = exports.get("fp8-wo", "fp16", DITS_AND_VAE)
        sidecar = json.loads((folder / f"{graph}.json").read_text())
        reference, _ = _reference(checkpoint, calibration_file, "fp8-wo", Component(graph), GraphDType.FP16, {})
        ort_session = session(folder / f"{graph}.onnx")
        names = [spec["name"] for spec in sidecar["inputs"]]
        for sizes in SIZES:
            inputs = example_inputs(Component(graph), checkpoint, torch.float16, sizes, seed=sizes.batch)
            (result,) = ort_session.run(None, feeds(sidecar["inputs"], inputs))
            # The DiT embeds 1e4·t, so rounding t to the compute dtype (which every reference does,
            # docs/MODEL.md §5.2) is part of the model in fp16: the float64 reference gets the same rounded t.
            reference_inputs = [
                t.half().double() if name == "timestep" else (t.double() if t.is_floating_point() else t)
                for name, t in zip(names, inputs, strict=True)
            ]
            with torch.no_grad():
                expected = reference(*reference_inputs).double().numpy()
            assert result.dtype == np.float32
            error = _relative(result, expected)
            assert 0 < error <= FP16_BOUND, f"{graph} {sizes}: relative error {error:.2e}"


def test_fp8_wo_dit_file_is_half_when_weights_dominate(tmp_path) -> None:
    """With weights larger than the graph structure (as at full size, 9 GB vs 1 MB), the file ratio is the
    weight ratio: a wider tiny DiT, bf16 vs fp8-wo."""
    from ideogram_trt.cli import main

    wide = tmp_path / "wide"
    assert main(["make-tiny", str(wide), "--heads", "4", "--head-dim", "64", "--intermediate-size", "704"]) == 0
    sizes = {}
    for recipe in ("bf16", "fp8-wo"):
        out = tmp_path / recipe
        assert (
            main(["export", "--model", str(wide), "--out", str(out), "--recipe", recipe, "--components", "dit_uncond"])
            == 0
        )
        sizes[recipe] = (out / "dit_uncond.onnx").stat().st_size
    ratio = sizes["fp8-wo"] / sizes["bf16"]
    assert 0.5 <= ratio <= 0.56, ratio


def test_the_vae_ignores_the_recipe(checkpoint) -> None:
    """The release's VAE has no FP8 weights: every recipe exports the same VAE module, hence the same graph."""
    from ideogram_trt.export.recipes import QuantPlan

    modules = [build_module(checkpoint, Component.VAE_DECODER, r, torch.bfloat16, QuantPlan(), None) for r in Recipe]
    states = [m.state_dict() for m in modules]
    assert all(s.keys() == states[0].keys() for s in states)
    assert all(torch.equal(s[k], states[0][k]) for s in states for k in s)
    assert {type(m.vae) for m in modules} == {type(modules[0].vae)}


def test_text_encoder_stays_weight_only_under_fp8(checkpoint) -> None:
    """Unless asked, the fp8 recipe leaves the text encoder weight-only: the very module fp8-wo exports."""
    from ideogram_trt.export.quant_modules import QuantLinear
    from ideogram_trt.export.recipes import QuantPlan

    options = ExportOptions(Recipe.FP8, GraphDType.BF16)
    assert options.plan(Component.TEXT_ENCODER) == QuantPlan()
    fp8 = build_module(checkpoint, Component.TEXT_ENCODER, Recipe.FP8, torch.bfloat16, QuantPlan(), None)
    wo = build_module(checkpoint, Component.TEXT_ENCODER, Recipe.FP8_WO, torch.bfloat16, QuantPlan(), None)
    linears = [m for m in fp8.modules() if isinstance(m, QuantLinear)]
    assert len(linears) == 36 * 7 + 1 and all(m.input_scale is None for m in linears)
    a, b = fp8.state_dict(), wo.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k].view(torch.uint8), b[k].view(torch.uint8)) for k in a)


@pytest.mark.parametrize("graph", [Component.DIT_COND, Component.TEXT_ENCODER])
def test_fp8_weight_recipes_never_dequantize_the_fp8_weights(checkpoint, graph: Component, monkeypatch) -> None:
    """fp8-wo and fp8 keep the stored E4M3 bytes, so building their module must not make a float copy of any FP8
    weight (at full size that copy is 18.6 GB per DiT); bf16 dequantizes every one of them."""
    from ideogram_trt.export.recipes import QuantPlan
    from ideogram_trt.model import fp8

    calls = []
    original = fp8.dequantize_rowwise
    monkeypatch.setattr(fp8, "dequantize_rowwise", lambda *a: calls.append(1) or original(*a))
    for recipe in (Recipe.FP8_WO, Recipe.FP8):
        build_module(checkpoint, graph, recipe, torch.bfloat16, QuantPlan(), None)
    assert calls == []
    build_module(checkpoint, graph, Recipe.BF16, torch.bfloat16, QuantPlan(), None)
    assert len(calls) >= 7  # every FP8 linear of a block, at least
