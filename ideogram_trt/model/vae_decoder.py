"""VAE decoder for export: latent de-normalization + unpatchify + FLUX.2 decoder + [0, 1] image (docs/MODEL.md §6).

The de-normalization comes from the VAE's own ``bn`` running statistics, as diffusers does it, so it holds for
any checkpoint (the official LATENT_SCALE/LATENT_SHIFT constants are expected to equal them; docs/MODEL.md §13.3). The
statistics are indexed in the packed channel order (patch_row, patch_col, ae_channel).
"""

from __future__ import annotations

import torch
from torch import nn

from ideogram_trt.model.configs import VAEConfig


def build_decoder(config: VAEConfig) -> nn.Module:
    from diffusers.models.autoencoders.vae import Decoder

    blocks = config.decoder_block_out_channels or config.block_out_channels
    return Decoder(
        in_channels=config.latent_channels,
        out_channels=3,
        up_block_types=config.up_block_types,
        block_out_channels=blocks,
        layers_per_block=config.layers_per_block,
        norm_num_groups=config.norm_num_groups,
        act_fn=config.act_fn,
        mid_block_add_attention=config.mid_block_add_attention,
    )


class VaeDecoder(nn.Module):
    """``latents`` fp32 [B, GH, GW, 4·c] (packed tokens on their grid) → ``image`` fp32 [B, 16·GH, 16·GW, 3]."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        c = config.latent_channels
        self.post_quant_conv = nn.Conv2d(c, c, 1) if config.use_post_quant_conv else None
        self.decoder = build_decoder(config)
        # bn running statistics (fp32, kept out of the compute dtype: they scale fp32 latents).
        self.register_buffer("latent_mean", torch.zeros(config.packed_channels))
        self.register_buffer("latent_var", torch.ones(config.packed_channels))

    @property
    def dtype(self) -> torch.dtype:
        return self.decoder.conv_in.weight.dtype

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        b, gh, gw, _ = latents.shape
        c = self.config.latent_channels
        std = torch.sqrt(self.latent_var.to(torch.float32) + self.config.batch_norm_eps)
        z = latents.to(torch.float32) * std + self.latent_mean.to(torch.float32)
        # Unpatchify (docs/MODEL.md §6): token (h, w) channel (pr, pc, ch) → pixel latent (ch, 2h + pr, 2w + pc).
        z = z.view(b, gh, gw, 2, 2, c).permute(0, 5, 1, 3, 2, 4).reshape(b, c, 2 * gh, 2 * gw)
        z = z.to(self.dtype)
        if self.post_quant_conv is not None:
            z = self.post_quant_conv(z)
        decoded = self.decoder(z).to(torch.float32)
        image = (decoded * 0.5 + 0.5).clamp(0.0, 1.0)
        return image.permute(0, 2, 3, 1)
