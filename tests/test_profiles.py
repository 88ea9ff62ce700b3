"""Optimization-profile ranges per axis symbol, against values written out from the bucket arithmetic."""

from __future__ import annotations

import pytest

from ideogram_trt.core.buckets import Bucket
from ideogram_trt.core.records import TensorEntry
from ideogram_trt.engines.profiles import AxisRange, ProfileRanges, profile_for
from ideogram_trt.engines.tensorrt_adapter import ShapeRange

RANGES = ProfileRanges(batch=AxisRange(1, 2, 4), text=AxisRange(1, 256, 2048))


def test_every_symbol_resolves_for_a_bucket() -> None:
    # 1024x768: latents 128x96 after 8x, patch 2 -> grid 64x48 -> 3072 image tokens.
    inputs = [
        TensorEntry("latents", "float32", ["B", 128, "GH", "GW"]),
        TensorEntry("text", "float32", ["B", "T", "4096"]),
        TensorEntry("rope", "float32", ["T+N", 64]),
        TensorEntry("tokens", "float32", ["B", "N", 128]),
    ]
    profile = profile_for(inputs, Bucket(1024, 768), RANGES)
    assert profile == {
        "latents": ShapeRange((1, 128, 64, 48), (2, 128, 64, 48), (4, 128, 64, 48)),
        "text": ShapeRange((1, 1, 4096), (2, 256, 4096), (4, 2048, 4096)),
        "rope": ShapeRange((1 + 3072, 64), (256 + 3072, 64), (2048 + 3072, 64)),
        "tokens": ShapeRange((1, 3072, 128), (2, 3072, 128), (4, 3072, 128)),
    }
    for shapes in profile.values():
        assert all(lo <= opt <= hi for lo, opt, hi in zip(shapes.min, shapes.opt, shapes.max, strict=True))


def test_image_axes_need_a_bucket_and_unknown_symbols_are_refused() -> None:
    assert profile_for([TensorEntry("ids", "float32", ["B", "T"])], None, RANGES) == {
        "ids": ShapeRange((1, 1), (2, 256), (4, 2048))
    }
    with pytest.raises(ValueError, match="axis 'N' needs a resolution bucket"):
        profile_for([TensorEntry("x", "float32", ["N"])], None, RANGES)
    with pytest.raises(ValueError, match="unknown axis 'Q'"):
        profile_for([TensorEntry("x", "float32", ["Q"])], Bucket(256, 256), RANGES)
