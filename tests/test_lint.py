"""Our ONNX lint: one planted violation per rule, each caught with the offending node named."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from ideogram_trt.export.lint import lint_model

FP8 = TensorProto.FLOAT8E4M3FN


def fp8_const(name: str, values) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(values, dtype=ml_dtypes.float8_e4m3fn), name)


def weight_graph(
    *,
    scale_dtype=np.float32,
    zero=0.0,
    axis=0,
    transpose=True,
    opset=21,
    extra_nodes=(),
    channels=4,
    x_dtype=TensorProto.FLOAT,
) -> onnx.ModelProto:
    """x [2, 3] @ DQ(W_fp8 [4, 3], scale [4])ᵀ, the exporter's pattern for a linear layer."""
    out_features, in_features = 4, 3
    initializers = [
        fp8_const("w", np.ones((out_features, in_features))),
        numpy_helper.from_array(np.full(channels, 0.5, dtype=scale_dtype), "w_scale"),
        fp8_const("w_zero", np.full(channels, zero)),
    ]
    nodes = [helper.make_node("DequantizeLinear", ["w", "w_scale", "w_zero"], ["w_dq"], name="qkv/DQ", axis=axis)]
    if transpose:
        nodes.append(helper.make_node("Transpose", ["w_dq"], ["w_t"], name="qkv/Transpose", perm=[1, 0]))
    nodes.append(helper.make_node("MatMul", ["x", "w_t" if transpose else "w_dq"], ["y"], name="qkv/MatMul"))
    nodes.extend(extra_nodes)
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", x_dtype, [2, 3 if transpose else 4])],
        [helper.make_tensor_value_info("y", x_dtype, None)],
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def rules(model: onnx.ModelProto) -> list[tuple[str, str]]:
    return [(v.rule, v.node) for v in lint_model(model)]


def test_clean_graph_passes() -> None:
    assert rules(weight_graph()) == []


def test_non_zero_fp8_zero_point() -> None:
    assert rules(weight_graph(zero=1.0)) == [("zero-point", "qkv/DQ")]


def test_scale_on_the_reduction_axis() -> None:
    """axis=1 of [out, in] is K after the transpose: TensorRT builds it and computes garbage."""
    assert rules(weight_graph(axis=1, channels=3)) == [("scale-axis", "qkv/DQ")]


def test_scale_axis_without_transpose() -> None:
    """A [K, N] weight fed straight to MatMul needs its scales on axis 1, not 0."""
    assert rules(weight_graph(axis=0, transpose=False, channels=4)) == [("scale-axis", "qkv/DQ")]


def test_scale_count_must_match_the_axis() -> None:
    assert rules(weight_graph(channels=3)) == [("scale-axis", "qkv/DQ")]


def test_scale_dtype_differs_from_the_dequantized_dtype() -> None:
    """An fp32 scale dequantizes to fp32, but the MatMul runs in fp16: invalid, and TensorRT refuses it."""
    assert rules(weight_graph(x_dtype=TensorProto.FLOAT16)) == [("scale-dtype", "qkv/DQ")]


def test_quantize_scale_dtype_differs_from_input() -> None:
    q = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="act/Q")
    dq = helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], name="act/DQ")
    graph = helper.make_graph(
        [q, dq],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
        [numpy_helper.from_array(np.array(0.1, dtype=np.float32), "s"), fp8_const("z", 0.0)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    assert ("scale-dtype", "act/Q") in rules(model)


def quantize_graph(q_zero, *, dq_zero=0.0, constant=False) -> onnx.ModelProto:
    """x → QuantizeLinear(x, s, q_zero) → DequantizeLinear(·, s, dq_zero): an activation Q/DQ pair."""
    q = helper.make_node("QuantizeLinear", ["x", "s", "qz"], ["q"], name="act/Q")
    dq = helper.make_node("DequantizeLinear", ["q", "s", "dqz"], ["y"], name="act/DQ")
    initializers = [numpy_helper.from_array(np.array(0.1, dtype=np.float32), "s"), fp8_const("dqz", dq_zero)]
    nodes = [q, dq]
    if constant:  # the zero point as a Constant node's value instead of an initializer
        nodes.insert(0, helper.make_node("Constant", [], ["qz"], name="qz/Constant", value=fp8_const("qz", q_zero)))
    else:
        initializers.append(fp8_const("qz", q_zero))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])


def test_quantize_with_zero_fp8_zero_points_passes() -> None:
    assert rules(quantize_graph(0.0)) == []
    assert rules(quantize_graph(-0.0)) == []  # -0 is zero: E4M3 has a signed zero


@pytest.mark.parametrize("constant", [False, True], ids=["initializer", "constant-node"])
@pytest.mark.parametrize("q_zero", [1.0, -0.5, 448.0, 0.001953125], ids=["one", "negative", "max", "min-subnormal"])
def test_quantize_with_non_zero_fp8_zero_point(q_zero: float, constant: bool) -> None:
    """TensorRT ignores the zero point of a QuantizeLinear just as of a DequantizeLinear (the smallest E4M3
    subnormal, 2⁻⁹, is still not zero)."""
    assert ml_dtypes.float8_e4m3fn(q_zero) != 0
    assert rules(quantize_graph(q_zero, constant=constant)) == [("zero-point", "act/Q")]


def test_both_zero_points_non_zero_name_both_nodes() -> None:
    assert rules(quantize_graph(2.0, dq_zero=-3.0)) == [("zero-point", "act/Q"), ("zero-point", "act/DQ")]


def test_cast_to_fp8() -> None:
    cast = helper.make_node("Cast", ["y"], ["y8"], name="fake_quant/Cast", to=FP8)
    assert rules(weight_graph(extra_nodes=[cast])) == [("fp8-cast", "fake_quant/Cast")]


def test_tensorrt_custom_op() -> None:
    node = helper.make_node("TRT_FP8QuantizeLinear", ["y", "w_scale"], ["y8"], name="modelopt/Q", domain="trt")
    model = weight_graph(extra_nodes=[node])
    model.opset_import.append(helper.make_opsetid("trt", 1))
    assert rules(model) == [("custom-op", "modelopt/Q")]


def test_opset_below_21() -> None:
    assert rules(weight_graph(opset=20)) == [("opset", "<model>")]


def test_cli_lint_reports_and_fails(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    from ideogram_trt.cli import main

    bad, good = tmp_path / "bad.onnx", tmp_path / "good.onnx"
    onnx.save(weight_graph(zero=2.0), str(bad))
    onnx.save(weight_graph(), str(good))
    assert main(["lint", str(good)]) == 0
    assert main(["lint", str(good), str(bad)]) == 1
    out = capsys.readouterr().out
    assert f"{good}: OK" in out and "[zero-point] node 'qkv/DQ'" in out
