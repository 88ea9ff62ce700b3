"""Our VAE decode path (bn de-normalization, unpatchify, decode, [0, 1]) against diffusers' Ideogram4Pipeline.

The reference is the pipeline's own decode code: a one-step run whose step-end callback hands it our packed
latents, so everything after the loop (denormalize, unpatchify, vae.decode, postprocess) is diffusers'.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import relative_error

from ideogram_trt.model.build import load_vae_decoder


def pipeline_decode(pipe, latents: torch.Tensor, height: int, width: int) -> np.ndarray:
    def replace_latents(_pipe, _step, _t, _kwargs):
        return {"latents": latents}

    return pipe(
        ["x"] * latents.shape[0],
        height=height,
        width=width,
        num_inference_steps=1,
        guidance_scale=1.0,
        guidance_schedule=None,
        max_sequence_length=16,
        output_type="np",
        callback_on_step_end=replace_latents,
    ).images


@torch.no_grad()
@pytest.mark.parametrize("size", [(256, 256), (128, 320)], ids=["256x256", "128x320"])
def test_decode_matches_the_pipeline(checkpoint, reference_pipeline, size) -> None:
    height, width = size
    grid_h, grid_w = height // 16, width // 16
    latents = torch.randn(
        2, grid_h * grid_w, checkpoint.vae.packed_channels, generator=torch.Generator().manual_seed(4)
    )
    reference = pipeline_decode(reference_pipeline, latents, height, width)

    decoder = load_vae_decoder(checkpoint, dtype=torch.float32)
    image = decoder(latents.view(2, grid_h, grid_w, -1)).numpy()

    assert image.shape == reference.shape == (2, height, width, 3)
    assert relative_error(image, reference) <= 1e-5
    assert image.min() >= 0.0 and image.max() <= 1.0
    assert 0.1 < image.std() < 0.45  # a tiny VAE at an O(1) scale: neither flat nor saturated


def test_denormalization_uses_the_bn_statistics(checkpoint) -> None:
    decoder = load_vae_decoder(checkpoint, dtype=torch.float32)
    state = checkpoint.vae_state()
    assert torch.equal(decoder.latent_mean, state["bn.running_mean"].float())
    assert torch.equal(decoder.latent_var, state["bn.running_var"].float())
    assert not torch.allclose(decoder.latent_var, torch.ones_like(decoder.latent_var))
