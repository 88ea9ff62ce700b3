"""Exported graphs in ONNX Runtime against the PyTorch module with the same fake quantization (float64), and the
FP8 weight storage, for every component and recipe on the tiny checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from onnx_support import activation_qdq_outputs, feeds, replayed, session
from safetensors.torch import load_file

from ideogram_trt.export.calibration import Calibration
from ideogram_trt.export.exporter import ExportOptions, build_module
from ideogram_trt.export.graphs import Graph, Sizes, example_inputs
from ideogram_trt.export.recipes import GraphDType, Recipe

TEXT = ("text_encoder",)
DITS_AND_VAE = ("dit_cond", "dit_cond_masked", "dit_uncond", "vae_decoder")
# Two batch sizes, two text lengths, two image-token grids (16 and 24 tokens).
SIZES = (Sizes(batch=1, text=7, grid_h=4, grid_w=4), Sizes(batch=3, text=19, grid_h=3, grid_w=8))
FP32_BOUND = 1e-5
FP16_BOUND = 5e-3  # feasibility.md §2: fp16 graphs sit a few 1e-3 from the float64 fake-quant reference

# (recipe, graphs exported together, export flags). The 36-layer text encoder takes ~50 s to export on two
# cores, so it is exported on its own and each of its tests carries an xdist group: one export, one worker.
FP32_EXPORTS = [
    ("bf16", TEXT, {}),
    ("bf16", DITS_AND_VAE, {}),
    ("fp8-wo", TEXT, {}),
    ("fp8-wo", DITS_AND_VAE, {}),
    ("fp8", DITS_AND_VAE, {}),
    ("fp8", TEXT, {"quantize_text_encoder": True}),
    ("fp8", ("dit_cond", "dit_cond_masked"), {"quantize_attention": True}),
]


def text_group(recipe: str, dtype: str) -> pytest.MarkDecorator:
    return pytest.mark.xdist_group(f"text-encoder-{recipe}-{dtype}")


CASES = [
    pytest.param(
        recipe, graphs, graph, flags,
        id=f"{recipe}-{graph}-{'-'.join(flags) or 'default'}",
        marks=[text_group(recipe, "fp32")] if graphs == TEXT else [],
    )
    for recipe, graphs, flags in FP32_EXPORTS
    for graph in graphs
]  # fmt: skip


def _reference(checkpoint, calibration_file, recipe: str, graph: Graph, dtype: GraphDType, flags: dict):
    options = ExportOptions(Recipe(recipe), dtype, (graph,), **flags)
    calibration = Calibration.load(calibration_file)
    module = build_module(
        checkpoint,
        graph,
        Recipe(recipe),
        torch.float64,
        options.plan(graph),
        calibration.amax.get(graph.component.value),
    )
    return module, options.plan(graph)


def _relative(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.linalg.norm(actual.astype(np.float64) - expected) / np.linalg.norm(expected))


@pytest.mark.parametrize(("recipe", "graphs", "graph", "flags"), CASES)
def test_fp32_graph_matches_fake_quant_reference(
    checkpoint, calibration_file, exports, monkeypatch, recipe, graphs, graph, flags
) -> None:
    folder = exports.get(recipe, "fp32", graphs, **flags)
    sidecar = json.loads((folder / f"{graph}.json").read_text())
    path = folder / f"{graph}.onnx"
    reference, plan = _reference(checkpoint, calibration_file, recipe, Graph(graph), GraphDType.FP32, flags)
    quantized_activations = plan.needs_calibration
    extra = activation_qdq_outputs(path) if quantized_activations else []
    assert bool(extra) == quantized_activations
    ort_session = session(path, extra)

    for sizes in SIZES:
        inputs = example_inputs(Graph(graph), checkpoint, torch.float32, sizes, seed=sizes.batch)
        results = ort_session.run(None, feeds(sidecar["inputs"], inputs))
        replay = replayed(monkeypatch, results[1:]) if quantized_activations else None
        with torch.no_grad():
            expected = reference(*[t.double() if t.dtype == torch.float32 else t for t in inputs]).double().numpy()
        if replay is not None:
            assert replay.problems == [] and replay.used == len(extra)
            assert replay.flips <= 1e-3 * replay.elements, f"{replay.flips} of {replay.elements} codes differ"
        error = _relative(results[0], expected)
        assert error <= FP32_BOUND, f"{graph} {recipe} {sizes}: relative error {error:.2e}"


@pytest.mark.parametrize("graph", ["dit_cond", "dit_uncond", "vae_decoder"])
def test_fp16_graph_within_fp16_bounds(checkpoint, calibration_file, exports, graph) -> None:
    folder = exports.get("fp8-wo", "fp16", DITS_AND_VAE)
    sidecar = json.loads((folder / f"{graph}.json").read_text())
    reference, _ = _reference(checkpoint, calibration_file, "fp8-wo", Graph(graph), GraphDType.FP16, {})
    ort_session = session(folder / f"{graph}.onnx")
    names = [spec["name"] for spec in sidecar["inputs"]]
    for sizes in SIZES:
        inputs = example_inputs(Graph(graph), checkpoint, torch.float16, sizes, seed=sizes.batch)
        (result,) = ort_session.run(None, feeds(sidecar["inputs"], inputs))
        # The DiT embeds 1e4·t, so rounding t to the compute dtype (which every reference does, spec §5.2) is
        # part of the model in fp16: the float64 reference gets the same rounded t.
        reference_inputs = [
            t.half().double() if name == "timestep" else (t.double() if t.is_floating_point() else t)
            for name, t in zip(names, inputs, strict=True)
        ]
        with torch.no_grad():
            expected = reference(*reference_inputs).double().numpy()
        assert result.dtype == np.float32
        error = _relative(result, expected)
        assert 0 < error <= FP16_BOUND, f"{graph} {sizes}: relative error {error:.2e}"


def test_fp8_wo_weights_are_the_release_weights_bit_for_bit(exports, tiny_dir) -> None:
    """The bf16 fp8-wo DiT graph stores the release's E4M3 bytes and dequantizes, with its bf16 scale, to exactly
    w.to(bf16) * scale.to(bf16)[:, None] (spec §8.2)."""
    import ml_dtypes
    import onnx
    from onnx import numpy_helper

    folder = exports.get("fp8-wo", "bf16", DITS_AND_VAE)
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


def test_fp8_wo_weights_take_half_the_bytes(exports) -> None:
    """One byte per weight instead of two (bf16): the DiTs' weight bytes halve, plus a little for the scales."""
    bf16 = exports.get("bf16", "bf16", DITS_AND_VAE)
    fp8 = exports.get("fp8-wo", "bf16", DITS_AND_VAE)
    for graph in ("dit_cond", "dit_uncond"):
        a = json.loads((bf16 / f"{graph}.json").read_text())
        b = json.loads((fp8 / f"{graph}.json").read_text())
        assert 0.5 <= b["weights_bytes"] / a["weights_bytes"] <= 0.6, graph


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


