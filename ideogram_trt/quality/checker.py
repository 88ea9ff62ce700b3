"""Does an image show what its shapes caption says? Judged from the pixels and the caption text alone
(docs/TINY_MODEL.md §3).

The checker never sees the model, its weights or its latents, so it cannot share a model's blind spots: the same
function grades the renderer's own pictures (which must all pass), a trained checkpoint's samples, and an engine's
samples of that checkpoint. It gives five verdicts, one per caption attribute, so a failure names what is wrong:

- background: the per-channel median of a border ring is the background color; it must be nearest the named one
  and near it in absolute terms.
- (the subject) pixels far from the background form the foreground, and its largest 8-connected component is the
  subject; its outline is re-cut on lightly smoothed pixels at half the measured subject/background contrast (the
  50 % line of an anti-aliased or blurred edge).
- color: the median of the subject's interior (eroded past its anti-aliased rim) is nearest the named color.
- position: the subject's centroid falls in the named cell of the 3x3 grid.
- size: the bounding box side (fraction of the image side) is nearest the named size and within a window of it.
- shape: fill ratio (area / bounding-box area: circle pi/4, square 1, triangle 1/2) and taper (mass of the box's
  upper half over its lower half: 1/3 for the apex-up triangle, 1 otherwise) name the shape; a second object of
  comparable area also fails it. No subject (or a speck) fails color, position, size and shape.

numpy and scipy.ndimage only; psnr / ssim (for comparing an engine's image with a reference image of the same
seed) import scikit-image when called.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage  # type: ignore[import-untyped]

from ideogram_trt.quality.shapes import (
    BACKGROUND_COLORS,
    MIN_CONTRAST,
    POSITIONS,
    SIZES,
    SUBJECT_COLORS,
    Caption,
    Shape,
)

RGB = tuple[float, float, float]

BORDER = 0.06  # width of the ring the background is read from, as a fraction of the shorter side
# Absolute tolerances (RGB distance). The background palette's closest pair (light gray / pale green) is 37 apart,
# so the nearest-entry rule decides between neighbours; the tolerance only rejects colors outside the palette.
BACKGROUND_TOLERANCE = 45.0
SUBJECT_TOLERANCE = 60.0  # the subject palette's closest pair (yellow / orange) is 80 apart
FOREGROUND_THRESHOLD = MIN_CONTRAST / 2  # a pixel this far from the background is foreground (first cut)
SMOOTH = 1.0  # Gaussian sigma (pixels) of the smoothing before the outline is cut
OUTLINE_PAD = 4  # pixels around the first cut's box searched for the outline
ERODE = 2  # pixels of anti-aliased rim skipped when reading the subject's color
MIN_AREA = 0.004  # a subject smaller than this fraction of the image counts as absent (a small triangle is 0.018)
SECOND_OBJECT = 0.25  # another component this large relative to the subject fails the shape: one object per caption
SIZE_WINDOW = (0.6, 1.5)  # the measured side must lie within these factors of the named size
# Shape classes, in (fill ratio, taper, aspect) space. Ideal values: circle (0.785, 1, 1), square (1, 1, 1),
# triangle (0.5, 1/3, 1). A jittered large shape in a corner is clipped by the image edge by up to 12 % of its
# side: worst cases circle (0.874, 0.84..1.19, 0.885), triangle (0.613, 0.449, 0.885); anti-aliasing moves less.
MIN_ASPECT = 0.7  # shorter over longer bounding-box side; every shape of the grammar has a square box
TRIANGLE_TAPER = 0.6  # at most this: the upper half clearly lighter than the lower (apex up)
TRIANGLE_FILL = (0.38, 0.70)  # taper, not fill, separates a blurred triangle from a circle
ROUND_TAPER = (0.75, 1 / 0.75)  # circles and squares are symmetric top to bottom
# pi/4 = 0.785 for a circle; a large circle clipped in a corner reaches 0.874. A square fills at least SQUARE_FILL.
CIRCLE_FILL = 0.68
SQUARE_FILL = 0.91

_EIGHT = np.ones((3, 3), dtype=bool)
_CELL_NAMES = {cell: name for name, cell in POSITIONS.items()}


def _distance(a: Sequence[float], b: Sequence[float]) -> float:
    return float(math.dist(a, b))


def _nearest(rgb: Sequence[float], palette: dict[str, tuple[int, int, int]]) -> tuple[str, float]:
    name = min(palette, key=lambda key: _distance(rgb, palette[key]))
    return name, _distance(rgb, palette[name])


def _fmt(rgb: Sequence[float]) -> str:
    return "(" + ",".join(f"{round(v)}" for v in rgb) + ")"


def _color_problem(
    what: str, rgb: Sequence[float], palette: dict[str, tuple[int, int, int]], named: str, tolerance: float
) -> str:
    """Why a measured color does not read as the named one: another palette color is nearer, or it is too far."""
    name, dist = _nearest(rgb, palette)
    if name != named:
        return f"{what} {_fmt(rgb)} is nearer {name!r} than {named!r}"
    return f"{what} {_fmt(rgb)} is {dist:.0f} from {named!r} (tolerance {tolerance:.0f})"


def _cell(centroid: tuple[float, float]) -> tuple[int, int]:
    row, col = (min(max(int(v * 3), 0), 2) for v in centroid)
    return row, col


def nearest_size(side: float) -> str:
    return min(SIZES, key=lambda key: abs(side - SIZES[key]))


def classify(fill: float, taper: float, aspect: float) -> Shape | None:
    """The shape these measurements describe, or None if they fit none of the grammar's shapes."""
    if aspect < MIN_ASPECT:
        return None
    if taper <= TRIANGLE_TAPER and TRIANGLE_FILL[0] <= fill <= TRIANGLE_FILL[1]:
        return Shape.TRIANGLE
    if ROUND_TAPER[0] <= taper <= ROUND_TAPER[1]:
        if fill >= SQUARE_FILL:
            return Shape.SQUARE
        if fill >= CIRCLE_FILL:
            return Shape.CIRCLE
    return None


