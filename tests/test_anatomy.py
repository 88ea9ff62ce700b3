"""Engine anatomy (issue 15, first part): the TensorRT-RTX builder's detailed layer report, parsed and classified,
on a hand-written report and on a real CPU build of the tiny fp8 DiT (the build is real; no engine runs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ideogram_trt.core.buckets import Bucket
from ideogram_trt.core.components import Component
from ideogram_trt.core.sidecar import ExportSidecar
from ideogram_trt.engines.anatomy import (
    AnatomyError,
    BlockPattern,
    EngineAnatomy,
    LayerClass,
    block_patterns,
    parse_layer_report,
)
from ideogram_trt.engines.profiles import AxisRange, ProfileRanges, profile_for
from ideogram_trt.engines.tensorrt_adapter import BuildTarget, Flavor, build_engine

VERSION = "1.7.1.116"
T = "Strides: [64,1], StrideOrder: [1,0]"
REPORT = "\n".join([
    "Layers:",
    "Name: __mye1_0, LayerType: shape_call, Inputs: [], Constants: [], Outputs: [], TacticName: , StreamId: 0, "
    "Metadata: ",
    f"Name: layers.3.feed_forward.w3/MatMul_1+layers.3.feed_forward.w1/MatMul_1_myl0_7, LayerType: gemm, Inputs: "
    f"[ {{ Name: x, Dimensions: [-1,64], {T}, Datatype: FP8, Format: (Linear) Row major linear format }}], "
    f"Constants: [ {{ Name: w, Dimensions: [64,64], {T}, Datatype: FP8, Format: (Linear) Row major }}], Outputs: "
    f"[ {{ Name: y, Dimensions: [-1,128], {T}, Datatype: BFloat16, Format: (Linear) Row major }}], TacticName: "
    "__myelin_CASK_STUB, StreamId: 0, Metadata: [ONNX Layer: layers.3.feed_forward.w3/MatMul_1][ONNX Layer: "
    "layers.3.feed_forward.w3/DequantizeLinear_1][ONNX Layer: layers.3.feed_forward.w1/MatMul_1]",
    f"Name: _gemm_mha_v2_myl0_8, LayerType: kgen, Inputs: [ {{ Name: q, Dimensions: [-1,18,-1,256], {T}, "
    "Datatype: BFloat16, Format: x }], Constants: [], Outputs: [], TacticName: _gemm_mha_v2_0x01, StreamId: 0, "
    "Metadata: [ONNX Layer: layers.3.attention/MatMul_2][ONNX Layer: layers.3.attention/Softmax_1]",
    f"Name: __myl_CastMulCastFc_myl0_9, LayerType: runtime_fusion, Inputs: [ {{ Name: h, Dimensions: [-1,64], {T}, "
    f"Datatype: BFloat16, Format: x }}], Constants: [ {{ Name: w, Dimensions: [64,64], {T}, Datatype: FP8, "
    "Format: x }], Outputs: [], TacticName: , StreamId: 0, Metadata: "
    "[ONNX Layer: layers.3.adaln_modulation/DequantizeLinear_1][ONNX Layer: layers.3.adaln_modulation/MatMul_1]",
    "Name: __mye47538_myl0_11, LayerType: signal, Inputs: [], Constants: [], Outputs: [], TacticName: , "
    "StreamId: 0, EventId:",
    "Name: __myl_AddSilu_myl0_10, LayerType: kgen, Inputs: [], Constants: [], Outputs: [], TacticName: k, "
    "StreamId: 1, Metadata: [ONNX Layer: t_embedding/Sigmoid_1]",
    "",
    "I/O Tensors:",
])  # fmt: skip


def test_a_hand_written_report_parses_and_classifies() -> None:
    layers = parse_layer_report(REPORT, VERSION)
    assert [layer.kind for layer in layers] == [
        LayerClass.SHAPE, LayerClass.GEMM, LayerClass.ATTENTION, LayerClass.DEQUANT_GEMM, LayerClass.SYNC,
        LayerClass.ELEMENTWISE,
    ]  # fmt: skip
    ffn = layers[1]
    assert ffn.modules == ("layers.3.feed_forward.w3", "layers.3.feed_forward.w1") and ffn.block == 3
    assert ffn.precision == "FP8" and ffn.inputs[0].dims == (-1, 64) and ffn.constants[0].name == "w"
    assert layers[2].precision == "BFloat16" and layers[3].modules == ("layers.3.adaln_modulation",)
    assert layers[4].onnx_layers == () and layers[5].block is None and layers[5].stream == 1
    assert block_patterns(layers) == {3: BlockPattern(gemm=2, fp8_gemm=1, attention=1, attention_precision="BFloat16",
                                                      other=0)}  # fmt: skip


@pytest.mark.parametrize(
    ("report", "version", "needle"),
    [
        (REPORT, "10.13.0", "TensorRT-RTX 10.13.0: its build report format is not known"),
        ("Engine Metadata:", VERSION, "not a TensorRT layer report"),
        ("Layers:\nName: x, LayerKind: gemm", VERSION, "unreadable line in the TensorRT-RTX 1.7.1.116 build report"),
        ("Layers:\n", VERSION, "lists no layers"),
        (REPORT.replace("[-1,64]", "[-1,?]", 1), VERSION, "unreadable dimensions [-1,?]"),
    ],
    ids=["version", "header", "line", "empty", "dims"],
)
def test_a_report_it_cannot_read_is_one_error(report: str, version: str, needle: str) -> None:
    with pytest.raises(AnatomyError) as caught:
        parse_layer_report(report, version)
    assert needle in str(caught.value) and "\n" not in str(caught.value)


def _block(kind: str, precision: str, *linears: str) -> tuple[str, str, tuple[str, ...]]:
    return kind, precision, linears


FFN_FUSED = ("feed_forward.w3", "feed_forward.w1")
# Per block, in engine order, the GEMMs of the four block linears and the attention kernel. The adaLN modulation
# GEMMs (weight-only in every recipe) are left out: TensorRT fuses them across blocks differently per recipe
# (bf16: one GEMM for every block's).
BLOCK_PATTERNS = {
    "fp8": [_block("gemm", "FP8", "attention.qkv"), _block("attention", "BFloat16", "attention"),
            _block("gemm", "FP8", "attention.o"), _block("gemm", "FP8", *FFN_FUSED),
            _block("gemm", "FP8", "feed_forward.w2")],
    "fp8-quantize-attention": [_block("gemm", "FP8", "attention.qkv"), _block("attention", "FP8", "attention"),
                               _block("gemm", "FP8", "attention.o"), _block("gemm", "FP8", *FFN_FUSED),
                               _block("gemm", "FP8", "feed_forward.w2")],
    # Weight-only: bf16 GEMMs each fused with its weight dequantize, and w1/w3 not fused into one GEMM (measured).
    "fp8-wo": [_block("dequant_gemm", "BFloat16", "attention.qkv"), _block("attention", "BFloat16", "attention"),
               _block("dequant_gemm", "BFloat16", "attention.o"), _block("dequant_gemm", "BFloat16", "feed_forward.w3"),
               _block("dequant_gemm", "BFloat16", "feed_forward.w1"),
               _block("dequant_gemm", "BFloat16", "feed_forward.w2")],
    "bf16": [_block("gemm", "BFloat16", "attention.qkv"), _block("attention", "BFloat16", "attention"),
             _block("gemm", "BFloat16", "attention.o"), _block("gemm", "BFloat16", *FFN_FUSED),
             _block("gemm", "BFloat16", "feed_forward.w2")],
}  # fmt: skip


# Other kernels per block today (elementwise, reformat), first and last block of the two-block DiT: a change
# that breaks a fusion adds kernels and fails here, with the block's kernels in the message.
OTHER_TODAY = {"fp8": (9, 11), "fp8-quantize-attention": (9, 11), "fp8-wo": (10, 12), "bf16": (10, 12)}
# The full-size plans in docs/bench/anatomy were built before q and k were normalized and rotated as one tensor
# (docs/BENCHMARKS.md §6.4); then the small DiT had these counts too. Rebuilding them updates this to OTHER_TODAY.
FULL_SIZE_OTHER = {"fp8": (11, 14), "fp8-quantize-attention": (11, 14), "fp8-wo": (13, 16), "bf16": (13, 16)}


@pytest.fixture(scope="module")
def wide_exports(tmp_path_factory: pytest.TempPathFactory):
    """A two-block DiT with the release's head_dim (256) and block structure, narrow elsewhere, and its exports."""
    from conftest import Exports, SharedBuilds

    from ideogram_trt.cli import main

    root = tmp_path_factory.mktemp("wide")
    checkpoint, calibration = root / "ckpt", root / "calibration.json"
    widths = ["--heads", "2", "--head-dim", "256", "--intermediate-size", "1024"]
    assert main(["make-tiny", str(checkpoint), *widths]) == 0
    assert main(["calibrate", "--model", str(checkpoint), "--out", str(calibration), "--resolution", "256x256",
                 "--preset", "V4_TURBO_12", "--limit", "1"]) == 0  # fmt: skip
    return Exports(SharedBuilds(root / "exports"), checkpoint, calibration)


