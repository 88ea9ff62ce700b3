"""Our ONNX lint for FP8 graphs: what TensorRT accepts silently but computes wrong, or what is not portable.

Rules (docs/ARCHITECTURE.md §5, feasibility.md §3):
- ``opset``: the default-domain opset is at least 21 (FP8 Q/DQ with FLOAT8E4M3FN zero points).
- ``custom-op``: only standard ONNX operators — no TensorRT ``trt::`` ops, no ``TRT_*`` types.
- ``fp8-cast``: no ``Cast`` to an FP8 type; FP8 values come out of ``QuantizeLinear`` only (TensorRT rejects
  the former at build time, ONNX Runtime computes it without saturation).
- ``zero-point``: FP8 zero points are zero (TensorRT builds a non-zero one and silently ignores it).
- ``scale-dtype``: a ``QuantizeLinear`` scale has its input's dtype, a ``DequantizeLinear`` output (the scale's
  dtype) matches the other operands of its consumer.
- ``scale-axis``: a per-channel weight scale runs along the GEMM's output channels after any transpose, and has
  one entry per channel (TensorRT builds a scale along K and computes garbage).
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

MIN_OPSET = 21
FP8_TYPES = {
    TensorProto.FLOAT8E4M3FN,
    TensorProto.FLOAT8E4M3FNUZ,
    TensorProto.FLOAT8E5M2,
    TensorProto.FLOAT8E5M2FNUZ,
}
STANDARD_DOMAINS = {"", "ai.onnx"}
# Ops whose float inputs must share one dtype (where a DequantizeLinear output lands).
SAME_TYPE_OPS = {"MatMul", "Gemm", "Conv", "Add", "Sub", "Mul", "Div", "Concat"}


@dataclass(frozen=True)
class Violation:
    rule: str
    node: str
    message: str

    def __str__(self) -> str:
        return f"[{self.rule}] node {self.node!r}: {self.message}"


class _Graph:
    def __init__(self, model: onnx.ModelProto) -> None:
        # Shape inference is a best effort; the rules fall back to the declared types.
        with contextlib.suppress(Exception):
            model = onnx.shape_inference.infer_shapes(model, strict_mode=False)
        self.model = model
        graph = model.graph
        self.initializers = {t.name: t for t in graph.initializer}
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for node in graph.node:
            for out in node.output:
                self.producer[out] = node
            for name in node.input:
                if name:
                    self.consumers[name].append(node)
        self.types: dict[str, int] = {}
        for value in [*graph.input, *graph.output, *graph.value_info]:
            if value.type.HasField("tensor_type"):
                self.types[value.name] = value.type.tensor_type.elem_type
        for tensor in graph.initializer:
            self.types[tensor.name] = tensor.data_type
        for node in graph.node:
            if node.op_type == "Constant":
                for attr in node.attribute:
                    if attr.name == "value":
                        self.types[node.output[0]] = attr.t.data_type
            elif node.op_type == "DequantizeLinear" and len(node.input) > 1 and node.input[1] in self.types:
                self.types.setdefault(node.output[0], self.types[node.input[1]])

    def constant(self, name: str) -> TensorProto | None:
        if name in self.initializers:
            return self.initializers[name]
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    return attr.t
        return None

    def shape_of(self, name: str) -> tuple[int, ...] | None:
        tensor = self.constant(name)
        return tuple(tensor.dims) if tensor is not None else None


def _attr(node: onnx.NodeProto, name: str, default: int) -> int:
    for attr in node.attribute:
        if attr.name == name:
            return int(attr.i)
    return default


def _ints(node: onnx.NodeProto, name: str) -> list[int] | None:
    for attr in node.attribute:
        if attr.name == name:
            return list(attr.ints)
    return None


def _type_name(elem_type: int) -> str:
    return TensorProto.DataType.Name(elem_type)


def lint_model(model: onnx.ModelProto) -> list[Violation]:
    g = _Graph(model)
    found: list[Violation] = []
    opset = next((o.version for o in model.opset_import if o.domain in STANDARD_DOMAINS), 0)
    if opset < MIN_OPSET:
        found.append(Violation("opset", "<model>", f"default-domain opset {opset} < {MIN_OPSET}"))
    for node in model.graph.node:
        name = node.name or f"{node.op_type}->{node.output[0] if node.output else '?'}"
        if node.domain not in STANDARD_DOMAINS or node.op_type.startswith("TRT_"):
            found.append(Violation("custom-op", name, f"non-standard op {node.domain or 'ai.onnx'}::{node.op_type}"))
        if node.op_type == "Cast" and _attr(node, "to", 0) in FP8_TYPES:
            found.append(Violation("fp8-cast", name, "Cast to FP8 outside a QuantizeLinear (use Q/DQ)"))
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            found.extend(_check_qdq(g, node, name))
    return found


def _check_qdq(g: _Graph, node: onnx.NodeProto, name: str) -> list[Violation]:
    found: list[Violation] = []
    scale = node.input[1]
    if len(node.input) > 2 and node.input[2]:
        zero = g.constant(node.input[2])
        if zero is not None and zero.data_type in FP8_TYPES:
            values = numpy_helper.to_array(zero).astype(np.float32)
            if np.any(values != 0):
                found.append(Violation("zero-point", name, "FP8 zero point is not zero"))
    scale_type = g.types.get(scale)
    if node.op_type == "QuantizeLinear":
        x_type = g.types.get(node.input[0])
        if scale_type is not None and x_type is not None and scale_type != x_type:
            found.append(
                Violation("scale-dtype", name, f"scale is {_type_name(scale_type)}, input is {_type_name(x_type)}")
            )
        return found
    # DequantizeLinear: its output has the scale's dtype; the consumer must compute in that dtype.
    for consumer, fed in _consumers_through_layout_ops(g, node.output[0]):
        if consumer.op_type not in SAME_TYPE_OPS:
            continue
        for other in consumer.input:
            other_type = g.types.get(other)
            if (
                other
                and other != fed
                and other_type is not None
                and scale_type is not None
                and other_type != scale_type
                and other_type not in FP8_TYPES
            ):
                found.append(
                    Violation(
                        "scale-dtype",
                        name,
                        f"dequantizes to {_type_name(scale_type)} but {consumer.op_type} "
                        f"{consumer.name!r} computes in {_type_name(other_type)}",
                    )
                )
                break
    weight = g.constant(node.input[0])
    scale_shape = g.shape_of(scale)
    if weight is not None and scale_shape and len(scale_shape) == 1 and scale_shape[0] > 1:
        found.extend(_check_weight_axis(g, node, name, tuple(weight.dims), scale_shape[0]))
    return found


LAYOUT_OPS = {"Transpose", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Flatten"}


def _consumers_through_layout_ops(g: _Graph, value: str) -> list[tuple[onnx.NodeProto, str]]:
    """The nodes that compute with ``value``, looking through ops that only move its elements around."""
    found, frontier = [], [value]
    while frontier:
        current = frontier.pop()
        for consumer in g.consumers.get(current, []):
            if consumer.op_type in LAYOUT_OPS and consumer.input[0] == current:
                frontier.append(consumer.output[0])
            else:
                found.append((consumer, current))
    return found


def _check_weight_axis(
    g: _Graph, node: onnx.NodeProto, name: str, weight_shape: tuple[int, ...], channels: int
) -> list[Violation]:
    axis = _attr(node, "axis", 1) % len(weight_shape)
    if weight_shape[axis] != channels:
        return [Violation("scale-axis", name, f"{channels} scales along axis {axis} of a {list(weight_shape)} weight")]
    # Follow the dequantized weight through transposes to the GEMM that consumes it.
    value, shape = node.output[0], list(weight_shape)
    while True:
        consumers = g.consumers.get(value, [])
        if len(consumers) != 1 or consumers[0].op_type != "Transpose":
            break
        perm = _ints(consumers[0], "perm") or list(reversed(range(len(shape))))
        axis = perm.index(axis)
        shape = [shape[p] for p in perm]
        value = consumers[0].output[0]
    for consumer in g.consumers.get(value, []):
        if consumer.op_type == "MatMul" and len(consumer.input) > 1 and consumer.input[1] == value:
            out_axis = len(shape) - 1
        elif consumer.op_type == "Gemm" and consumer.input[1] == value:
            out_axis = 0 if _attr(consumer, "transB", 0) else 1
        else:
            continue
        if axis != out_axis:
            return [
                Violation(
                    "scale-axis",
                    name,
                    f"per-channel scales run along the reduction axis of {consumer.op_type} {consumer.name!r}, "
                    "not its output channels",
                )
            ]
    return []


def lint_file(path: Path) -> list[Violation]:
    return lint_model(onnx.load(str(path), load_external_data=False))
