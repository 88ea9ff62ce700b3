"""Resolution buckets (docs/ARCHITECTURE.md §6): a bucket is an image size (height, width) an engine set was built for.

Sides are multiples of 16 (8x VAE downsampling times the 2x2 patch), 256–2048, aspect at most 6:1 (docs/MODEL.md §5.6).
Per bucket the image-token count N is fixed; text length varies inside the engines' profiles.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ideogram_trt.core.contracts import PIXELS_PER_TOKEN
from ideogram_trt.core.errors import InputError

MIN_SIDE, MAX_SIDE, MAX_ASPECT = 256, 2048, 6.0  # docs/MODEL.md §5.6


@dataclass(frozen=True, order=True)
class Bucket:
    height: int
    width: int

    def __post_init__(self) -> None:
        for side, value in (("height", self.height), ("width", self.width)):
            if value % PIXELS_PER_TOKEN:
                raise InputError(f"{self.name}: {side} {value} is not a multiple of {PIXELS_PER_TOKEN}")
            if not MIN_SIDE <= value <= MAX_SIDE:
                raise InputError(f"{self.name}: {side} {value} is outside {MIN_SIDE}..{MAX_SIDE}")
        if max(self.height, self.width) / min(self.height, self.width) > MAX_ASPECT:
            raise InputError(f"{self.name}: aspect ratio above {MAX_ASPECT:g}:1")

    @classmethod
    def parse(cls, text: str) -> Bucket:
        """``HEIGHTxWIDTH``, e.g. ``1024x1024`` or ``768x1344``."""
        try:
            height, width = (int(v) for v in text.strip().lower().split("x"))
        except ValueError:
            raise InputError(f"bucket {text!r}: write it as HEIGHTxWIDTH, e.g. 1024x1024") from None
        return cls(height, width)

    @property
    def name(self) -> str:
        return f"{self.height}x{self.width}"

    @property
    def grid(self) -> tuple[int, int]:
        return self.height // PIXELS_PER_TOKEN, self.width // PIXELS_PER_TOKEN

    @property
    def tokens(self) -> int:
        grid_h, grid_w = self.grid
        return grid_h * grid_w


def nearest(buckets: Sequence[Bucket], height: int, width: int, count: int = 3) -> list[Bucket]:
    """The buckets closest to a size: same aspect ratio first (log-ratio distance), then pixel count."""

    def distance(bucket: Bucket) -> tuple[float, float]:
        aspect = abs(math.log(bucket.height / bucket.width) - math.log(height / width))
        area = abs(math.log((bucket.height * bucket.width) / (height * width)))
        return (round(aspect, 3), area)

    return sorted(buckets, key=distance)[:count]
