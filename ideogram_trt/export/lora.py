"""The LoRA side path of a LoRA-ready conditional DiT (docs/LORA.md §2), for export.

Every targeted ``QuantLinear`` of block ``l`` gets ``(Aᵀ[l], Bᵀ[l])`` attached for the call and adds
``(x · Aᵀ[l]) · Bᵀ[l]`` to its output, with ``x`` as it arrives (before any FP8 activation Q/DQ) and the factors in
the compute dtype: the FP8 base GEMM and its weights are untouched. ``Aᵀ`` [layers, in, rank] and ``Bᵀ``
[layers, rank, out] are engine inputs, laid out as the GEMMs read them (no transposes in the plan); each block
picks its row with ``index_select`` on its own ``lora_layer`` buffer, which the stitched export
(``export.stitch``) gives every copy of the block template as an initializer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ideogram_trt.core.lora import ALL_TARGETS, LoraShape, LoraSlots
from ideogram_trt.export.quant_modules import QuantLinear
from ideogram_trt.model.configs import DiTConfig
from ideogram_trt.model.dit import Block

LAYER_BUFFER = "lora_layer"
EXAMPLE_RANK = 2  # the rank axis is traced at 2: torch.export specializes axes traced at 0 or 1


def lora_shape(config: DiTConfig) -> LoraShape:
    return LoraShape(config.num_layers, config.hidden_size, config.intermediate_size, config.adaln_dim)


def add_side_path(dit: nn.Module) -> None:
    """Give every block of ``dit`` its ``lora_layer`` index (the linears are already ``QuantLinear``s)."""
    for index, block in enumerate(dit.layers):
        block.register_buffer(LAYER_BUFFER, torch.tensor([index], dtype=torch.int64))
        for target in ALL_TARGETS:
            if not isinstance(block.get_submodule(target.value), QuantLinear):
                raise TypeError(f"layers.{index}.{target.value} is not a QuantLinear (apply the recipe first)")


def attach(block: Block, factors: Sequence[torch.Tensor]) -> None:
    """Set each targeted linear's (A, B) for the next call: ``factors`` are the engine inputs in
    ``LoraSlots.inputs`` order (A, B per target), every block's rows."""
    layer = getattr(block, LAYER_BUFFER)
    for position, target in enumerate(ALL_TARGETS):
        down, up = factors[2 * position], factors[2 * position + 1]
        linear = block.get_submodule(target.value)
        assert isinstance(linear, QuantLinear)
        linear.lora = (down.index_select(0, layer).squeeze(0), up.index_select(0, layer).squeeze(0))


def detach(block: Block) -> None:
    for target in ALL_TARGETS:
        linear = block.get_submodule(target.value)
        assert isinstance(linear, QuantLinear)
        linear.lora = None


def example_factors(slots: LoraSlots, dtype: torch.dtype, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Small random factors at ``EXAMPLE_RANK``, in ``LoraSlots.inputs`` order, for tracing."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for target in ALL_TARGETS:
        fan_in, fan_out = slots.shape.widths(target)
        layers = slots.shape.layers
        out.append((0.01 * torch.randn((layers, fan_in, EXAMPLE_RANK), generator=gen)).to(dtype))
        out.append((0.01 * torch.randn((layers, EXAMPLE_RANK, fan_out), generator=gen)).to(dtype))
    return tuple(out)
