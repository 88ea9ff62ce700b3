"""Row-wise FP8 weights of the official release (docs/MODEL.md §8).

Every linear stores an E4M3 ``weight`` [out, in] and an F32 ``weight_scale`` [out]. The reference dequantizes
in bf16 (docs/MODEL.md §8.2): ``bf16(fp8→bf16(w) · bf16(scale))`` — the scale is rounded to bf16 first and the product
rounded to bf16. That bf16 tensor is "the" weight; fp32 modules use it upcast, so fp32 graphs reproduce the
release's numerics instead of the slightly different exact product.
"""

from __future__ import annotations

import torch

FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = 448.0  # largest finite E4M3 value
SCALE_SUFFIX = "_scale"


def dequantize_rowwise(weight: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``w.to(bf16) * scale.to(bf16)[:, None]``: the release's weight, bit for bit (docs/MODEL.md §8.2)."""
    return weight.to(torch.bfloat16) * scale.to(torch.bfloat16)[:, None]


def quantize_rowwise(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Float weight → (E4M3 weight, F32 per-row scale = amax/448), the release's storage format.

    Used to write tiny checkpoints; saturating round-to-nearest-even as ``Tensor.to(float8_e4m3fn)`` does.
    """
    w = weight.float()
    amax = w.abs().amax(dim=1).clamp(min=torch.finfo(torch.float32).tiny)
    scale = amax / FP8_MAX
    q = (w / scale[:, None]).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE)
    return q, scale.to(torch.float32)


def is_fp8(tensor: torch.Tensor) -> bool:
    return tensor.dtype == FP8_DTYPE


def dequantize_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Replace every FP8 ``X.weight`` + ``X.weight_scale`` pair by the bf16 dequantized ``X.weight``."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if key.endswith(".weight" + SCALE_SUFFIX):
            continue
        if is_fp8(tensor):
            out[key] = dequantize_rowwise(tensor, state[key + SCALE_SUFFIX])
        else:
            out[key] = tensor
    return out
