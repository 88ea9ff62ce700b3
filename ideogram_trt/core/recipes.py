"""Precision recipes (docs/ARCHITECTURE.md §5) by name: what the CLI and the engine builder need, without PyTorch.

The torch side (quantization plans, graph dtypes) lives in ``ideogram_trt.export.recipes``, which re-exports
everything here.
"""

from __future__ import annotations

from enum import Enum
from typing import TypeVar

from ideogram_trt.core.errors import InputError

E = TypeVar("E", bound=Enum)


class Recipe(str, Enum):
    BF16 = "bf16"  # weights dequantized to bf16 (the reference), no Q/DQ
    FP8_WO = "fp8-wo"  # the release's E4M3 weights + per-row scales unchanged, DequantizeLinear; bf16 activations
    FP8 = "fp8"  # fp8-wo + calibrated per-tensor activation Q/DQ on the big GEMMs: true FP8 GEMMs

    @property
    def fp8_weights(self) -> bool:
        return self is not Recipe.BF16

    @property
    def needs_calibration(self) -> bool:
        """Quantizes activations, so an export of a graph it quantizes (the DiTs, always) needs a calibration
        file; ``export.recipes.QuantPlan.needs_calibration`` says which graphs."""
        return self is Recipe.FP8

    @property
    def summary(self) -> str:
        """What the recipe does, in a few words (the CLI's help lists these)."""
        return _SUMMARIES[self]


_SUMMARIES = {
    Recipe.BF16: "dequantized weights",
    Recipe.FP8_WO: "the release's FP8 weights + DequantizeLinear",
    Recipe.FP8: "plus calibrated activation Q/DQ on qkv/o/w1/w2/w3",
}
DEFAULT_RECIPE = Recipe.FP8
CALIBRATED_RECIPES = tuple(r for r in Recipe if r.needs_calibration)
# The ONNX opset graphs are exported at unless asked (opset 21: FP8 Q/DQ with FLOAT8E4M3FN zero points).
DEFAULT_OPSET = 21


def parse_enum(kind: type[E], value: str, what: str) -> E:
    """``kind(value)``, or an InputError naming the values ``kind`` has."""
    try:
        return kind(value)
    except ValueError:
        known = ", ".join(str(m.value) for m in kind)
        raise InputError(f"unknown {what} {value!r}: use one of {known}") from None
