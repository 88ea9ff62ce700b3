"""Seeded initial noise in the packed token layout [B, N, C] (docs/MODEL.md §5.7).

Image ``i`` of a request with seed ``s`` is drawn from its own stream, ``numpy.random.Generator(PCG64(s + i))``,
``standard_normal`` in float32, row-major over (token, channel). numpy guarantees this stream is the same on
every platform and version with PCG64, so a seed reproduces an image anywhere, and ``n`` images at seed ``s``
equal ``n`` single-image requests at seeds ``s, s+1, …``. (diffusers' ``torch.Generator`` noise differs; tests
hand both pipelines the same latents.)
"""

from __future__ import annotations

import numpy as np


def initial_latents(seed: int, count: int, num_tokens: int, channels: int) -> np.ndarray:
    """float32 [count, num_tokens, channels]."""
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    out = np.empty((count, num_tokens, channels), dtype=np.float32)
    for i in range(count):
        rng = np.random.Generator(np.random.PCG64(seed + i))
        out[i] = rng.standard_normal((num_tokens, channels), dtype=np.float32)
    return out
