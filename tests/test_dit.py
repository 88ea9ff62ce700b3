"""Our export-ready DiT against diffusers 0.42.1 Ideogram4Transformer2DModel (loaded with from_pretrained from
the converted checkpoint) on the image tokens, fp32, relative error ≤ 1e-5."""

from __future__ import annotations

import pytest
import torch
from helpers import relative_error

from ideogram_trt.core import rope
from ideogram_trt.model.build import load_dit, load_text_encoder
from ideogram_trt.model.dit import rope_inv_freq

TOLERANCE = 1e-5
GRID = (4, 6)  # 64x96 pixels: a non-square grid catches h/w mix-ups


@pytest.fixture(scope="module")
def modules(checkpoint):
    return (
        load_dit(checkpoint, "transformer", dtype=torch.float32),
        load_dit(checkpoint, "unconditional_transformer", dtype=torch.float32),
        load_text_encoder(checkpoint, dtype=torch.float32),
    )


def _inputs(checkpoint, lengths: list[int], seed: int):
    gen = torch.Generator().manual_seed(seed)
    batch, text_tokens = len(lengths), max(lengths)
    features = torch.randn(batch, text_tokens, checkpoint.transformer.llm_features_dim, generator=gen)
    mask = torch.zeros(batch, text_tokens, dtype=torch.int32)
    for row, n in enumerate(lengths):
        mask[row, text_tokens - n :] = 1
    features = features * mask[..., None]  # the pipeline zeroes padded feature rows
    n_image = GRID[0] * GRID[1]
    latents = torch.randn(batch, n_image, checkpoint.transformer.in_channels, generator=gen)
    timestep = torch.rand(batch, generator=gen)
    return features, mask, latents, timestep


def _tables(checkpoint, positions):
    cos, sin = rope.rope_tables(positions, rope_inv_freq(checkpoint.transformer), checkpoint.transformer.mrope_section)
    return torch.from_numpy(cos), torch.from_numpy(sin)


@torch.no_grad()
@pytest.mark.parametrize("lengths", [[11, 5], [3, 8, 8]], ids=["two-lengths", "three-rows"])
def test_conditional_left_padded_batch_matches_diffusers(checkpoint, reference_pipeline, modules, lengths) -> None:
    from diffusers import Ideogram4Pipeline

    dit, _, text_encoder = modules
    features, mask, latents, timestep = _inputs(checkpoint, lengths, seed=len(lengths))
    batch, text_tokens = features.shape[:2]
    n_image = latents.shape[1]

    # The reference, fed exactly as Ideogram4Pipeline feeds it: packed [pad | text | image] with its own ids.
    position_ids, segment_ids, indicator = Ideogram4Pipeline._prepare_ids(
        lengths, GRID[0], GRID[1], text_tokens, torch.device("cpu")
    )
    reference = reference_pipeline.transformer(
        hidden_states=torch.cat([torch.zeros(batch, text_tokens, latents.shape[2]), latents], dim=1),
        timestep=timestep,
        encoder_hidden_states=torch.cat([features, torch.zeros(batch, n_image, features.shape[2])], dim=1),
        position_ids=position_ids,
        segment_ids=segment_ids,
        indicator=indicator,
        return_dict=False,
    )[0][:, text_tokens:]

    # Ours: the text projection (in our text encoder), host RoPE tables per row, key-padding mask.
    text_hidden = text_encoder.llm_cond_proj(text_encoder.llm_cond_norm(features)) * mask[..., None]
    cos, sin = _tables(checkpoint, rope.padded_sequence_positions(lengths, text_tokens, *GRID))
    ours = dit(latents, timestep, cos, sin, text_hidden=text_hidden, text_mask=mask)

    assert ours.dtype == torch.float32 and ours.shape == latents.shape
    assert relative_error(ours, reference) <= TOLERANCE


