"""The model side of each exported component (``core.components``): the wrapper module that gives it its
contract's signature, example inputs for tracing, and the torch.export dynamic axes of the contract's symbols
(docs/ARCHITECTURE.md §4)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.export import Dim

from ideogram_trt.core import contracts as io
from ideogram_trt.core.components import Component
from ideogram_trt.core.contracts import EngineContract
from ideogram_trt.core.lora import LORA_RANK, LoraSlots, lora_contract
from ideogram_trt.core.tokenization import MAX_TEXT_TOKENS
from ideogram_trt.export.stitch import Piece
from ideogram_trt.model.checkpoint import Checkpoint
from ideogram_trt.model.configs import TEXT_TAP_LAYERS as TEXT_TAPS

# Dynamic-axis bounds: large enough for every bucket (N ≤ 128·128 at 2048², grid sides ≤ 128) and prompt.
MAX_BATCH = 64
MAX_IMAGE_TOKENS = (2048 // io.PIXELS_PER_TOKEN) ** 2
MAX_GRID_SIDE = 2048 // io.PIXELS_PER_TOKEN


class TextEncoderGraph(nn.Module):
    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(input_ids, attention_mask)


class DiTCondGraph(nn.Module):
    def __init__(self, dit: nn.Module) -> None:
        super().__init__()
        self.dit = dit

    def forward(
        self,
        latents: torch.Tensor,
        text_hidden: torch.Tensor,
        timestep: torch.Tensor,
        rope_cos: torch.Tensor,
        rope_sin: torch.Tensor,
    ) -> torch.Tensor:
        return self.dit(latents, timestep, rope_cos, rope_sin, text_hidden=text_hidden)


class DiTCondMaskedGraph(nn.Module):
    def __init__(self, dit: nn.Module) -> None:
        super().__init__()
        self.dit = dit

    def forward(
        self,
        latents: torch.Tensor,
        text_hidden: torch.Tensor,
        text_mask: torch.Tensor,
        timestep: torch.Tensor,
        rope_cos: torch.Tensor,
        rope_sin: torch.Tensor,
    ) -> torch.Tensor:
        return self.dit(latents, timestep, rope_cos, rope_sin, text_hidden=text_hidden, text_mask=text_mask)


class DiTUncondGraph(nn.Module):
    def __init__(self, dit: nn.Module) -> None:
        super().__init__()
        self.dit = dit

    def forward(
        self, latents: torch.Tensor, timestep: torch.Tensor, rope_cos: torch.Tensor, rope_sin: torch.Tensor
    ) -> torch.Tensor:
        return self.dit(latents, timestep, rope_cos, rope_sin)


class VaeDecoderGraph(nn.Module):
    def __init__(self, vae: nn.Module) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.vae(latents)


class LoraDiTGraph(nn.Module):
    """A conditional DiT with the LoRA side path (docs/LORA.md §2): the contract's inputs, then the factors in
    ``LoraSlots.inputs`` order (or none: the base DiT). The PyTorch form of what the stitched export traces block
    by block, and ``verify``'s reference of a LoRA-ready engine."""

    def __init__(self, dit: nn.Module, input_names: tuple[str, ...]) -> None:
        super().__init__()
        self.dit = dit
        self.input_names = input_names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        from ideogram_trt.export.lora import attach, detach

        count = len(self.input_names)
        named, factors = dict(zip(self.input_names, inputs[:count], strict=True)), inputs[count:]
        h, adaln, cos, sin, key_mask = self.dit.embed(**named)
        for block in self.dit.layers:
            if factors:  # none given: the base DiT
                attach(block, factors)
            h = block(h, adaln, cos, sin, key_mask)
            detach(block)
        return self.dit.head(h, adaln, named[io.LATENTS].shape[1])


WRAPPERS: dict[Component, Callable[[nn.Module], nn.Module]] = {
    Component.TEXT_ENCODER: TextEncoderGraph,
    Component.DIT_COND: DiTCondGraph,
    Component.DIT_COND_MASKED: DiTCondMaskedGraph,
    Component.DIT_UNCOND: DiTUncondGraph,
    Component.VAE_DECODER: VaeDecoderGraph,
}


@dataclass(frozen=True)
class Sizes:
    """Concrete sizes for example inputs; the exporter traces with distinct values so no axis specializes."""

    batch: int = 2
    text: int = 5
    grid_h: int = 3
    grid_w: int = 4

    @property
    def image_tokens(self) -> int:
        return self.grid_h * self.grid_w


