"""Engine anatomy from the engine inspector's JSON (what ``get_engine_information`` and ``trtexec --exportLayerInfo``
give for a plan built with detailed profiling verbosity), on hand-written JSON in that format; and the one-line error
when this machine cannot deserialize a plan."""

from __future__ import annotations

import importlib.util
import json
from typing import Any

import pytest

from ideogram_trt.core.manifest import Flavor
from ideogram_trt.engines.anatomy import AnatomyError, BlockPattern, LayerClass, block_patterns
from ideogram_trt.engines.inspector import inspect_plan, parse_inspector_json

SEP = "\x1e"  # TensorRT separates Metadata entries with an ASCII record separator


def tensor(name: str, dims: list[int], fmt: str) -> dict[str, Any]:
    return {"Name": name, "Location": "Device", "Dimensions": dims, "Format/Datatype": fmt}


LAYERS: list[Any] = [
    {
        "Name": "__mye1_0",
        "LayerType": "shape_call",
        "Inputs": [],
        "Outputs": [],
        "TacticName": "",
        "StreamId": 0,
        "Metadata": "",
    },
    {
        "Name": "layers.3.feed_forward.w3/MatMul_1+layers.3.feed_forward.w1/MatMul_1_myl0_7",
        "LayerType": "gemm",
        "Inputs": [tensor("x", [-1, 64], "FP8"), tensor("w", [128, 64], "Row major linear FP8 format")],
        "Outputs": [tensor("y", [-1, 128], "BFloat16")],
        "TacticName": "sm90_xmma_gemm_e4m3e4m3_e4m3f32_f32_tn_n_tilesize128x128x128",
        "StreamId": 0,
        "Metadata": SEP.join(
            [
                "[ONNX Layer: layers.3.feed_forward.w3/MatMul_1]",
                "[ONNX Layer: layers.3.feed_forward.w3/DequantizeLinear_1]",
                "[ONNX Layer: layers.3.feed_forward.w1/MatMul_1]",
            ]
        ),
    },
    {
        "Name": "_gemm_mha_v2_myl0_8",
        "LayerType": "kgen",
        "Inputs": [tensor("q", [-1, 18, -1, 256], "BFloat16"), tensor("k", [-1, 18, -1, 256], "BFloat16")],
        "Outputs": [tensor("o", [-1, 18, -1, 256], "BFloat16")],
        "TacticName": "_gemm_mha_v2_0x01",
        "StreamId": 0,
        "Metadata": "[ONNX Layer: layers.3.attention/MatMul_2]\x1f[ONNX Layer: layers.3.attention/Softmax_1]",
    },
    {
        "Name": "Reformatting CopyNode for Input Tensor 0 to layers.3.norm/Mul_1",
        "LayerType": "Reformat",
        "Inputs": [tensor("h", [1, 64, 32, 32], "Channel major BFloat16 format where channel % 8 == 0")],
        "Outputs": [tensor("h'", [1, 64, 32, 32], "Row major linear BFloat16 format")],
        "ParameterType": "Reformat",
        "Origin": "REFORMAT",
        "TacticValue": "0x00000000000003e8",
        "StreamId": 0,
        "Metadata": "[ONNX Layer: layers.3.norm/Mul_1]",
    },
    {
        "Name": "patch_embed/Conv_1 [profile 1]",
        "LayerType": "CaskConvolution",
        "Inputs": [tensor("image [profile 1]", [2, 16, 64, 64], "Channel major FP16 format where channel % 8 == 0")],
        "Outputs": [tensor("patches [profile 1]", [2, 64, 32, 32], "Row major linear FP32")],
        "ParameterType": "Convolution",
        "Kernel": [2, 2],
        "OutMaps": 64,
        "Weights": {"Type": "Half", "Count": 4096},
        "Bias": {"Type": "Float", "Count": 64},
        "TacticName": "sm90_xmma_fprop_implicit_gemm_f16f16_f16f32_f32",
        "TacticValue": "0x9251329244d2a80b",
        "StreamId": 0,
        "Metadata": "[ONNX Layer: patch_embed/Conv_1]",
    },
]


def document(layers: list[Any]) -> str:
    return json.dumps({"Layers": layers, "Bindings": ["x", "image [profile 1]"]})


