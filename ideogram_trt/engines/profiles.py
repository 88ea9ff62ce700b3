"""Optimization-profile shapes from a graph's I/O spec: every named axis resolved for one bucket."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ideogram_trt.core.buckets import Bucket
from ideogram_trt.core.records import TensorEntry
from ideogram_trt.core.shapes import Sizes
from ideogram_trt.engines.tensorrt_adapter import Profile, ShapeRange


@dataclass(frozen=True)
class AxisRange:
    min: int
    opt: int
    max: int


@dataclass(frozen=True)
class ProfileRanges:
    """The ranges every profile shares: batch and text length (image axes come from the bucket)."""

    batch: AxisRange = AxisRange(1, 1, 4)
    text: AxisRange = AxisRange(1, 256, 2048)
    lora_rank: AxisRange | None = None  # LoRA-ready DiTs: total adapter rank 1 … --lora-rank (docs/LORA.md §2)


def profile_for(
    inputs: Sequence[TensorEntry], bucket: Bucket | None, ranges: ProfileRanges = ProfileRanges()
) -> Profile:
    """``inputs``: a graph's inputs as exported (static sizes filled in); image axes come from ``bucket``."""
    grid = None if bucket is None else bucket.grid
    rank = ranges.lora_rank or AxisRange(0, 0, 0)  # read only by graphs with a rank axis
    low = Sizes(batch=ranges.batch.min, text=ranges.text.min, grid=grid, lora_rank=rank.min)
    opt = Sizes(batch=ranges.batch.opt, text=ranges.text.opt, grid=grid, lora_rank=rank.opt)
    high = Sizes(batch=ranges.batch.max, text=ranges.text.max, grid=grid, lora_rank=rank.max)
    return {
        spec.name: ShapeRange(low.resolve(spec.shape), opt.resolve(spec.shape), high.resolve(spec.shape))
        for spec in inputs
    }
