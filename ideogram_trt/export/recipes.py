"""Precision recipes (docs/ARCHITECTURE.md §5) and graph dtypes, as declarative configs.

The recipes by name (``Recipe``, its help and defaults) are torch-free, in ``ideogram_trt.core.recipes``; they
are re-exported here with the torch side: graph dtypes and the per-component quantization plans.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from enum import Enum

import torch

from ideogram_trt.core.components import Component
from ideogram_trt.core.recipes import DEFAULT_RECIPE, Recipe, parse_enum

__all__ = [
    "DEFAULT_RECIPE",
    "DIT_ACTIVATION_QUANT",
    "DIT_EXCLUDED",
    "TEXT_ENCODER_ACTIVATION_QUANT",
    "GraphDType",
    "QuantPlan",
    "Recipe",
    "parse_enum",
    "quant_plan",
]


class GraphDType(str, Enum):
    BF16 = "bf16"  # for TensorRT
    FP16 = "fp16"
    FP32 = "fp32"  # for ONNX Runtime on the CPU (it has no bf16 kernels)

    @property
    def torch(self) -> torch.dtype:
        return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[self.value]


# The GEMMs whose inputs get activation Q/DQ under the fp8 recipe: 93% of the DiT's parameters and nearly all
# per-token FLOPs (docs/MODEL.md §12.4). Everything else stays out — input_proj, llm_cond_proj, t_embedding.*,
# adaln_proj, *.adaln_modulation, final_layer.* — the exclusion list the NVFP4 release uses (docs/MODEL.md §8.3).
DIT_ACTIVATION_QUANT = (
    "layers.*.attention.qkv",
    "layers.*.attention.o",
    "layers.*.feed_forward.w1",
    "layers.*.feed_forward.w2",
    "layers.*.feed_forward.w3",
)
DIT_EXCLUDED = (
    "input_proj",
    "llm_cond_proj",
    "t_embedding.*",
    "adaln_proj",
    "*adaln_modulation",
    "final_layer.*",
)
TEXT_ENCODER_ACTIVATION_QUANT = (
    "language_model.layers.*.self_attn.q_proj",
    "language_model.layers.*.self_attn.k_proj",
    "language_model.layers.*.self_attn.v_proj",
    "language_model.layers.*.self_attn.o_proj",
    "language_model.layers.*.mlp.gate_proj",
    "language_model.layers.*.mlp.up_proj",
    "language_model.layers.*.mlp.down_proj",
)


@dataclass(frozen=True)
class QuantPlan:
    """Which linears of one component get activation Q/DQ, and whether attention is quantized."""

    activation_patterns: tuple[str, ...] = ()
    excluded_patterns: tuple[str, ...] = ()
    quantize_attention: bool = False

    def quantizes_input_of(self, linear_name: str) -> bool:
        if any(fnmatch.fnmatchcase(linear_name, p) for p in self.excluded_patterns):
            return False
        return any(fnmatch.fnmatchcase(linear_name, p) for p in self.activation_patterns)

    @property
    def needs_calibration(self) -> bool:
        return bool(self.activation_patterns) or self.quantize_attention


def quant_plan(
    component: Component,
    recipe: Recipe,
    quantize_attention: bool = False,
    quantize_text_encoder: bool = False,
    extra_excluded: tuple[str, ...] = (),
) -> QuantPlan:
    """The activation-quantization plan of ``component`` under ``recipe`` (weights follow the recipe alone)."""
    if recipe is not Recipe.FP8 or component is Component.VAE_DECODER:
        return QuantPlan()
    if component is Component.TEXT_ENCODER:
        # The text encoder runs once per prompt; it stays weight-only unless asked (docs/ARCHITECTURE.md §5).
        if not quantize_text_encoder:
            return QuantPlan()
        return QuantPlan(TEXT_ENCODER_ACTIVATION_QUANT, extra_excluded)
    return QuantPlan(DIT_ACTIVATION_QUANT, DIT_EXCLUDED + extra_excluded, quantize_attention)
