"""The bounds of one generation request and the checks of its numbers, shared by the pipeline (hence the CLI and
Triton): every refusal is one line that names the value, the bound and the fix.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

from ideogram_trt.core.errors import InputError

# Steps: the presets use 8–48; flow-matching Euler sampling stops improving long before 1000 (the training
# discretization of the DDPM family), and 1000 steps already take minutes per 1024² image on an H200. Above
# that a request is a typo that would hold an engine (or a Triton instance) for hours.
MAX_STEPS = 1000
# Images per request (prompts × images per prompt): the pipeline holds every image of a request in host memory,
# float32 and uint8 (about 16 MB each at 1024², 64 MB at 2048²): 256 is 4–16 GB, the most a request should
# take. Larger jobs are several requests (e.g. a loop over seeds, or a split prompt file).
MAX_IMAGES_PER_REQUEST = 256
# Seeds: image k of a request uses seed + k; seeds travel as int64 (Triton's INT64 input, JSON, PNG text), so
# every seed of a request must fit one.
MAX_SEED = 2**63 - 1


def whole(value: object) -> int | None:
    """``value`` as an int if it is a whole number (Python or numpy, not bool), else None."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        return None
    return int(value)


def check_steps(steps: object) -> int:
    count = whole(steps)
    if count is None or not 1 <= count <= MAX_STEPS:
        raise InputError(f"steps {steps!r}: give a whole number from 1 to {MAX_STEPS}")
    return count


def check_images(num_images: object, prompts: int) -> int:
    per_prompt = whole(num_images)
    if per_prompt is None or per_prompt < 1:
        raise InputError(f"num_images must be at least 1, got {num_images!r}")
    count = per_prompt * prompts
    if count > MAX_IMAGES_PER_REQUEST:
        what = f"{count} images" if prompts == 1 else f"{prompts} prompts x {per_prompt} images = {count} images"
        raise InputError(
            f"{what}: above the limit of {MAX_IMAGES_PER_REQUEST} per request: split the "
            "request (e.g. several runs with different --seed)"
        )
    return count


def check_seed(seed: object, count: int = 1) -> int:
    """``seed`` … ``seed + count − 1`` must all be seeds (0 … 2⁶³ − 1)."""
    value = whole(seed)
    if value is None or not 0 <= value <= MAX_SEED - (count - 1):
        top = "2**63 - 1" if count == 1 else f"2**63 - {count} for {count} images (image k uses seed + k)"
        raise InputError(f"seed {seed!r}: give a whole number from 0 to {top}")
    return value


def check_guidance(values: Sequence[float]) -> tuple[float, ...]:
    """Finite guidance weights, at most one per step of the longest schedule."""
    if not values:
        raise InputError("the guidance schedule is empty: give one value, or one per step")
    if len(values) > MAX_STEPS:
        raise InputError(f"{len(values)} guidance values: at most {MAX_STEPS} (one per step)")
    checked = []
    for index, value in enumerate(values):
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number):
            where = "" if len(values) == 1 else f" (value {index + 1} of {len(values)})"
            raise InputError(f"guidance {value!r}{where}: give a finite number, e.g. 7 or 3.5")
        checked.append(number)
    return tuple(checked)


def parse_guidance(text: str) -> float | list[float]:
    """``--guidance``: one number, or comma-separated numbers, one per step (chronological)."""
    parts = [part.strip() for part in text.split(",")]
    values: list[float] = []
    for index, part in enumerate(parts):
        where = "" if len(parts) == 1 else f" (value {index + 1} of {len(parts)})"
        try:
            values.append(float(part))
        except ValueError:
            shown = repr(part) if part else "an empty value"
            raise InputError(
                f"--guidance {text!r}: {shown}{where} is not a number; give one number, or one per step "
                "separated by commas (e.g. 7 or 7,7,3)"
            ) from None
        if not math.isfinite(values[-1]):
            raise InputError(f"--guidance {text!r}: {part!r}{where} is not finite; give finite numbers, e.g. 7 or 3.5")
    checked = check_guidance(values)
    return checked[0] if len(checked) == 1 else list(checked)