def test_inspector_json_parses_and_classifies() -> None:
    layers = parse_inspector_json(document(LAYERS))
    assert [layer.kind for layer in layers] == [
        LayerClass.SHAPE, LayerClass.GEMM, LayerClass.ATTENTION, LayerClass.REFORMAT, LayerClass.CONV,
    ]  # fmt: skip
    ffn, attention, reformat, conv = layers[1:]
    assert ffn.modules == ("layers.3.feed_forward.w3", "layers.3.feed_forward.w1") and ffn.block == 3
    assert ffn.precision == "FP8" and ffn.inputs[0].dims == (-1, 64) and ffn.outputs[0].dtype == "BFloat16"
    assert ffn.tactic.startswith("sm90_xmma_gemm") and ffn.constants == ()
    assert attention.precision == "BFloat16" and attention.block == 3 and attention.modules == ("layers.3.attention",)
    assert attention.onnx_layers == ("layers.3.attention/MatMul_2", "layers.3.attention/Softmax_1")
    assert reformat.layer_type == "Reformat" and reformat.precision == "BFloat16" and reformat.block == 3
    assert [layer.profile for layer in layers] == [0, 0, 0, 0, 1]
    assert conv.layer_type == "Convolution" and conv.precision == "Half" and conv.block is None
    assert [(c.name, c.dims, c.dtype) for c in conv.constants] == [
        ("Weights", (4096,), "Half"),
        ("Bias", (64,), "Float"),
    ]
    assert conv.outputs[0].dtype == "Float"
    assert block_patterns(layers) == {
        3: BlockPattern(gemm=1, fp8_gemm=1, attention=1, attention_precision="BFloat16", other=1)
    }


@pytest.mark.parametrize(
    ("fmt", "dtype"),
    [
        ("Row major linear FP32", "Float"),
        ("Row major linear FP16 format", "Half"),
        ("Row major linear BFloat16 format", "BFloat16"),
        ("Row major linear BF16 format (kLINEAR)", "BFloat16"),
        ("Thirty-two wide channel vectorized row major Int8 format", "Int8"),
        ("Row major INT8 format where column stride % 64 == 0", "Int8"),
        ("Row major linear Int32", "Int32"),
        ("Row major linear Int64 format", "Int64"),
        ("Row major linear BOOL", "Bool"),
        ("Row major linear UInt8 format", "UInt8"),
        ("Row major linear FP4 format (kLINEAR)", "FP4"),
        ("Half", "Half"),
        ("Unknown format", "Unknown"),
    ],
)
def test_format_strings_name_the_type_as_the_build_report_does(fmt: str, dtype: str) -> None:
    layer = {"Name": "l", "LayerType": "kgen", "Inputs": [tensor("t", [1], fmt)], "Outputs": []}
    assert parse_inspector_json(document([layer]))[0].inputs[0].dtype == dtype


def test_unescaped_metadata_separators_are_read() -> None:
    layer = {"Name": "l", "LayerType": "kgen", "Metadata": "[ONNX Layer: a]\x1e[ONNX Layer: b]"}
    raw = document([layer]).replace("\\u001e", "\x1e")  # as TensorRT 8.6 wrote it: a bare control character
    assert "\x1e" in raw and parse_inspector_json(raw)[0].onnx_layers == ("a", "b")


def test_a_separate_datatype_field_wins_over_the_format() -> None:
    t = {"Name": "t", "Dimensions": [4], "Datatype": "FP8", "Format": "(Linear) Row major linear format"}
    layer = {"Name": "l", "LayerType": "gemm", "Inputs": [t], "Outputs": []}
    assert parse_inspector_json(document([layer]))[0].precision == "FP8"


def _without_name() -> str:
    broken = [dict(layer) for layer in LAYERS]
    del broken[2]["Name"]
    return document(broken)


def _bad_dims() -> str:
    broken = json.loads(document(LAYERS))
    broken["Layers"][1]["Inputs"][0]["Dimensions"] = [-1, "64"]
    return json.dumps(broken)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("Layers:\nName: x, LayerType: gemm", "not JSON"),
        (json.dumps({"Bindings": []}), 'no "Layers" list'),
        (json.dumps([1, 2]), 'no "Layers" list'),
        (json.dumps({"Layers": ["a + b", "c"], "Bindings": ["x"]}), "without detailed profiling verbosity"),
        (_without_name(), "engine inspector layer 2 has no Name"),
        (_bad_dims(), "unreadable Dimensions [-1, '64']"),
        (document([{"Name": "l", "Inputs": []}]), "has no LayerType"),
        (document([{"Name": "l", "LayerType": "kgen", "Inputs": [tensor("t", [1], "Row major")]}]), "unrecognised"),
        (document([{"Name": "l", "LayerType": "kgen", "Metadata": 3}]), "Metadata is not a string"),
        (document([]), "lists no layers"),
    ],
    ids=["not-json", "no-layers", "not-object", "names-only", "no-name", "dims", "no-type", "format", "meta", "empty"],
)
def test_json_it_cannot_read_is_one_error(text: str, needle: str) -> None:
    with pytest.raises(AnatomyError) as caught:
        parse_inspector_json(text)
    assert needle in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.skipif(importlib.util.find_spec("tensorrt_rtx") is None, reason="tensorrt_rtx is not installed")
def test_a_plan_this_machine_cannot_load_is_one_error() -> None:
    with pytest.raises(AnatomyError) as caught:
        inspect_plan(b"not a plan" * 8, Flavor.TENSORRT_RTX)
    message = str(caught.value)
    assert "this machine cannot load the plan" in message and "--from-plan" in message and "\n" not in message
