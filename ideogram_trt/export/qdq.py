"""FP8 fake quantization as two custom torch ops, each translated to native ONNX QuantizeLinear/DequantizeLinear.

- ``fp8_qdq(x, scale)``: per-tensor activation quantize→dequantize (saturating, round-to-nearest-even), exactly
  ONNX ``DequantizeLinear(QuantizeLinear(x, scale, 0), scale, 0)``.
- ``fp8_dequantize(weight, scale)``: the release's E4M3 weight [out, in] times its per-row scale [out], in the
  scale's dtype — the official ``Fp8Linear`` dequantizing in the compute dtype (docs/MODEL.md §8.2). Exported as a
  FLOAT8E4M3FN initializer feeding ``DequantizeLinear(axis=0)``, so the graph stores one byte per weight.

Zero points are explicit FLOAT8E4M3FN zeros (docs/ARCHITECTURE.md §5), never TensorRT custom ops or INT8 proxies.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx_ir as ir
import torch
from onnxscript import opset21 as op

FP8_MAX = 448.0


@torch.library.custom_op("ideogram_trt::fp8_qdq", mutates_args=())
def fp8_qdq(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    q = (x / scale).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)
    return q.to(x.dtype) * scale


@fp8_qdq.register_fake
def _fp8_qdq_fake(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)


@torch.library.custom_op("ideogram_trt::fp8_dequantize", mutates_args=())
def fp8_dequantize(weight: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return weight.to(scale.dtype) * scale[:, None]


@fp8_dequantize.register_fake
def _fp8_dequantize_fake(weight: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return torch.empty(weight.shape, dtype=scale.dtype, device=weight.device)


def _fp8_zeros(shape: tuple[int, ...]) -> ir.Tensor:
    return ir.tensor(np.zeros(shape, dtype=ml_dtypes.float8_e4m3fn))


def _onnx_fp8_qdq(x, scale):
    zero_point = op.Constant(value=_fp8_zeros(()))
    quantized = op.QuantizeLinear(x, scale, zero_point, saturate=1)
    return op.DequantizeLinear(quantized, scale, zero_point)


def _onnx_fp8_dequantize(weight, scale):
    rows = scale.shape[0]
    zero_point = op.Constant(value=_fp8_zeros((int(rows),)))
    return op.DequantizeLinear(weight, scale, zero_point, axis=0)


ONNX_TRANSLATIONS = {
    torch.ops.ideogram_trt.fp8_qdq.default: _onnx_fp8_qdq,
    torch.ops.ideogram_trt.fp8_dequantize.default: _onnx_fp8_dequantize,
}
