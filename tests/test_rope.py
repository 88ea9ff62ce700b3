"""Host-side RoPE tables (core.rope) against diffusers' Ideogram4MRoPE on the pipeline's own position ids."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ideogram_trt.core import rope
from ideogram_trt.model.configs import DiTConfig
from ideogram_trt.model.dit import rope_inv_freq


@pytest.mark.parametrize(
    "config",
    [DiTConfig(), DiTConfig(attention_head_dim=32, num_attention_heads=2, mrope_section=(6, 5, 5))],
    ids=["release", "tiny"],
)
def test_rope_tables_match_diffusers(config: DiTConfig) -> None:
    from diffusers import Ideogram4Pipeline
    from diffusers.models.transformers.transformer_ideogram4 import Ideogram4MRoPE

    reference = Ideogram4MRoPE(config.attention_head_dim, int(config.rope_theta), config.mrope_section)
    inv_freq = rope_inv_freq(config)
    np.testing.assert_array_equal(inv_freq, reference.inv_freq.numpy())

    lengths, text_tokens, grid_h, grid_w = [9, 4], 9, 12, 20
    position_ids, _, _ = Ideogram4Pipeline._prepare_ids(lengths, grid_h, grid_w, text_tokens, torch.device("cpu"))
    ours = rope.padded_sequence_positions(lengths, text_tokens, grid_h, grid_w)
    np.testing.assert_array_equal(ours, position_ids.numpy())

    cos_ref, sin_ref = reference(position_ids)
    cos, sin = rope.rope_tables(ours, inv_freq, config.mrope_section)
    assert cos.dtype == sin.dtype == np.float32
    # Same fp32 angles; cos/sin implementations may differ by an ulp.
    np.testing.assert_allclose(cos, cos_ref.numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(sin, sin_ref.numpy(), rtol=0, atol=1e-6)

    # The unpadded table of a row is that row's padded table without the pad rows.
    cos1, _ = rope.rope_tables(rope.sequence_positions(4, grid_h, grid_w), inv_freq, config.mrope_section)
    np.testing.assert_array_equal(cos1, cos[1, text_tokens - 4 :])


def test_frequency_axes_follow_interleaved_mrope() -> None:
    axes = rope.frequency_axes(128, (24, 20, 20))
    assert (axes == 1).sum() == 20 and (axes == 2).sum() == 20 and (axes == 0).sum() == 88
    assert list(np.nonzero(axes == 1)[0][:3]) == [1, 4, 7]
    assert list(np.nonzero(axes == 2)[0][-1:]) == [59]


def test_image_positions_are_row_major_and_offset() -> None:
    pos = rope.image_positions(2, 3)
    assert pos.tolist() == [[65536, 65536 + h, 65536 + w] for h in range(2) for w in range(3)]