def example_inputs(
    graph: Component,
    checkpoint: Checkpoint,
    dtype: torch.dtype,
    sizes: Sizes = Sizes(),
    seed: int = 0,
    lora: LoraSlots | None = None,
) -> tuple[torch.Tensor, ...]:
    """Random inputs in contract order, in the contract's dtypes (``COMPUTE`` = ``dtype``); with ``lora``, the
    side path's factors follow (``export.lora.example_factors``)."""
    base = _example_inputs(graph, checkpoint, dtype, sizes, seed)
    if lora is None:
        return base
    from ideogram_trt.export.lora import example_factors

    return (*base, *example_factors(lora, dtype, seed))


def _example_inputs(
    graph: Component, checkpoint: Checkpoint, dtype: torch.dtype, sizes: Sizes, seed: int
) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    b, t, n = sizes.batch, sizes.text, sizes.image_tokens
    dit = checkpoint.transformer
    c, d, r = dit.in_channels, dit.hidden_size, dit.attention_head_dim

    def randn(*shape: int, dt: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.randn(shape, generator=gen).to(dt)

    if graph is Component.TEXT_ENCODER:
        ids = torch.randint(0, checkpoint.text_encoder.vocab_size, (b, t), generator=gen, dtype=torch.int32)
        mask = torch.ones(b, t, dtype=torch.int32)
        mask[0, :2] = 0  # one left-padded row
        return ids, mask
    if graph is Component.VAE_DECODER:
        return (randn(b, sizes.grid_h, sizes.grid_w, checkpoint.vae.packed_channels),)
    timestep = torch.rand(b, generator=gen)
    if graph is Component.DIT_UNCOND:
        return randn(b, n, c), timestep, randn(n, r), randn(n, r)
    if graph is Component.DIT_COND:
        return randn(b, n, c), randn(b, t, d, dt=dtype), timestep, randn(t + n, r), randn(t + n, r)
    mask = torch.ones(b, t, dtype=torch.int32)
    mask[0, :2] = 0
    return randn(b, n, c), randn(b, t, d, dt=dtype), mask, timestep, randn(b, t + n, r), randn(b, t + n, r)


def dynamic_shapes(graph: Component, lora: LoraSlots | None = None) -> dict[str, dict[int, object]]:
    """torch.export dynamic axes per input, in input order (the ONNX exporter pairs them up by position), from
    the contract's symbols; static axes (C, D, R, digits) get none. The RoPE length T+N is a sum of two axes,
    which torch.export cannot declare; it is inferred (``Dim.AUTO``) and renamed to ``T+N`` in the saved graph."""
    dims = {
        "B": Dim("B", min=1, max=MAX_BATCH),
        "T": Dim("T", min=1, max=MAX_TEXT_TOKENS),
        "N": Dim("N", min=1, max=MAX_IMAGE_TOKENS),
        "GH": Dim("GH", min=1, max=MAX_GRID_SIDE),
        "GW": Dim("GW", min=1, max=MAX_GRID_SIDE),
        "T+N": Dim.AUTO,
    }
    if lora is not None:
        dims[LORA_RANK] = Dim(LORA_RANK, min=1, max=lora.max_rank)
    return {
        spec.name: {axis: dims[symbol] for axis, symbol in enumerate(spec.shape) if symbol in dims}
        for spec in contract_of(graph, lora).inputs
    }


def contract_of(graph: Component, lora: LoraSlots | None) -> EngineContract:
    """The graph's engine contract; a LoRA-ready conditional DiT's adds the side path's inputs."""
    return graph.spec.contract if lora is None else lora_contract(graph.spec.contract, lora)


# --- Deep graphs are exported as prefix + one traced block per structure + suffix (see export.stitch). -------


class _DiTPrefix(nn.Module):
    def __init__(self, dit: nn.Module, input_names: tuple[str, ...], factors: int = 0) -> None:
        super().__init__()
        self.dit = dit
        self.input_names = input_names
        self.factors = factors  # LoRA factors after the contract's inputs: passed through to every block

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        count = len(inputs) - self.factors
        named = dict(zip(self.input_names[:count], inputs[:count], strict=True))  # contract order → embed's keywords
        return (*(t for t in self.dit.embed(**named) if t is not None), *inputs[count:])


class _DiTBlock(nn.Module):
    def __init__(self, block: nn.Module, masked: bool = False, factors: int = 0) -> None:
        super().__init__()
        self.block = block
        self.masked, self.factors = masked, factors

    def forward(self, h: torch.Tensor, adaln: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        count = len(rest) - self.factors
        cos, sin, key_mask = rest[:count] if self.masked else (*rest[:count], None)
        if not self.factors:
            return self.block(h, adaln, cos, sin, key_mask)
        from ideogram_trt.export.lora import attach, detach

        attach(self.block, rest[count:])
        out = self.block(h, adaln, cos, sin, key_mask)
        detach(self.block)
        return out


class _DiTSuffix(nn.Module):
    def __init__(self, dit: nn.Module) -> None:
        super().__init__()
        self.dit = dit

    def forward(self, h: torch.Tensor, adaln: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        return self.dit.head(h, adaln, latents.shape[1])


class _TextPrefix(nn.Module):
    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.encoder.embed(input_ids, attention_mask)


class _TextLayer(nn.Module):
    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.block = layer

    def forward(self, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.block(h, attention_mask=mask, position_embeddings=(cos, sin))


class _TextSuffix(nn.Module):
    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, *taps_and_mask: torch.Tensor) -> torch.Tensor:
        *taps, attention_mask = taps_and_mask
        return self.encoder.project(list(taps), attention_mask)


@dataclass(frozen=True)
class Stack:
    """How one deep graph splits: the prefix piece, the blocks (each wrapped as ``block``), the suffix piece,
    where the suffix's inputs come from, and the blocks' parameter-name prefix in the model."""

    prefix: Piece
    blocks: list[nn.Module]
    block_inputs: tuple[str, ...]
    block_shapes: dict[str, dict[int, object]]
    suffix_module: nn.Module
    suffix_input_names: tuple[str, ...]
    suffix_shapes: dict[str, dict[int, object]]
    suffix_sources: list[str | int]
    layer_name: str


def stack_for(
    graph: Component, wrapped: nn.Module, inputs: tuple[torch.Tensor, ...], lora: LoraSlots | None = None
) -> Stack | None:
    """The split of ``graph`` (its wrapper module from ``WRAPPERS``, or a ``LoraDiTGraph``), or None for graphs
    traced whole."""
    batch = Dim("B", min=1, max=MAX_BATCH)
    contract = contract_of(graph, lora)
    prefix_shapes = dynamic_shapes(graph, lora)
    if graph is Component.TEXT_ENCODER:
        encoder = next(iter(wrapped.children()))
        text = Dim("T", min=1, max=MAX_TEXT_TOKENS)
        seq = {0: batch, 1: text}
        taps = tuple(f"tap_{k}" for k in range(len(TEXT_TAPS)))
        return Stack(
            prefix=Piece(
                _TextPrefix(encoder), inputs, contract.input_names, ("h", "cos", "sin", "mask"), prefix_shapes
            ),
            blocks=[_TextLayer(encoder.language_model.layers[i]) for i in range(max(TEXT_TAPS) + 1)],
            block_inputs=("h", "cos", "sin", "mask"),
            block_shapes={"h": seq, "cos": seq, "sin": seq, "mask": {0: batch, 2: text, 3: text}},
            suffix_module=_TextSuffix(encoder),
            suffix_input_names=(*taps, io.ATTENTION_MASK),
            suffix_shapes={**{t: seq for t in taps}, io.ATTENTION_MASK: seq},
            suffix_sources=[*TEXT_TAPS, io.ATTENTION_MASK],
            layer_name="language_model.layers",
        )
    if graph in (Component.DIT_COND, Component.DIT_COND_MASKED, Component.DIT_UNCOND):
        dit = next(iter(wrapped.children()))
        length = Dim("L", min=1, max=MAX_TEXT_TOKENS + MAX_IMAGE_TOKENS)
        seq = {0: batch, 1: length}
        masked = graph is Component.DIT_COND_MASKED
        rope = {0: batch, 1: length} if masked else {0: length}
        factor_names = () if lora is None else lora.input_names
        block_inputs = ("h", "adaln", "cos", "sin", *(("key_mask",) if masked else ()), *factor_names)
        block_shapes = {"h": seq, "adaln": {0: batch}, "cos": rope, "sin": rope}
        if masked:
            block_shapes["key_mask"] = {0: batch, 3: length}
        block_shapes |= {name: prefix_shapes[name] for name in factor_names}
        tokens = Dim("N", min=1, max=MAX_IMAGE_TOKENS)
        factors = len(factor_names)
        return Stack(
            prefix=Piece(
                _DiTPrefix(dit, contract.input_names, factors),
                inputs,
                contract.input_names,
                block_inputs,
                prefix_shapes,
            ),
            blocks=[_DiTBlock(block, masked, factors) for block in dit.layers],
            block_inputs=block_inputs,
            block_shapes=block_shapes,
            suffix_module=_DiTSuffix(dit),
            suffix_input_names=("h", "adaln", io.LATENTS),
            suffix_shapes={"h": seq, "adaln": {0: batch}, io.LATENTS: {0: batch, 1: tokens}},
            suffix_sources=[len(dit.layers) - 1, "extra:0", io.LATENTS],
            layer_name="layers",
        )
    return None
