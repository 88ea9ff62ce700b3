"""The synthetic world of the trained tiny checkpoint (docs/TINY_MODEL.md §1): JSON captions naming one shape,
its color, size and place on a 3x3 grid, and a background color, and the images they describe.

The grammar is closed and small on purpose: every caption can be checked from pixels alone
(``ideogram_trt.quality.checker``), and a fixed tenth of the combinations is held out of training, so the gates
measure composition the model never saw, not memorized pictures. The renderer is torch, so training draws batches
on the GPU and tests draw the same pictures on the CPU.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from enum import Enum
from functools import cache

import torch

IMAGE_SIZE = 256  # the training resolution; 16x16 image tokens


class Shape(Enum):
    CIRCLE = "circle"
    SQUARE = "square"
    TRIANGLE = "triangle"


# Subject and background palettes are disjoint, and a pair closer than MIN_CONTRAST is never drawn, so the
# checker can always separate a subject from its background by color alone.
SUBJECT_COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 160, 50),
    "blue": (30, 60, 220),
    "yellow": (240, 210, 20),
    "orange": (245, 130, 20),
    "purple": (140, 40, 170),
    "white": (250, 250, 250),
    "black": (15, 15, 15),
}
BACKGROUND_COLORS: dict[str, tuple[int, int, int]] = {
    "light blue": (170, 210, 240),
    "light gray": (200, 200, 200),
    "beige": (235, 220, 180),
    "dark gray": (70, 70, 70),
    "pale green": (190, 230, 180),
}
MIN_CONTRAST = 90.0  # RGB distance between a subject and its background

# Grid cell (row, column) of each position word; a shape's centre sits in the middle of its cell.
POSITIONS: dict[str, tuple[int, int]] = {
    "top left": (0, 0),
    "top": (0, 1),
    "top right": (0, 2),
    "left": (1, 0),
    "center": (1, 1),
    "right": (1, 2),
    "bottom left": (2, 0),
    "bottom": (2, 1),
    "bottom right": (2, 2),
}
# Side of the shape's bounding box, as a fraction of the image side.
SIZES: dict[str, float] = {"small": 0.2, "large": 0.32}
JITTER = 0.035  # centre offset and relative size jitter of a drawn image, as a fraction of the side
HELD_OUT_EVERY = 10  # one combination in ten never appears in training


def _rgb_distance(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    return float(sum((x - y) ** 2 for x, y in zip(a, b, strict=True)) ** 0.5)


@dataclass(frozen=True, order=True)
class Caption:
    shape: Shape
    color: str
    size: str
    position: str
    background: str

    def __post_init__(self) -> None:
        for value, table, what in (
            (self.color, SUBJECT_COLORS, "color"),
            (self.size, SIZES, "size"),
            (self.position, POSITIONS, "position"),
            (self.background, BACKGROUND_COLORS, "background"),
        ):
            if value not in table:
                raise ValueError(f"unknown {what} {value!r}; known: {', '.join(table)}")

    @property
    def prompt(self) -> str:
        """The compact JSON caption the model is prompted with (docs/MODEL.md §3.2)."""
        value = {
            "subject": f"a {self.size} {self.color} {self.shape.value}",
            "position": self.position,
            "background": self.background,
        }
        return json.dumps(value, separators=(",", ":"))

    @classmethod
    def parse(cls, prompt: str) -> Caption:
        """The caption a prompt states; ValueError if it is not one of this grammar's."""
        try:
            value = json.loads(prompt)
            article, size, color, shape = value["subject"].split(" ")
            if article != "a" or set(value) != {"subject", "position", "background"}:
                raise ValueError
            return cls(Shape(shape), color, size, value["position"], value["background"])
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"not a shapes caption: {prompt!r}") from error

    @property
    def held_out(self) -> bool:
        """Fixed by the caption's text alone (not by a random stream), so it never moves between versions."""
        digest = hashlib.sha256(self.prompt.encode()).digest()
        return int.from_bytes(digest[:4], "little") % HELD_OUT_EVERY == 0


