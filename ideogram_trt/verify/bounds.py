"""The bounds ``verify`` holds an engine set to, per recipe and graph dtype (docs/VERIFY.md §3 says where each
number comes from).

Every comparison is engine against the fp32 PyTorch reference, as a signal-to-noise ratio in dB:
10·log10(Σ ref² / Σ (engine − ref)²), polygraphy's ``SnrCompareFunc`` with the reference first — 20 dB is a
relative L2 error of 10 %, 40 dB of 1 %, 60 dB of 0.1 %. Images also get a PSNR (peak: the reference's largest
value, polygraphy's ``PsnrCompareFunc``). A check passes when its number is at least the bound.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ideogram_trt.core.errors import InputError
from ideogram_trt.core.recipes import Recipe, parse_enum
from ideogram_trt.export.recipes import GraphDType

BOUNDS_FORMAT = 1


@dataclass(frozen=True)
class Bounds:
    engine_snr_db: float  # one engine call, every output
    latent_snr_db: float  # the final latents of a whole request
    image_psnr_db: float  # its decoded image

    def to_json(self) -> dict[str, float]:
        return asdict(self)


# (recipe, dtype) → bounds, with their evidence in docs/VERIFY.md §3. fp32 graphs differ from the fp32 reference by
# summation order alone (and, under fp8, by the rare activation that lands on the other FP8 neighbour); bf16 and
# fp16 were estimated from PyTorch in that dtype against fp32 (tools/verify_bounds.py, docs/bench/verify/), with
# 8-10 dB to spare. bf16 and fp8-wo compute the same numbers (the release's bf16 weights are its FP8 weights
# dequantized, docs/MODEL.md §8.2), so they share bounds.
_WEIGHT_ONLY = {
    GraphDType.FP32: Bounds(engine_snr_db=60.0, latent_snr_db=50.0, image_psnr_db=50.0),
    GraphDType.FP16: Bounds(engine_snr_db=40.0, latent_snr_db=40.0, image_psnr_db=40.0),
    GraphDType.BF16: Bounds(engine_snr_db=25.0, latent_snr_db=22.0, image_psnr_db=24.0),
}
_ACTIVATIONS = {
    GraphDType.FP32: Bounds(engine_snr_db=45.0, latent_snr_db=30.0, image_psnr_db=35.0),
    GraphDType.FP16: Bounds(engine_snr_db=20.0, latent_snr_db=17.0, image_psnr_db=19.0),
    GraphDType.BF16: Bounds(engine_snr_db=18.0, latent_snr_db=15.0, image_psnr_db=17.0),
}
BOUNDS: dict[tuple[Recipe, GraphDType], Bounds] = {
    **{(Recipe.BF16, d): b for d, b in _WEIGHT_ONLY.items()},
    **{(Recipe.FP8_WO, d): b for d, b in _WEIGHT_ONLY.items()},
    **{(Recipe.FP8, d): b for d, b in _ACTIVATIONS.items()},
}


def bounds_for(recipe: str, dtype: str, file: Path | None = None) -> tuple[Bounds, str]:
    """The bounds of an engine set's recipe and dtype, and where they come from; ``file`` (``--recipe-bounds``)
    replaces the built-in ones for the pairs it names."""
    key = (parse_enum(Recipe, recipe, "recipe"), parse_enum(GraphDType, dtype, "dtype"))
    if file is not None:
        given = load_bounds(file)
        if key in given:
            return given[key], str(file)
    return BOUNDS[key], "built-in (docs/VERIFY.md §3)"


def load_bounds(path: Path) -> dict[tuple[Recipe, GraphDType], Bounds]:
    """``{"format": 1, "bounds": {"fp8/bf16": {"engine_snr_db": 25, "latent_snr_db": 15, "image_psnr_db": 25}}}``"""
    where = f"--recipe-bounds {path}"
    if not path.is_file():
        raise InputError(f"{where}: no such file")
    try:
        body = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(body, dict) or body.get("format") != BOUNDS_FORMAT or not isinstance(body.get("bounds"), dict):
        raise InputError(f'{where}: give {{"format": {BOUNDS_FORMAT}, "bounds": {{"RECIPE/DTYPE": {{...}}}}}}')
    names = [f.name for f in fields(Bounds)]
    table: dict[tuple[Recipe, GraphDType], Bounds] = {}
    for pair, raw in body["bounds"].items():
        recipe, _, dtype = str(pair).partition("/")
        key = (parse_enum(Recipe, recipe, f"{where}: recipe"), parse_enum(GraphDType, dtype, f"{where}: dtype"))
        if not isinstance(raw, dict) or sorted(raw) != sorted(names):
            raise InputError(f"{where}: {pair} must give exactly {', '.join(names)}")
        values = {}
        for name in names:
            value = raw[name]
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise InputError(f"{where}: {pair}.{name} must be a finite number of dB, not {value!r}")
            values[name] = float(value)
        table[key] = Bounds(**values)
    return table
