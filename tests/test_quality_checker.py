"""The shapes checker (ideogram_trt.quality.checker) against truth it does not compute itself: the renderer's own
pictures of every caption pass, a caption with one word changed is caught by the check that word belongs to (and
by no other), degraded pictures fail for the right reason, and psnr / ssim agree with formulas computed here."""

from __future__ import annotations

import dataclasses
import math
import random

import numpy as np
import pytest
import torch

from ideogram_trt.quality.checker import CHECKS, Summary, Verdict, check, check_all, pass_rate, psnr, ssim
from ideogram_trt.quality.shapes import (
    BACKGROUND_COLORS,
    POSITIONS,
    SIZES,
    SUBJECT_COLORS,
    Caption,
    Shape,
    all_captions,
    render,
    to_uint8,
)

SIDE = 256
SAMPLE = 300  # jittered captions
ATTRIBUTE_VALUES = {
    "shape": list(Shape),
    "color": list(SUBJECT_COLORS),
    "size": list(SIZES),
    "position": list(POSITIONS),
    "background": list(BACKGROUND_COLORS),
}


def images_of(captions: list[Caption], generator: torch.Generator | None = None) -> np.ndarray:
    chunks = [to_uint8(render(captions[i : i + 50], generator=generator)).numpy() for i in range(0, len(captions), 50)]
    return np.concatenate(chunks)


Geometry = tuple[str, str, str]  # shape, size, position
Jittered = tuple[list[Caption], np.ndarray, list[Verdict]]


def coverage_masks() -> dict[Geometry, np.ndarray]:
    """The renderer's coverage mask of each of the 54 geometries, read back exactly from one render of it (2x
    supersampling: coverage is a multiple of 1/4)."""
    geometries = sorted({(c.shape.value, c.size, c.position) for c in all_captions()})
    probes = [Caption(Shape(shape), "white", size, position, "dark gray") for shape, size, position in geometries]
    white, dark = SUBJECT_COLORS["white"][0], BACKGROUND_COLORS["dark gray"][0]
    drawn = render(probes)[:, 0].numpy()  # [G, H, W]
    masks = (((drawn - np.float32(dark / 255)) / np.float32((white - dark) / 255)) * 4).round() / 4
    return dict(zip(geometries, masks.astype(np.float32), strict=True))


def compose(masks: dict[Geometry, np.ndarray], captions: list[Caption]) -> np.ndarray:
    """Exact renders of captions, [N, H, W, 3] uint8, by the renderer's own float32 formula and rounding on the
    coverage masks: far cheaper than drawing each at 2x. test_composed_renders_equal_the_renderer holds it to the
    renderer itself."""
    mask = np.stack([masks[(c.shape.value, c.size, c.position)] for c in captions])[:, None]
    color = np.array([SUBJECT_COLORS[c.color] for c in captions], dtype=np.float32)[:, :, None, None] / 255
    background = np.array([BACKGROUND_COLORS[c.background] for c in captions], dtype=np.float32)[:, :, None, None]
    background = background / 255
    images = background + (color - background) * mask
    return (np.clip(images, 0, 1) * 255).round().astype(np.uint8).transpose(0, 2, 3, 1)


@pytest.fixture(scope="module")
def masks() -> dict[Geometry, np.ndarray]:
    return coverage_masks()


def exact(masks: dict[Geometry, np.ndarray], caption: Caption) -> np.ndarray:
    return compose(masks, [caption])[0]


@pytest.fixture(scope="module")
def jittered() -> Jittered:
    """SAMPLE captions drawn with the renderer's jitter, and their verdicts."""
    captions = random.Random(7).sample(list(all_captions()), SAMPLE)
    images = images_of(captions, torch.Generator().manual_seed(11))
    return captions, images, check_all(images, captions)


def test_composed_renders_equal_the_renderer(masks: dict[Geometry, np.ndarray]) -> None:
    sample = random.Random(3).sample(list(all_captions()), 40)
    for caption, composed, drawn in zip(sample, compose(masks, sample), images_of(sample), strict=True):
        assert np.array_equal(composed, drawn), caption.prompt


def test_every_exact_render_passes(masks: dict[Geometry, np.ndarray]) -> None:
    captions = list(all_captions())
    assert len(captions) > 2000
    failures = []
    for start in range(0, len(captions), 64):
        chunk = captions[start : start + 64]
        failures += judge_exact(chunk, compose(masks, chunk))
    assert not failures, f"{len(failures)} exact renders fail, e.g. " + "\n".join(failures[:10])