@cache
def all_captions() -> tuple[Caption, ...]:
    """Every drawable combination, in a fixed order."""
    out = []
    for shape in Shape:
        for color, rgb in SUBJECT_COLORS.items():
            for background, bg in BACKGROUND_COLORS.items():
                if _rgb_distance(rgb, bg) < MIN_CONTRAST:
                    continue
                for size in SIZES:
                    for position in POSITIONS:
                        out.append(Caption(shape, color, size, position, background))
    return tuple(out)


def training_captions() -> tuple[Caption, ...]:
    return tuple(c for c in all_captions() if not c.held_out)


def held_out_captions() -> tuple[Caption, ...]:
    return tuple(c for c in all_captions() if c.held_out)


def _tensor(captions: list[Caption], device: torch.device) -> dict[str, torch.Tensor]:
    rows = [POSITIONS[c.position][0] for c in captions]
    cols = [POSITIONS[c.position][1] for c in captions]
    return {
        "shape": torch.tensor([list(Shape).index(c.shape) for c in captions], device=device),
        "color": torch.tensor([SUBJECT_COLORS[c.color] for c in captions], device=device, dtype=torch.float32),
        "background": torch.tensor(
            [BACKGROUND_COLORS[c.background] for c in captions], device=device, dtype=torch.float32
        ),
        "side": torch.tensor([SIZES[c.size] for c in captions], device=device),
        "cy": (torch.tensor(rows, device=device, dtype=torch.float32) + 0.5) / 3,
        "cx": (torch.tensor(cols, device=device, dtype=torch.float32) + 0.5) / 3,
    }


def render(
    captions: list[Caption],
    generator: torch.Generator | None = None,
    size: int = IMAGE_SIZE,
    supersample: int = 2,
) -> torch.Tensor:
    """Images of the captions, [B, 3, size, size] float32 in [0, 1], on the generator's device (CPU without one).

    With a generator, each shape's centre and size are jittered (JITTER); without one they are exact. Edges are
    anti-aliased by drawing at ``supersample`` times the size and averaging.
    """
    device = generator.device if generator is not None else torch.device("cpu")
    p = _tensor(captions, device)
    batch = len(captions)
    if generator is not None:
        offset = (torch.rand((batch, 3), generator=generator, device=device) * 2 - 1) * JITTER
        p["cy"] = p["cy"] + offset[:, 0]
        p["cx"] = p["cx"] + offset[:, 1]
        p["side"] = p["side"] * (1 + offset[:, 2] * 2)
    fine = size * supersample
    axis = (torch.arange(fine, device=device, dtype=torch.float32) + 0.5) / fine
    y = axis[None, :, None] - p["cy"][:, None, None]  # [B, H, 1], down is positive
    x = axis[None, None, :] - p["cx"][:, None, None]  # [B, 1, W]
    half = (p["side"] / 2)[:, None, None]
    circle = x * x + y * y <= half * half
    square = (x.abs() <= half) & (y.abs() <= half)
    # An upright isosceles triangle filling the box: apex at the top centre, base along the bottom edge.
    depth = (y + half) / (2 * half)  # 0 at the apex row, 1 at the base
    triangle = (depth >= 0) & (depth <= 1) & (x.abs() <= depth * half)
    kind = p["shape"][:, None, None]
    mask = torch.where(kind == 0, circle, torch.where(kind == 1, square, triangle)).to(torch.float32)
    mask = torch.nn.functional.avg_pool2d(mask[:, None], supersample)  # [B, 1, size, size]
    color = p["color"][:, :, None, None] / 255
    background = p["background"][:, :, None, None] / 255
    return background + (color - background) * mask


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] in [0, 1] to [B, H, W, 3] uint8, as the pipeline writes images."""
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1)
