"""Apply a recipe to a loaded module: linears → ``QuantLinear`` (FP8 weights, optional activation Q/DQ),
attention → ``QuantAttention`` (optional FP8 attention). The result is both the export source and the PyTorch
fake-quant reference the ONNX graphs are checked against."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ideogram_trt.core.errors import InputError
from ideogram_trt.export.qdq import FP8_MAX, fp8_dequantize, fp8_qdq
from ideogram_trt.export.recipes import QuantPlan
from ideogram_trt.model.dit import Attention
from ideogram_trt.model.fp8 import FP8_DTYPE

SOFTMAX_SCALE = 1.0 / FP8_MAX  # probabilities lie in [0, 1]: amax 1 (the scale TensorRT's FP8 MHA expects)


class QuantLinear(nn.Module):
    """``y = x' · W'ᵀ + b`` with W' the dequantized E4M3 weight (or a float weight) and x' the activation after
    per-tensor FP8 Q/DQ (when ``input_scale`` is set); plus ``(x · Aᵀ) · Bᵀ`` while LoRA factors (Aᵀ, Bᵀ) are
    attached (``export.lora``): on ``x`` as it arrives, in the compute dtype, beside the base GEMM."""

    weight_scale: torch.Tensor | None
    input_scale: torch.Tensor | None
    lora: tuple[torch.Tensor, torch.Tensor] | None = None

    def __init__(
        self,
        weight: torch.Tensor,
        weight_scale: torch.Tensor | None,
        bias: torch.Tensor | None,
        input_scale: torch.Tensor | None,
        dtype: torch.dtype,
    ) -> None:
        super().__init__()
        if weight.dtype == FP8_DTYPE:
            if weight_scale is None:
                raise ValueError("an FP8 weight needs its per-row scale")
            self.register_buffer("weight", weight)
            # Dequantize in the compute dtype, as the official Fp8Linear does for x.dtype (docs/MODEL.md §8.2): in bf16
            # this is bit-identical to the release's bf16 weight.
            self.register_buffer("weight_scale", weight_scale.to(dtype))
        else:
            self.register_buffer("weight", weight.to(dtype))
            self.weight_scale = None
        self.register_buffer("bias", None if bias is None else bias.to(dtype))
        self.register_buffer("input_scale", None if input_scale is None else input_scale.to(dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        side = None if self.lora is None else _side_path(x, *self.lora)
        if self.input_scale is not None:
            x = fp8_qdq(x, self.input_scale)
        weight = self.weight if self.weight_scale is None else fp8_dequantize(self.weight, self.weight_scale)
        y = F.linear(x, weight, self.bias)
        return y if side is None else y + side


def _side_path(x: torch.Tensor, down_t: torch.Tensor, up_t: torch.Tensor) -> torch.Tensor:
    """``(x · Aᵀ) · Bᵀ`` over the rows of ``x`` as one 2-D GEMM pair: a 3-D ``x`` against 2-D factors would make
    TensorRT replicate the factors across the batch before a batched GEMM (a copy kernel per factor)."""
    rows = x.reshape(-1, x.shape[-1])
    return torch.matmul(torch.matmul(rows, down_t), up_t).reshape(*x.shape[:-1], up_t.shape[-1])


class QuantAttention(Attention):
    """Attention with FP8 Q/DQ on q, k, v and on the softmax probabilities, written out so TensorRT can fuse it
    into FP8 MHA (scaled dot product, masked softmax, then the value product)."""

    def __init__(self, source: Attention, q_scale: float, k_scale: float, v_scale: float, dtype: torch.dtype) -> None:
        nn.Module.__init__(self)
        self.num_heads, self.head_dim = source.num_heads, source.head_dim
        self.qkv, self.o, self.norm_q, self.norm_k = source.qkv, source.o, source.norm_q, source.norm_k
        # Scales are fp32 numbers (as a calibration file holds them), then rounded to the compute dtype.
        scales = {"q_scale": q_scale, "k_scale": k_scale, "v_scale": v_scale, "p_scale": SOFTMAX_SCALE}
        for name, value in scales.items():
            self.register_buffer(name, torch.tensor(value, dtype=torch.float32).to(dtype))

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        q, k, v = fp8_qdq(q, self.q_scale), fp8_qdq(k, self.k_scale), fp8_qdq(v, self.v_scale)
        scores = torch.matmul(q, k.transpose(-1, -2)) * (self.head_dim**-0.5)
        if key_mask is not None:
            scores = scores.masked_fill(~key_mask, float("-inf"))
        probs = torch.softmax(scores, dim=-1)
        return torch.matmul(fp8_qdq(probs, self.p_scale), v)


def amax_to_scale(amax: float) -> float:
    return max(float(amax), 1e-12) / FP8_MAX


def apply_plan(
    module: nn.Module,
    stored: dict[str, torch.Tensor],
    plan: QuantPlan,
    fp8_weights: bool,
    dtype: torch.dtype,
    amax: dict[str, float] | None = None,
) -> nn.Module:
    """Swap every ``nn.Linear`` of ``module`` for a ``QuantLinear`` in place.

    ``stored`` holds the checkpoint's tensors under the module's names (FP8 weights as stored). With
    ``fp8_weights`` an FP8-stored linear keeps its E4M3 bytes and per-row scale unchanged (no requantization);
    otherwise it keeps the module's float weight. ``amax`` (from calibration) gives the activation scales.
    """
    amax = amax or {}
    if plan.quantize_attention:
        for name, child in list(module.named_modules()):
            if isinstance(child, Attention) and not isinstance(child, QuantAttention):
                scales = [amax_to_scale(_amax(amax, f"{name}.{part}")) for part in ("q", "k", "v")]
                _replace(module, name, QuantAttention(child, *scales, dtype=dtype))
    for name, child in list(module.named_modules()):
        if not isinstance(child, nn.Linear):
            continue
        fp8 = stored.get(f"{name}.weight")
        if fp8_weights and fp8 is not None and fp8.dtype == FP8_DTYPE:
            weight, weight_scale = fp8, stored[f"{name}.weight_scale"]
        else:
            weight, weight_scale = child.weight.detach(), None
        input_scale = None
        if plan.quantizes_input_of(name):
            input_scale = torch.tensor(amax_to_scale(_amax(amax, name)), dtype=torch.float32)
        bias = None if child.bias is None else child.bias.detach()
        _replace(module, name, QuantLinear(weight, weight_scale, bias, input_scale, dtype))
    return module


def _amax(amax: dict[str, float], name: str) -> float:
    if name not in amax:
        raise InputError(f"the calibration file has no amax for {name!r}: recalibrate this checkpoint")
    return amax[name]


def _replace(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, leaf = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, leaf, new)