def judge_exact(captions: list[Caption], images: np.ndarray) -> list[str]:
    failures = []
    for caption, image in zip(captions, images, strict=True):
        verdict = check(image, caption)
        if not verdict.passed:
            failures.append(f"{caption.prompt}: {verdict.problems()}")
            continue
        # The measurements themselves, against the caption's own numbers: flat colors are read exactly, the box
        # to within the anti-aliased rim and the smoothed outline's rounding of a triangle's sharp corners (3 px),
        # a circle's or square's centroid at its cell's centre.
        assert verdict.background_rgb == BACKGROUND_COLORS[caption.background], caption.prompt
        assert verdict.subject_rgb == SUBJECT_COLORS[caption.color], caption.prompt
        assert verdict.side == pytest.approx(SIZES[caption.size], abs=3 / SIDE), caption.prompt
        assert verdict.shape_name == caption.shape.value and verdict.problems() == []
        if caption.shape is not Shape.TRIANGLE:
            row, col = POSITIONS[caption.position]
            assert verdict.centroid == pytest.approx(((row + 0.5) / 3, (col + 0.5) / 3), abs=1 / SIDE)
    return failures


def test_jittered_renders_pass(masks: dict[Geometry, np.ndarray], jittered: Jittered) -> None:
    captions, images, verdicts = jittered
    exact_images = compose(masks, captions[:20])
    assert sum(not np.array_equal(a, b) for a, b in zip(exact_images, images[:20], strict=True)) >= 15  # jittered
    failures = [f"{v.caption.prompt}: {v.problems()}" for v in verdicts if not v.passed]
    assert len(failures) <= 0.01 * SAMPLE, "\n".join(failures)
    assert Summary.of(verdicts).passed >= 0.99
    few = slice(0, 40)
    assert pass_rate(images[few], [c.prompt for c in captions[few]]) == Summary.of(verdicts[few]).passed


def alternative(caption: Caption, attribute: str, rng: random.Random) -> Caption:
    """A drawable caption that differs from caption in attribute alone."""
    valid = set(all_captions())
    options = [dataclasses.replace(caption, **{attribute: value}) for value in ATTRIBUTE_VALUES[attribute]]
    options = [c for c in options if c != caption and c in valid]
    return rng.choice(options)


@pytest.mark.parametrize("attribute", CHECKS)
def test_one_changed_word_is_caught_by_its_check(attribute: str, jittered: Jittered) -> None:
    captions, images, verdicts = jittered
    rng = random.Random(f"alternative {attribute}")
    missed, collateral, judged = [], [], 0
    for caption, image, right in zip(captions, images, verdicts, strict=True):
        if not right.passed:
            continue  # test_jittered_renders_pass bounds these
        wrong = alternative(caption, attribute, rng)
        verdict = check(image, wrong)
        judged += 1
        if getattr(verdict, attribute):
            missed.append(f"{caption.prompt} judged as {getattr(wrong, attribute)!r}")
        others = [name for name in CHECKS if name != attribute and not getattr(verdict, name)]
        if others:
            collateral.append(f"{caption.prompt} vs {wrong.prompt}: also failed {others}")
    assert judged >= 0.99 * SAMPLE
    assert len(missed) <= 0.02 * judged, f"{attribute}: {len(missed)}/{judged} missed:\n" + "\n".join(missed)
    assert not collateral, "\n".join(collateral[:10])


def test_blank_and_speck_images_have_no_subject() -> None:
    caption = Caption(Shape.SQUARE, "red", "small", "center", "beige")
    blank = np.full((SIDE, SIDE, 3), BACKGROUND_COLORS["beige"], dtype=np.uint8)
    verdict = check(blank, caption)
    assert verdict.background and not verdict.found
    assert not (verdict.shape or verdict.color or verdict.position or verdict.size or verdict.passed)
    assert verdict.area == 0 and any("no subject" in p for p in verdict.problems())
    speck = blank.copy()
    speck[100:108, 100:108] = SUBJECT_COLORS["red"]  # 64 pixels: 0.1 % of the image
    verdict = check(speck, caption)
    assert not verdict.found and not verdict.shape and verdict.area == pytest.approx(64 / SIDE**2)