def _kernels(layers: list, block: int) -> list[tuple[str, str, tuple[str, ...]]]:
    prefix = f"layers.{block}."
    return [
        (layer.kind.value, layer.precision, tuple(m.removeprefix(prefix) for m in layer.modules))
        for layer in layers
        if layer.block == block and layer.kind.runs_kernel
    ]


@pytest.mark.parametrize("case", list(BLOCK_PATTERNS))
def test_the_dit_block_pattern(wide_exports, case: str) -> None:
    """Each block of a two-block DiT at head_dim 256, built by TensorRT-RTX on the CPU: the kernels the recipe
    should produce (the full-width plans in docs/bench/anatomy have the same), no other kernels than today's,
    and no kernel that runs the attention's Softmax or MatMul alone."""
    recipe, flags = ("fp8", {"quantize_attention": True}) if case == "fp8-quantize-attention" else (case, {})
    folder = wide_exports.get(recipe, "bf16", ("dit_cond",), **flags)
    inputs = ExportSidecar.load(folder, Component.DIT_COND).inputs
    ranges = ProfileRanges(batch=AxisRange(1, 1, 2), text=AxisRange(1, 32, 128))
    target = BuildTarget(Flavor.TENSORRT_RTX, compute_capabilities=("8.9",))
    result = build_engine(folder / "dit_cond.onnx", [profile_for(inputs, Bucket(256, 256), ranges)], target, True)
    (report,) = result.layer_reports
    layers = parse_layer_report(report, result.version)
    patterns = block_patterns(layers)
    assert sorted(patterns) == [0, 1]
    kinds = ("gemm", "dequant_gemm", "attention")
    for block in (0, 1):
        everything = _kernels(layers, block)
        found = [k for k in everything if k[0] in kinds and not all(m.endswith("adaln_modulation") for m in k[2])]
        listing = "\n".join(map(str, everything))
        assert found == BLOCK_PATTERNS[case], f"block {block} of the {case} DiT engine:\n{listing}"
        assert patterns[block].other <= OTHER_TODAY[case][block], (
            f"block {block} of the {case} DiT engine has {patterns[block].other} other kernels, "
            f"{OTHER_TODAY[case][block]} before (a fusion broke?):\n{listing}"
        )
    attention_parts = ("attention/Softmax", "attention/MatMul")
    alone = [layer.name for layer in layers if layer.kind is not LayerClass.ATTENTION
             and any(part in node for node in layer.onnx_layers for part in attention_parts)]  # fmt: skip
    assert not alone, f"attention ops outside the fused kernel: {alone}"


