"""The Ideogram 4 DiT written for export, taking the engine inputs of docs/ARCHITECTURE.md §4 (docs/MODEL.md §4.5).

Same math as diffusers' ``Ideogram4Transformer2DModel``, refactored exactly (docs/MODEL.md §4.9):
- the text projection (``llm_cond_norm`` + ``llm_cond_proj``) lives in the text encoder, so the conditional DiT
  takes ``text_hidden`` [B, T, D] and never sees the 53,248-wide features;
- RoPE tables arrive from the host in fp32 (``core.rope``); positions never enter the graph;
- a key-padding mask replaces the block-diagonal segment mask (equal on valid tokens, docs/MODEL.md §4.6), and the
  common single-length case runs with no mask at all;
- the output is the image rows only, in fp32 (as sglang returns it).
Parameter names are the release's native ones (fused ``attention.qkv``, ``attention.o``; docs/MODEL.md §4.2).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ideogram_trt.model.configs import DiTConfig
from ideogram_trt.model.layers import RMSNorm, rms_norm, rotate_half

QK_NORM_EPS = 1e-5  # docs/MODEL.md §4.1: hard-coded
FINAL_NORM_EPS = 1e-6
TIMESTEP_SCALE = 1e4  # docs/MODEL.md §4.5: the embedding sees 1e4·t


def rope_inv_freq(config: DiTConfig) -> np.ndarray:
    """RoPE frequencies exactly as the reference computes them (torch, fp32), for the host-side tables."""
    d = config.attention_head_dim
    inv = 1.0 / (config.rope_theta ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
    return inv.numpy().astype(np.float32)


class Attention(nn.Module):
    def __init__(self, hidden_size: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size, bias=False)
        self.o = nn.Linear(hidden_size, hidden_size, bias=False)
        self.norm_q = RMSNorm(self.head_dim, QK_NORM_EPS)
        self.norm_k = RMSNorm(self.head_dim, QK_NORM_EPS)

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, key_mask: torch.Tensor | None
    ) -> torch.Tensor:
        b, length, _ = x.shape
        # Slices, not unbind/chunk: those export as ONNX sequence ops, which TensorRT does not take.
        qkv = self.qkv(x).view(b, length, 3, self.num_heads, self.head_dim)
        # q and k are normalized and rotated as one [B, L, 2, H, hd] tensor: the same per-element math as two norms and
        # two rotations, and TensorRT then fuses them into fewer kernels with no q/k slice copies (issue 15,
        # docs/BENCHMARKS.md §6.4). The weights stay the release's norm_q / norm_k.
        weight = torch.stack((self.norm_q.weight, self.norm_k.weight))[:, None, :]
        qk = rms_norm(qkv[:, :, :2], weight, self.norm_q.eps)
        qk = qk * cos.unsqueeze(-2) + rotate_half(qk) * sin.unsqueeze(-2)
        q, k, v = qk[:, :, 0], qk[:, :, 1], qkv[:, :, 2]
        out = self.attend(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), key_mask)
        return self.o(out.transpose(1, 2).reshape(b, length, -1))

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        """Softmax attention over [B, H, L, hd]; the seam where calibration observes and export quantizes."""
        return F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask)


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1 x) · w3 x)."""

    def __init__(self, hidden_size: int, intermediate_size: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.w2 = nn.Linear(intermediate_size, hidden_size, bias=False)
        self.w3 = nn.Linear(hidden_size, intermediate_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Block(nn.Module):
    """Sandwich-norm block with scale + tanh-gate modulation, no shift (docs/MODEL.md §4.5)."""

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        d = config.hidden_size
        self.attention = Attention(d, config.num_attention_heads)
        self.feed_forward = FeedForward(d, config.intermediate_size)
        self.attention_norm1 = RMSNorm(d, config.norm_eps)
        self.attention_norm2 = RMSNorm(d, config.norm_eps)
        self.ffn_norm1 = RMSNorm(d, config.norm_eps)
        self.ffn_norm2 = RMSNorm(d, config.norm_eps)
        self.adaln_modulation = nn.Linear(config.adaln_dim, 4 * d, bias=True)

    def forward(
        self,
        h: torch.Tensor,
        adaln: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        key_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        mod = self.adaln_modulation(adaln)
        d = mod.shape[-1] // 4
        scale_msa, gate_msa, scale_mlp, gate_mlp = (mod[..., i * d : (i + 1) * d] for i in range(4))
        attn = self.attention(self.attention_norm1(h) * (1.0 + scale_msa), cos, sin, key_mask)
        h = h + torch.tanh(gate_msa) * self.attention_norm2(attn)
        ffn = self.feed_forward(self.ffn_norm1(h) * (1.0 + scale_mlp))
        return h + torch.tanh(gate_mlp) * self.ffn_norm2(ffn)


class TimestepEmbedding(nn.Module):
    """Sinusoidal embedding of 1e4·t in fp32 (sin first), cast to the compute dtype, then a SiLU MLP."""

    frequencies: torch.Tensor

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.mlp_in = nn.Linear(dim, dim, bias=True)
        self.mlp_out = nn.Linear(dim, dim, bias=True)
        # Built with the reference's own torch ops so the constant (and the exported initializer) is bit-equal.
        self.register_buffer("frequencies", self.reference_frequencies(dim), persistent=False)

    @staticmethod
    def reference_frequencies(dim: int) -> torch.Tensor:
        half = dim // 2
        step = math.log(TIMESTEP_SCALE) / (half - 1)
        return torch.exp(torch.arange(half, dtype=torch.float32) * -step)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        angles = (TIMESTEP_SCALE * t.to(torch.float32)).unsqueeze(-1) * self.frequencies
        emb = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1).to(t.dtype)
        return self.mlp_out(F.silu(self.mlp_in(emb)))


class FinalLayer(nn.Module):
    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        self.linear = nn.Linear(config.hidden_size, config.in_channels, bias=True)
        self.adaln_modulation = nn.Linear(config.adaln_dim, config.hidden_size, bias=True)

    def forward(self, h: torch.Tensor, adaln: torch.Tensor) -> torch.Tensor:
        # adaln is already silu(...): the second SiLU is the reference's and every port keeps it (docs/MODEL.md §4.5).
        scale = 1.0 + self.adaln_modulation(F.silu(adaln))
        normed = F.layer_norm(h, (h.shape[-1],), eps=FINAL_NORM_EPS)
        return self.linear(normed * scale)


class IdeogramDiT(nn.Module):
    """Conditional (``text_hidden`` given) or unconditional (image tokens only) velocity predictor.

    Inputs follow ``core.contracts``: ``latents`` fp32 [B, N, C]; ``timestep`` fp32 [B] (cast to the compute
    dtype before the embedding, as every reference does; docs/MODEL.md §5.2); ``rope_cos``/``rope_sin`` fp32 [L, R]
    or, per row, [B, L, R] with L = T + N (cond) or N (uncond); ``text_hidden`` [B, T, D] and optional
    ``text_mask`` [B, T] (1 = real token) for left-padded batches. Returns ``velocity`` fp32 [B, N, C].
    """

    def __init__(self, config: DiTConfig, conditional: bool) -> None:
        super().__init__()
        self.config = config
        self.conditional = conditional
        d = config.hidden_size
        self.input_proj = nn.Linear(config.in_channels, d, bias=True)
        self.t_embedding = TimestepEmbedding(d)
        self.adaln_proj = nn.Linear(d, config.adaln_dim, bias=True)
        # Row 1 marks image tokens; row 0 text (and pad) tokens (docs/MODEL.md §4.5).
        self.embed_image_indicator = nn.Embedding(2, d)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.num_layers))
        self.final_layer = FinalLayer(config)

    @property
    def dtype(self) -> torch.dtype:
        """The compute dtype (read off a tensor no recipe quantizes)."""
        return self.embed_image_indicator.weight.dtype

    def reset_buffers(self) -> None:
        """Recompute non-persistent buffers after building on the meta device."""
        freq = TimestepEmbedding.reference_frequencies(self.config.hidden_size)
        self.t_embedding.frequencies = freq.to(self.embed_image_indicator.weight.device)

    def forward(
        self,
        latents: torch.Tensor,
        timestep: torch.Tensor,
        rope_cos: torch.Tensor,
        rope_sin: torch.Tensor,
        text_hidden: torch.Tensor | None = None,
        text_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        h, adaln, cos, sin, key_mask = self.embed(latents, timestep, rope_cos, rope_sin, text_hidden, text_mask)
        for block in self.layers:
            h = block(h, adaln, cos, sin, key_mask)
        return self.head(h, adaln, latents.shape[1])

    def embed(
        self,
        latents: torch.Tensor,
        timestep: torch.Tensor,
        rope_cos: torch.Tensor,
        rope_sin: torch.Tensor,
        text_hidden: torch.Tensor | None = None,
        text_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Everything before the blocks: the token sequence h, the modulation input, the RoPE tables as the
        blocks broadcast them, and the key mask (None without text_mask)."""
        if self.conditional != (text_hidden is not None):
            raise ValueError("text_hidden is required by the conditional DiT and not accepted by the other")
        dtype = self.dtype
        h = self.input_proj(latents.to(dtype)) + self.embed_image_indicator.weight[1]
        if text_hidden is not None:
            h = torch.cat([text_hidden.to(dtype) + self.embed_image_indicator.weight[0], h], dim=1)

        adaln = F.silu(self.adaln_proj(self.t_embedding(timestep.to(dtype)))).unsqueeze(1)  # [B, 1, A]

        # [L, R] broadcasts over batch and heads as [L, 1, R]; per-row tables [B, L, R] as [B, L, 1, R].
        cos = rope_cos.to(dtype).unsqueeze(-2)
        sin = rope_sin.to(dtype).unsqueeze(-2)

        key_mask = None
        if text_mask is not None:
            if text_hidden is None:
                raise ValueError("text_mask needs text_hidden")
            image_keys = torch.ones((latents.shape[0], latents.shape[1]), dtype=torch.bool, device=latents.device)
            key_mask = torch.cat([text_mask.to(torch.bool), image_keys], dim=1)[:, None, None, :]
        return h, adaln, cos, sin, key_mask

    def head(self, h: torch.Tensor, adaln: torch.Tensor, image_tokens: int) -> torch.Tensor:
        """The final layer on the image rows (the last ``image_tokens``), as fp32 velocity."""
        out = self.final_layer(h[:, h.shape[1] - image_tokens :], adaln)
        return out.to(torch.float32)
