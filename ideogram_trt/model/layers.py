"""Small layers whose numerics must equal the reference's op for op."""

from __future__ import annotations

import torch
from torch import nn


class RMSNorm(nn.Module):
    """diffusers' RMSNorm (docs/MODEL.md §4.5): variance in fp32, normalize, cast to the weight dtype, then scale.

    ``x * rsqrt(var + eps)`` promotes a bf16 ``x`` to fp32, and the product is rounded to bf16 before the weight
    multiply; reproducing that order keeps bf16 graphs bit-compatible with the reference.
    """

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm over the last axis in ``RMSNorm``'s order; ``weight`` broadcasts (several norms stacked at once)."""
    variance = x.to(torch.float32).pow(2).mean(-1, keepdim=True)
    x = x * torch.rsqrt(variance + eps)
    if weight.dtype in (torch.float16, torch.bfloat16):
        x = x.to(weight.dtype)
    return x * weight


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)
