"""Text encoder for export: Qwen3-VL's language model, 13 interleaved taps, then the conditional DiT's text
projection (docs/MODEL.md §3.3, §4.9), from ``input_ids`` + left-padded ``attention_mask`` to ``text_hidden`` [B, T, D].

The decoder layers are transformers' own; only the mask and positions are built here, in a form that exports:
causal ∧ valid-key, plus the diagonal so a pad row (which has no valid key before it) attends to itself instead
of producing NaN. Valid rows never see pads, and pad rows are zeroed on the way out.
"""

from __future__ import annotations

import torch
from torch import nn

from ideogram_trt.model.configs import TEXT_TAP_LAYERS, DiTConfig, TextEncoderConfig
from ideogram_trt.model.layers import RMSNorm

LLM_COND_NORM_EPS = 1e-6  # docs/MODEL.md §4.1: hard-coded in the DiT


def build_language_model(config: TextEncoderConfig) -> nn.Module:
    from transformers import Qwen3VLTextConfig, Qwen3VLTextModel

    text_config = Qwen3VLTextConfig(**config.text_config_dict())
    text_config._attn_implementation = "sdpa"
    return Qwen3VLTextModel(text_config)


class TextEncoder(nn.Module):
    def __init__(self, config: TextEncoderConfig, dit_config: DiTConfig) -> None:
        super().__init__()
        self.config = config
        self.language_model = build_language_model(config)
        self.llm_cond_norm = RMSNorm(dit_config.llm_features_dim, LLM_COND_NORM_EPS)
        self.llm_cond_proj = nn.Linear(dit_config.llm_features_dim, dit_config.hidden_size, bias=True)

    def reset_buffers(self) -> None:
        """Recompute the rotary frequencies (non-persistent) after building on the meta device."""
        rotary = type(self.language_model.rotary_emb)(self.language_model.config)
        self.language_model.rotary_emb = rotary.to(self.llm_cond_proj.weight.device)

    def embed(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Token embeddings, the rotary tables and the [B, 1, T, T] attention mask the decoder layers take."""
        lm = self.language_model
        valid = attention_mask.to(torch.bool)
        h = lm.embed_tokens(input_ids.to(torch.int64))
        # Positions 0..n-1 on real tokens, 0 on the left pads (as diffusers builds them; docs/MODEL.md §3.2).
        positions = (torch.cumsum(attention_mask.to(torch.int64), dim=-1) - 1).clamp(min=0)
        cos, sin = lm.rotary_emb(h, positions.unsqueeze(0).expand(3, -1, -1))
        index = torch.arange(input_ids.shape[1], device=input_ids.device)
        causal = index[None, :] <= index[:, None]
        diagonal = index[None, :] == index[:, None]
        mask = ((causal[None] & valid[:, None, :]) | diagonal[None])[:, None]  # [B, 1, T, T]
        return h, cos, sin, mask

    def layer(
        self, index: int, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        return self.language_model.layers[index](h, attention_mask=mask, position_embeddings=(cos, sin))

    def project(self, taps: list[torch.Tensor], attention_mask: torch.Tensor) -> torch.Tensor:
        """Interleave the 13 taps (channel c = h·13 + k), zero the pads, then llm_cond_norm + llm_cond_proj."""
        features = self.interleave(taps, attention_mask)
        hidden = self.llm_cond_proj(self.llm_cond_norm(features))
        return hidden * attention_mask.unsqueeze(-1).to(hidden.dtype)

    @staticmethod
    def interleave(taps: list[torch.Tensor], attention_mask: torch.Tensor) -> torch.Tensor:
        features = torch.stack(taps, dim=-1).flatten(-2)  # [B, T, hidden, 13] → [B, T, 13·hidden]
        return features * attention_mask.unsqueeze(-1).to(features.dtype)

    def run_layers(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
        """The outputs of the tapped decoder layers (docs/MODEL.md §3.3); layers after the last tap never run."""
        h, cos, sin, mask = self.embed(input_ids, attention_mask)
        taps = []
        for index in range(max(TEXT_TAP_LAYERS) + 1):
            h = self.layer(index, h, cos, sin, mask)
            if index in TEXT_TAP_LAYERS:
                taps.append(h)
        return taps

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The interleaved tap features [B, T, 13·hidden], zero on pads (what diffusers feeds the DiT)."""
        return self.interleave(self.run_layers(input_ids, attention_mask), attention_mask)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.project(self.run_layers(input_ids, attention_mask), attention_mask)