def test_pixel_noise_still_passes(jittered: Jittered) -> None:
    captions, images, _ = jittered
    noise = np.random.default_rng(5).standard_normal(size=(30, *images.shape[1:]), dtype=np.float32) * 8
    noisy = np.clip(images[:30] + noise, 0, 255).round().astype(np.uint8)
    assert psnr(noisy[0], images[0]) < 31  # the noise is really there (sigma 8 is 30 dB)
    verdicts = check_all(noisy, captions[:30])
    assert all(v.passed for v in verdicts), [v.problems() for v in verdicts if not v.passed]


def test_subject_color_moved_toward_the_background(masks: dict[Geometry, np.ndarray]) -> None:
    sample = random.Random(9).sample(list(all_captions()), 60)
    for caption, image in zip(sample, compose(masks, sample), strict=True):
        background = np.asarray(BACKGROUND_COLORS[caption.background], dtype=np.float64)

        def toward(fraction: float, image: np.ndarray = image, background: np.ndarray = background) -> np.ndarray:
            return (background + (image - background) * (1 - fraction)).round().astype(np.uint8)

        mild = check(toward(0.1), caption)
        assert mild.passed, (caption.prompt, mild.problems())
        verdict = check(toward(0.6), caption)
        assert not verdict.color and not verdict.passed, (caption.prompt, verdict.subject_rgb)
        assert verdict.background
        assert any("subject" in p for p in verdict.problems())


def test_a_second_object_fails_the_shape(masks: dict[Geometry, np.ndarray]) -> None:
    one = Caption(Shape.CIRCLE, "blue", "large", "left", "beige")
    other = dataclasses.replace(one, size="small", position="right")
    first, second = compose(masks, [one, other])
    both = np.where((second != BACKGROUND_COLORS["beige"]).any(axis=-1, keepdims=True), second, first)
    verdict = check(both, one)
    assert not verdict.shape and verdict.color and verdict.position and verdict.size
    assert verdict.second == pytest.approx((0.2 / 0.32) ** 2, rel=0.05)
    assert any("second object" in p for p in verdict.problems())


def test_problems_name_what_was_seen(masks: dict[Geometry, np.ndarray]) -> None:
    caption = Caption(Shape.TRIANGLE, "purple", "small", "top right", "light gray")
    image = exact(masks, caption)
    assert check(image, caption.prompt) == check(image, caption)
    wrong = dataclasses.replace(caption, shape=Shape.SQUARE, color="blue", size="large", background="beige")
    wrong = dataclasses.replace(wrong, position="bottom left")
    verdict = check(image, wrong)
    assert not any(getattr(verdict, name) for name in CHECKS)
    problems = "\n".join(verdict.problems())
    assert "background (200,200,200) is nearer 'light gray' than 'beige'" in problems
    assert "subject (140,40,170) is nearer 'purple' than 'blue'" in problems
    assert "reads as a triangle" in problems and "not a square" in problems
    assert "lies in 'top right', not 'bottom left'" in problems
    assert "nearer 'small'" in problems
    with pytest.raises(ValueError, match="not a shapes caption"):
        check(image, '{"subject": "a big red circle"}')
    with pytest.raises(ValueError, match="uint8"):
        check(image.astype(np.float32), caption)


def test_psnr_matches_its_formula() -> None:
    rng = np.random.default_rng(0)
    for _ in range(5):
        a = rng.integers(0, 256, size=(48, 40, 3), dtype=np.uint8)
        b = np.clip(a.astype(np.int64) + rng.integers(-30, 31, size=a.shape), 0, 255).astype(np.uint8)
        mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
        assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / mse), rel=1e-9)
    a = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    assert psnr(a, a.copy()) == math.inf
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(a, a[:16])


def test_ssim_falls_with_noise(masks: dict[Geometry, np.ndarray]) -> None:
    image = exact(masks, Caption(Shape.SQUARE, "orange", "large", "center", "dark gray"))
    assert ssim(image, image.copy()) == 1.0
    rng = np.random.default_rng(1)
    scores = []
    for sigma in (4, 16, 48):
        noisy = np.clip(image + rng.normal(0, sigma, size=image.shape), 0, 255).round().astype(np.uint8)
        scores.append(ssim(image, noisy))
    assert all(0 < s < 1 for s in scores), scores
    assert scores[0] > scores[1] > scores[2], scores