def test_sidecar_records_what_the_graph_is(exports, checkpoint) -> None:
    folder = exports.get("fp8", "fp32", DITS_AND_VAE)
    sidecar = json.loads((folder / "dit_cond.json").read_text())
    assert sidecar["recipe"] == "fp8" and sidecar["dtype"] == "fp32" and sidecar["opset"] == 21
    assert sidecar["checkpoint"]["fingerprint"] == checkpoint.fingerprint(("transformer",))
    assert sidecar["calibration"]["sha256"] == Calibration.load(exports.calibration).sha256
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
    assert index == {"recipe": "fp8", "dtype": "fp32", "graphs": {g: f"{g}.json" for g in sorted(DITS_AND_VAE)}}


def test_text_encoder_stays_weight_only_under_fp8(checkpoint) -> None:
    """Unless asked, the fp8 recipe leaves the text encoder weight-only: the very module fp8-wo exports."""
    from ideogram_trt.export.quant_modules import QuantLinear
    from ideogram_trt.export.recipes import QuantPlan

    options = ExportOptions(Recipe.FP8, GraphDType.BF16)
    assert options.plan(Graph.TEXT_ENCODER) == QuantPlan()
    fp8 = build_module(checkpoint, Graph.TEXT_ENCODER, Recipe.FP8, torch.bfloat16, QuantPlan(), None)
    wo = build_module(checkpoint, Graph.TEXT_ENCODER, Recipe.FP8_WO, torch.bfloat16, QuantPlan(), None)
    linears = [m for m in fp8.modules() if isinstance(m, QuantLinear)]
    assert len(linears) == 36 * 7 + 1 and all(m.input_scale is None for m in linears)
    a, b = fp8.state_dict(), wo.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k].view(torch.uint8), b[k].view(torch.uint8)) for k in a)