@torch.no_grad()
def test_conditional_exact_length_without_mask_matches_diffusers(checkpoint, reference_pipeline, modules) -> None:
    from diffusers import Ideogram4Pipeline

    dit, _, text_encoder = modules
    features, _, latents, timestep = _inputs(checkpoint, [7], seed=7)
    position_ids, segment_ids, indicator = Ideogram4Pipeline._prepare_ids([7], *GRID, 7, torch.device("cpu"))
    reference = reference_pipeline.transformer(
        hidden_states=torch.cat([torch.zeros(1, 7, latents.shape[2]), latents], dim=1),
        timestep=timestep,
        encoder_hidden_states=torch.cat([features, torch.zeros(1, latents.shape[1], features.shape[2])], dim=1),
        position_ids=position_ids,
        segment_ids=segment_ids,
        indicator=indicator,
        return_dict=False,
    )[0][:, 7:]
    text_hidden = text_encoder.llm_cond_proj(text_encoder.llm_cond_norm(features))
    cos, sin = _tables(checkpoint, rope.sequence_positions(7, *GRID))
    ours = dit(latents, timestep, cos, sin, text_hidden=text_hidden)
    assert relative_error(ours, reference) <= TOLERANCE


@torch.no_grad()
def test_unconditional_matches_diffusers(checkpoint, reference_pipeline, modules) -> None:
    _, dit_uncond, _ = modules
    _, _, latents, timestep = _inputs(checkpoint, [1, 1], seed=3)
    batch, n_image, _ = latents.shape
    # As the pipeline calls it: image tokens only, zero text features, the image slice of the ids.
    positions = torch.from_numpy(rope.image_positions(*GRID)).expand(batch, -1, -1)
    reference = reference_pipeline.unconditional_transformer(
        hidden_states=latents,
        timestep=timestep,
        encoder_hidden_states=torch.zeros(batch, n_image, checkpoint.transformer.llm_features_dim),
        position_ids=positions,
        segment_ids=torch.ones(batch, n_image, dtype=torch.long),
        indicator=torch.full((batch, n_image), 2, dtype=torch.long),
        return_dict=False,
    )[0]
    cos, sin = _tables(checkpoint, rope.image_positions(*GRID))
    ours = dit_uncond(latents, timestep, cos, sin)
    assert relative_error(ours, reference) <= TOLERANCE


@torch.no_grad()
def test_the_two_dits_differ_and_outputs_stay_order_one(checkpoint, modules) -> None:
    """Random weights at an O(1) scale (docs/ARCHITECTURE.md §9), and the unconditional DiT really is a different
    model."""
    dit, dit_uncond, _ = modules
    _, _, latents, timestep = _inputs(checkpoint, [1], seed=5)
    cos, sin = _tables(checkpoint, rope.image_positions(*GRID))
    cond_like = dit_uncond(latents, timestep, cos, sin)
    text_hidden = torch.zeros(1, 1, checkpoint.transformer.hidden_size)
    cos_c, sin_c = _tables(checkpoint, rope.sequence_positions(1, *GRID))
    v = dit(latents, timestep, cos_c, sin_c, text_hidden=text_hidden)
    assert 0.3 < float(v.std()) < 3.0 and 0.3 < float(cond_like.std()) < 3.0
    assert relative_error(v, cond_like) > 0.05


def test_timestep_is_rounded_to_the_compute_dtype(checkpoint) -> None:
    """docs/MODEL.md §5.2: a bf16 DiT sees bf16(t); nearby fp32 timesteps that round alike give identical outputs."""
    dit = load_dit(checkpoint, "unconditional_transformer", dtype=torch.bfloat16)
    _, _, latents, _ = _inputs(checkpoint, [1], seed=9)
    cos, sin = _tables(checkpoint, rope.image_positions(*GRID))
    a = torch.tensor([0.02734114])  # bf16 → 0.02734375 (docs/MODEL.md §5.5)
    b = torch.tensor([0.02734375])
    with torch.no_grad():
        assert torch.equal(dit(latents, a, cos, sin), dit(latents, b, cos, sin))