@dataclass(frozen=True)
class Verdict:
    """The five checks of one image against one caption, with what was measured. Fractions are of the image side
    (side, centroid) or the image area (area); centroid is (y, x), y down."""

    caption: Caption
    background: bool
    color: bool
    shape: bool
    position: bool
    size: bool
    background_rgb: RGB
    subject_rgb: RGB | None  # None: no subject found
    area: float  # the subject's area fraction; 0 with no foreground
    centroid: tuple[float, float] | None
    side: float | None  # bounding-box side, max(height, width)
    fill: float | None  # area over bounding-box area
    taper: float | None  # upper-half over lower-half mass of the bounding box
    aspect: float | None  # shorter over longer bounding-box side
    second: float  # the next largest foreground component's area over the subject's (0 if none)
    shape_name: str | None  # the classified shape; None when unclassified or no subject

    @property
    def passed(self) -> bool:
        return self.background and self.color and self.shape and self.position and self.size

    @property
    def found(self) -> bool:
        return self.subject_rgb is not None

    def problems(self) -> list[str]:
        """One short reason per failed check; empty when the image passes."""
        caption, out = self.caption, []
        if not self.background:
            out.append(
                _color_problem(
                    "background", self.background_rgb, BACKGROUND_COLORS, caption.background, BACKGROUND_TOLERANCE
                )
            )
        if not self.found:
            if self.area > 0:
                out.append(f"no subject: the largest object covers {self.area:.2%} of the image (< {MIN_AREA:.1%})")
            else:
                out.append(f"no subject: no pixel differs from the background by more than {FOREGROUND_THRESHOLD:.0f}")
            return out
        assert self.subject_rgb is not None and self.centroid is not None and self.side is not None
        if not self.color:
            out.append(_color_problem("subject", self.subject_rgb, SUBJECT_COLORS, caption.color, SUBJECT_TOLERANCE))
        if not self.shape:
            measured = f"fill {self.fill:.2f}, taper {self.taper:.2f}, aspect {self.aspect:.2f}"
            if self.shape_name is None:
                out.append(f"shape is none of the grammar's ({measured}), not a {caption.shape.value}")
            elif self.shape_name != caption.shape.value:
                out.append(f"shape reads as a {self.shape_name} ({measured}), not a {caption.shape.value}")
            if self.second >= SECOND_OBJECT:
                out.append(f"a second object of {self.second:.0%} the subject's area")
        if not self.position:
            cell = _CELL_NAMES[_cell(self.centroid)]
            y, x = self.centroid
            out.append(f"centroid (y {y:.2f}, x {x:.2f}) lies in {cell!r}, not {caption.position!r}")
        if not self.size:
            named = SIZES[caption.size]
            nearest = nearest_size(self.side)
            if nearest != caption.size:
                out.append(f"side {self.side:.2f} is nearer {nearest!r} ({SIZES[nearest]}) than {caption.size!r}")
            else:
                low, high = (named * f for f in SIZE_WINDOW)
                out.append(f"side {self.side:.2f} is outside {low:.2f}..{high:.2f} for {caption.size!r} ({named})")
        return out


