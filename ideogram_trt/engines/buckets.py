"""Resolution buckets (DESIGN.md §6): named (height, width) pairs, validated as Ideogram 4 accepts them."""

from __future__ import annotations

from dataclasses import dataclass

from ideogram_trt.core.contracts import PIXELS_PER_TOKEN
from ideogram_trt.core.errors import InputError

MIN_SIDE, MAX_SIDE, MAX_ASPECT = 256, 2048, 6.0  # spec §5.6


@dataclass(frozen=True)
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
