"""FLOPs per request stage for the release model (docs/MODEL.md §9) and the time floor they set on a card.

DiT forward, d = 4608, f = 12288, 34 layers, sequence L (cond: T + N, uncond: N), R rows through the text
projection (zero here: it runs once per prompt in the text encoder, docs/MODEL.md §4.9):
    F(L) = 34·[L·(8d² + 6df) + 4·L²·d] + R·2·53248·d + L·(2·128·d + 2·d·128)
Text encoder: 2 · 6.946e9 per token for the linears (docs/MODEL.md §3.3), causal attention 2·T²·4096 per layer, plus the
text projection 2·53248·4608 per token. VAE decoder: fitted to docs/MODEL.md §6's FlopCounter figures (10.48 TFLOP at
1024², 48.50 at 2048²) as a·P + b·P², P = pixels / 1024².
"""

from __future__ import annotations

from dataclasses import dataclass

from ideogram_trt.core.buckets import Bucket
from ideogram_trt.core.schedule import Preset

D, F, LAYERS, CHANNELS, FEATURES = 4608, 12288, 34, 128, 53248
TEXT_LINEAR_PARAMS, TEXT_LAYERS, TEXT_WIDTH = 6_945_767_424, 36, 4096
VAE_A, VAE_B = 9.9313e12, 0.5487e12  # a + b = 10.48 TF, 4a + 16b = 48.50 TF


def dit_gemm_flops(
    length: int, d: int = D, f: int = F, layers: int = LAYERS, channels: int = CHANNELS, projected_rows: int = 0
) -> float:
    """The token linears of a DiT pass over ``length`` tokens: per block qkv, o (8d²) and SwiGLU (6df), plus the
    latent in and out projections. The adaLN modulation runs per image, not per token, and is left out."""
    per_token = 8 * d * d + 6 * d * f
    return (
        layers * length * per_token + projected_rows * 2 * FEATURES * d + length * (2 * channels * d + 2 * d * channels)
    )


def dit_attention_flops(length: int, d: int = D, layers: int = LAYERS) -> float:
    """QKᵀ and PV over all heads: 4·L²·d per block."""
    return layers * 4 * length * length * d


def dit_flops(length: int, projected_rows: int = 0) -> float:
    return dit_gemm_flops(length, projected_rows=projected_rows) + dit_attention_flops(length)


def text_encoder_flops(tokens: int) -> float:
    linears = 2 * TEXT_LINEAR_PARAMS * tokens
    attention = TEXT_LAYERS * 2 * tokens * tokens * TEXT_WIDTH
    projection = tokens * 2 * FEATURES * D
    return float(linears + attention + projection)


def vae_flops(bucket: Bucket) -> float:
    pixels = bucket.height * bucket.width / (1024 * 1024)
    return VAE_A * pixels + VAE_B * pixels * pixels


@dataclass(frozen=True)
class RequestFlops:
    text_encoder: float
    cond_step: float
    uncond_step: float
    cond_steps: int
    uncond_steps: int
    vae: float

    @property
    def denoise(self) -> float:
        return self.cond_steps * self.cond_step + self.uncond_steps * self.uncond_step

    @property
    def total(self) -> float:
        return self.text_encoder + self.denoise + self.vae

    def floor_seconds(self, tflops: float) -> float:
        return self.total / (tflops * 1e12)


def request_flops(bucket: Bucket, preset: Preset, text_tokens: int = 512) -> RequestFlops:
    """One image at ``bucket`` with ``preset``: the unconditional DiT runs only where guidance ≠ 1."""
    uncond_steps = sum(1 for g in preset.guidance if g != 1.0)
    return RequestFlops(
        text_encoder=text_encoder_flops(text_tokens),
        cond_step=dit_flops(text_tokens + bucket.tokens),
        uncond_step=dit_flops(bucket.tokens),
        cond_steps=preset.steps,
        uncond_steps=uncond_steps,
        vae=vae_flops(bucket),
    )
