"""Host-side multi-axis RoPE tables for the DiT engines (docs/MODEL.md §4.4, §4.7).

Positions and angles stay float32 on the host: image positions start at 65536, which bf16 collapses and fp16
overflows (docs/MODEL.md §4.7). The engines take ``rope_cos``/``rope_sin`` as inputs and cast them to their
compute dtype.

``inv_freq`` is an argument, not recomputed here: ``1/θ^(2j/d)`` evaluated by numpy and by torch differs in the
last bit for some j, and at position 65536 one bit of inv_freq moves the angle by up to 4e-3 rad. The exporter
records the model's own table (computed the way the reference computes it) next to each graph.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

IMAGE_POSITION_OFFSET = 65536  # docs/MODEL.md §4.4: image grid coordinates never collide with text positions


def default_inv_freq(head_dim: int, theta: float) -> np.ndarray:
    """The RoPE frequencies in float32, correctly rounded from float64 (may differ from torch by one ulp)."""
    exponents = np.arange(0, head_dim, 2, dtype=np.float64) / head_dim
    return (1.0 / (float(theta) ** exponents)).astype(np.float32)


def frequency_axes(num_frequencies: int, mrope_section: Sequence[int]) -> np.ndarray:
    """Which position axis (0 = t, 1 = h, 2 = w) drives each frequency under interleaved MRoPE (docs/MODEL.md §4.7).

    Frequencies 1, 4, 7, … (the first ``mrope_section[1]``) take h, 2, 5, 8, … (the first ``mrope_section[2]``)
    take w, every other one takes t.
    """
    axes = np.zeros(num_frequencies, dtype=np.int64)
    for axis in (1, 2):
        axes[np.arange(axis, 3 * mrope_section[axis], 3)] = axis
    return axes


def image_positions(grid_h: int, grid_w: int) -> np.ndarray:
    """(t, h, w) of the image tokens, row-major (h outer, w inner): int64 [N, 3]."""
    h, w = np.meshgrid(np.arange(grid_h), np.arange(grid_w), indexing="ij")
    pos = np.stack([np.zeros(grid_h * grid_w, dtype=np.int64), h.reshape(-1), w.reshape(-1)], axis=1)
    return pos + IMAGE_POSITION_OFFSET


def text_positions(length: int) -> np.ndarray:
    """(p, p, p) for text token p: int64 [length, 3]."""
    p = np.arange(length, dtype=np.int64)
    return np.stack([p, p, p], axis=1)


def sequence_positions(text_length: int, grid_h: int, grid_w: int) -> np.ndarray:
    """Positions of an unpadded conditional sequence [text | image]: int64 [T + N, 3]."""
    return np.concatenate([text_positions(text_length), image_positions(grid_h, grid_w)], axis=0)


def padded_sequence_positions(lengths: Sequence[int], text_tokens: int, grid_h: int, grid_w: int) -> np.ndarray:
    """Positions of a left-padded batch [pad | text | image]: int64 [B, T + N, 3], pads at (0, 0, 0).

    Each row needs its own table: the distance between text token p and the image does not depend on the
    padding, so neither can be shifted to share one table across rows of different lengths.
    """
    out = np.zeros((len(lengths), text_tokens + grid_h * grid_w, 3), dtype=np.int64)
    image = image_positions(grid_h, grid_w)
    for b, n in enumerate(lengths):
        if not 0 < n <= text_tokens:
            raise ValueError(f"text length {n} outside 1..{text_tokens}")
        out[b, text_tokens - n : text_tokens] = text_positions(n)
        out[b, text_tokens:] = image
    return out


def rope_tables(
    positions: np.ndarray, inv_freq: np.ndarray, mrope_section: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin, float32 [..., 2·len(inv_freq)], of the interleaved MRoPE angles (docs/MODEL.md §4.7).

    angle[..., j] = float32(position[..., axis(j)]) · inv_freq[j] in float32, exactly as the reference forms it
    (a single rounding of the product); the table is the angles repeated twice, as rotate_half expects.
    """
    inv = np.asarray(inv_freq, dtype=np.float32)
    axes = frequency_axes(inv.shape[0], mrope_section)
    pos = np.asarray(positions).astype(np.float32)
    angles = np.take(pos, axes, axis=-1) * inv
    angles = np.concatenate([angles, angles], axis=-1).astype(np.float64)
    # cos/sin of the float32 angle, evaluated in float64 and rounded once: the same table from every numpy
    # version and CPU (float32 cos implementations differ in the last bit), within an ulp of torch's.
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)