def _components(mask: NDArray[np.bool_]) -> tuple[NDArray[np.bool_] | None, int, int]:
    """The largest 8-connected component of mask, its pixel count and the second largest's pixel count."""
    labels, count = ndimage.label(mask, structure=_EIGHT)
    if count == 0:
        return None, 0, 0
    sizes = np.bincount(labels.ravel())[1:]
    order = np.argsort(sizes)[::-1]
    second = int(sizes[order[1]]) if count > 1 else 0
    return labels == order[0] + 1, int(sizes[order[0]]), second


def _box(component: NDArray[np.bool_], pad: int = 0) -> tuple[slice, slice]:
    """The bounding box of a non-empty mask, grown by pad pixels on each side (within the image)."""
    rows, cols = np.nonzero(component.any(axis=1))[0], np.nonzero(component.any(axis=0))[0]
    top, left = max(int(rows[0]) - pad, 0), max(int(cols[0]) - pad, 0)
    return slice(top, int(rows[-1]) + 1 + pad), slice(left, int(cols[-1]) + 1 + pad)


def _interior_median(rgb: NDArray[np.uint8], component: NDArray[np.bool_]) -> RGB:
    # Erode within the component's box, padded so that background surrounds it; the image edge (border_value)
    # does not erode a shape the edge clips.
    crop = _box(component, pad=ERODE + 1)
    region = component[crop]
    interior = ndimage.binary_erosion(region, structure=_EIGHT, iterations=ERODE, border_value=1)
    if not interior.any():  # a sliver: the rim is all there is
        interior = region
    median = np.median(rgb[crop][interior], axis=0)
    return float(median[0]), float(median[1]), float(median[2])


def _border_median(rgb: NDArray[np.uint8]) -> RGB:
    height, width = rgb.shape[:2]
    ring = max(1, round(BORDER * min(height, width)))
    pixels = np.concatenate(
        [
            rgb[:ring].reshape(-1, 3),
            rgb[-ring:].reshape(-1, 3),
            rgb[ring:-ring, :ring].reshape(-1, 3),
            rgb[ring:-ring, -ring:].reshape(-1, 3),
        ]
    )
    median = np.median(pixels, axis=0)
    return float(median[0]), float(median[1]), float(median[2])


def _as_image(image: NDArray[np.uint8]) -> NDArray[np.uint8]:
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected an [H, W, 3] uint8 image, got {array.dtype} {array.shape}")
    return array


