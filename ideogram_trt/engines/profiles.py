"""Optimization-profile shapes from a graph's I/O spec: every named axis resolved for one bucket."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ideogram_trt.core.buckets import Bucket
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


def _axis(symbol: str | int, bucket: Bucket | None, ranges: ProfileRanges) -> AxisRange:
    if isinstance(symbol, int) or symbol.isdigit():
        n = int(symbol)
        return AxisRange(n, n, n)
    if symbol == "B":
        return ranges.batch
    if symbol == "T":
        return ranges.text
    if bucket is None:
        raise ValueError(f"axis {symbol!r} needs a resolution bucket")
    fixed = {"N": bucket.tokens, "GH": bucket.grid[0], "GW": bucket.grid[1]}
    if symbol in fixed:
        return AxisRange(fixed[symbol], fixed[symbol], fixed[symbol])
    if symbol == "T+N":
        t = ranges.text
        return AxisRange(t.min + bucket.tokens, t.opt + bucket.tokens, t.max + bucket.tokens)
    raise ValueError(f"unknown axis {symbol!r}")


def profile_for(
    inputs: Sequence[dict[str, Any]], bucket: Bucket | None, ranges: ProfileRanges = ProfileRanges()
) -> Profile:
    """``inputs``: the sidecar's input list ({name, dtype, shape}) with static sizes filled in by the graph."""
    profile: Profile = {}
    for spec in inputs:
        axes = [_axis(symbol, bucket, ranges) for symbol in spec["shape"]]
        profile[spec["name"]] = ShapeRange(
            tuple(a.min for a in axes), tuple(a.opt for a in axes), tuple(a.max for a in axes)
        )
    return profile