FULL_SIZE = Path(__file__).parent.parent / "docs" / "bench" / "anatomy"
FULL_SIZE_CASES = {"fp8": "fp8", "fp8-quantize-attention": "fp8-qa", "fp8-wo": "fp8-wo", "bf16": "bf16"}


@pytest.mark.parametrize("case", list(BLOCK_PATTERNS))
def test_the_full_size_plans_have_the_small_dits_block_pattern(case: str) -> None:
    """The 34-block, full-width plans built on the H200 host (docs/BENCHMARKS.md §6): every block has the kernels
    the small DiT's gate above checks."""
    anatomy = EngineAnatomy.load(FULL_SIZE / f"dit_cond.{FULL_SIZE_CASES[case]}.anatomy.json")
    layers = list(anatomy.layers)
    assert sorted(block_patterns(layers)) == list(range(34))
    for block in range(34):
        found = [k for k in _kernels(layers, block) if k[0] in ("gemm", "dequant_gemm", "attention")
                 and not all(m.endswith("adaln_modulation") for m in k[2])]  # fmt: skip
        assert found == BLOCK_PATTERNS[case], f"full-size block {block}: {found}"
    patterns = block_patterns(layers)
    assert (patterns[0].other, patterns[33].other) == FULL_SIZE_OTHER[case]  # the first and last block