def check(image: NDArray[np.uint8], caption: Caption | str) -> Verdict:
    """Judge one [H, W, 3] uint8 image against a caption (a Caption or its JSON prompt)."""
    if isinstance(caption, str):
        caption = Caption.parse(caption)
    array = _as_image(image)
    height, width = array.shape[:2]
    background = _border_median(array)
    bg_name, bg_dist = _nearest(background, BACKGROUND_COLORS)
    background_ok = bg_name == caption.background and bg_dist <= BACKGROUND_TOLERANCE

    squared = ((array.astype(np.float32) - np.asarray(background, dtype=np.float32)) ** 2).sum(axis=-1)
    component, count, second = _components(squared > FOREGROUND_THRESHOLD**2)
    minimum = MIN_AREA * height * width
    if component is None or count < minimum:
        return Verdict(
            caption=caption,
            background=background_ok,
            color=False,
            shape=False,
            position=False,
            size=False,
            background_rgb=background,
            subject_rgb=None,
            area=count / (height * width),
            centroid=None,
            side=None,
            fill=None,
            taper=None,
            aspect=None,
            second=0.0,
            shape_name=None,
        )
    second_ratio = second / count
    subject = _interior_median(array, component)
    # The outline: re-cut within the component's box, its pixels lightly smoothed (pixel noise would fray the edge
    # and inflate the box), at half the measured contrast: the 50 % line of an anti-aliased or blurred edge whatever
    # the pair, so a high-contrast subject's faint halo does not grow its box either.
    threshold = max(FOREGROUND_THRESHOLD, _distance(subject, background) / 2)
    box = _box(component, pad=OUTLINE_PAD)
    crop = ndimage.gaussian_filter(array[box].astype(np.float32), sigma=(SMOOTH, SMOOTH, 0))
    outline, outcount, _ = _components(((crop - np.asarray(background, np.float32)) ** 2).sum(axis=-1) > threshold**2)
    if outline is not None and outcount >= minimum:
        component = np.zeros_like(component)
        component[box] = outline
        count = outcount
    area = count / (height * width)

    color_name, color_dist = _nearest(subject, SUBJECT_COLORS)
    color_ok = color_name == caption.color and color_dist <= SUBJECT_TOLERANCE

    ys, xs = np.nonzero(component)
    centroid = ((float(ys.mean()) + 0.5) / height, (float(xs.mean()) + 0.5) / width)
    position_ok = _cell(centroid) == POSITIONS[caption.position]

    top, bottom, left, right = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    box_h, box_w = bottom - top, right - left
    side = max(box_h / height, box_w / width)
    named = SIZES[caption.size]
    size_ok = nearest_size(side) == caption.size and SIZE_WINDOW[0] * named <= side <= SIZE_WINDOW[1] * named

    fill = count / (box_h * box_w)
    aspect = min(box_h, box_w) / max(box_h, box_w)
    rows = np.bincount(ys - top, minlength=box_h).astype(np.float64)
    half = box_h // 2
    upper = rows[:half].sum() + (rows[half] / 2 if box_h % 2 else 0.0)
    lower = count - upper
    taper = float(upper / lower) if lower > 0 else math.inf
    shape = classify(fill, taper, aspect)
    shape_ok = shape == caption.shape and second_ratio < SECOND_OBJECT

    return Verdict(
        caption=caption,
        background=background_ok,
        color=color_ok,
        shape=shape_ok,
        position=position_ok,
        size=size_ok,
        background_rgb=background,
        subject_rgb=subject,
        area=area,
        centroid=centroid,
        side=side,
        fill=fill,
        taper=taper,
        aspect=aspect,
        second=second_ratio,
        shape_name=shape.value if shape is not None else None,
    )


CHECKS = ("background", "color", "shape", "position", "size")


@dataclass(frozen=True)
class Summary:
    """Pass rates over a set of images: all five checks (passed) and each check alone."""

    count: int
    passed: float
    background: float
    color: float
    shape: float
    position: float
    size: float

    @classmethod
    def of(cls, verdicts: Sequence[Verdict]) -> Summary:
        if not verdicts:
            raise ValueError("no verdicts to summarize")
        n = len(verdicts)
        rates = {name: sum(getattr(v, name) for v in verdicts) / n for name in CHECKS}
        return cls(count=n, passed=sum(v.passed for v in verdicts) / n, **rates)


def check_all(images: Iterable[NDArray[np.uint8]], captions: Iterable[Caption | str]) -> list[Verdict]:
    """Verdicts of images (an [B, H, W, 3] array or a sequence of [H, W, 3]) against their captions, pairwise."""
    return [check(image, caption) for image, caption in zip(images, captions, strict=True)]


def summarize(images: Iterable[NDArray[np.uint8]], captions: Iterable[Caption | str]) -> Summary:
    return Summary.of(check_all(images, captions))


def pass_rate(images: Iterable[NDArray[np.uint8]], captions: Iterable[Caption | str]) -> float:
    """The fraction of images that pass all five checks against their captions."""
    return summarize(images, captions).passed


def _pair(a: NDArray[np.uint8], b: NDArray[np.uint8]) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
    a, b = _as_image(a), _as_image(b)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} and {b.shape}")
    return a, b


def psnr(a: NDArray[np.uint8], b: NDArray[np.uint8]) -> float:
    """Peak signal-to-noise ratio in dB of two [H, W, 3] uint8 images; inf when identical."""
    a, b = _pair(a, b)
    if np.array_equal(a, b):
        return math.inf
    from skimage.metrics import peak_signal_noise_ratio

    return float(peak_signal_noise_ratio(a, b, data_range=255))  # type: ignore[no-untyped-call]


def ssim(a: NDArray[np.uint8], b: NDArray[np.uint8]) -> float:
    """Mean structural similarity of two [H, W, 3] uint8 images (skimage's default 7x7 window), 1 when identical."""
    a, b = _pair(a, b)
    from skimage.metrics import structural_similarity

    return float(structural_similarity(a, b, data_range=255, channel_axis=-1))  # type: ignore[no-untyped-call]
