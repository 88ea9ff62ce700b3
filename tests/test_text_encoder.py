"""Our text encoder + projection against what diffusers' Ideogram4Pipeline computes for the same prompts."""

from __future__ import annotations

import pytest
import torch
from helpers import relative_error

from ideogram_trt.core.tokenization import PromptTokenizer
from ideogram_trt.model.build import load_text_encoder
from ideogram_trt.model.tiny_tokenizer import default_prompts

TOLERANCE = 1e-5
MAX_SEQUENCE_LENGTH = 128  # the pipeline pads every prompt to this; ours pads to the longest prompt
PROMPTS = [default_prompts()[3], "a cat", default_prompts()[9] + " at dusk"]


@pytest.fixture(scope="module")
def reference(reference_pipeline):
    """Features from Ideogram4Pipeline.encode_prompt, then the reference DiT's own llm_cond_norm/proj."""
    with torch.no_grad():
        embeds, _, _, indicator = reference_pipeline.encode_prompt(PROMPTS, 2, 2, MAX_SEQUENCE_LENGTH, "cpu")
        features = embeds[:, :MAX_SEQUENCE_LENGTH]
        text_rows = (indicator[:, :MAX_SEQUENCE_LENGTH] == 3).unsqueeze(-1).float()
        dit = reference_pipeline.transformer
        projected = dit.llm_cond_proj(dit.llm_cond_norm(features * text_rows)) * text_rows
    return features, projected


@torch.no_grad()
@pytest.mark.parametrize("pad_to", [MAX_SEQUENCE_LENGTH, None], ids=["padded-like-diffusers", "longest-prompt"])
def test_features_and_projection_match_the_pipeline(checkpoint, reference, pad_to) -> None:
    ref_features, ref_projected = reference
    encoder = load_text_encoder(checkpoint, dtype=torch.float32)
    batch = PromptTokenizer.from_dir(checkpoint.tokenizer_dir).batch(PROMPTS, pad_to=pad_to)
    ids, mask = torch.from_numpy(batch.input_ids), torch.from_numpy(batch.attention_mask)
    width = batch.text_tokens
    assert len(set(batch.lengths)) == len(PROMPTS)  # three different lengths in one batch

    features = encoder.features(ids, mask)
    assert features.shape[-1] == 13 * checkpoint.text_encoder.hidden_size
    assert relative_error(features, ref_features[:, -width:]) <= TOLERANCE

    text_hidden = encoder(ids, mask)
    assert text_hidden.shape == (len(PROMPTS), width, checkpoint.transformer.hidden_size)
    assert relative_error(text_hidden, ref_projected[:, -width:]) <= TOLERANCE
    assert torch.all(text_hidden[mask == 0] == 0)  # padded rows are exactly zero
    assert torch.isfinite(text_hidden).all()


@torch.no_grad()
def test_padding_does_not_change_a_prompt(checkpoint) -> None:
    """Left padding is a no-op on real tokens (docs/MODEL.md §3.2): alone vs in a padded batch."""
    encoder = load_text_encoder(checkpoint, dtype=torch.float32)
    tokenizer = PromptTokenizer.from_dir(checkpoint.tokenizer_dir)
    alone = tokenizer.batch(["a cat"])
    padded = tokenizer.batch(["a cat"], pad_to=40)
    a = encoder(torch.from_numpy(alone.input_ids), torch.from_numpy(alone.attention_mask))
    b = encoder(torch.from_numpy(padded.input_ids), torch.from_numpy(padded.attention_mask))
    assert relative_error(b[:, -a.shape[1] :], a) <= 1e-6
