"""One export target per engine graph: how to build its module from a checkpoint, its example inputs and its
dynamic axes, all following the contracts of ``core.contracts`` (DESIGN.md §4)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import torch
from torch import nn
from torch.export import Dim

from ideogram_trt.core import contracts as io
from ideogram_trt.core.contracts import Component, EngineContract
from ideogram_trt.core.tokenization import MAX_TEXT_TOKENS
from ideogram_trt.export.stitch import Piece
from ideogram_trt.model.checkpoint import TRANSFORMER, UNCONDITIONAL_TRANSFORMER, Checkpoint
from ideogram_trt.model.configs import TEXT_TAP_LAYERS as TEXT_TAPS

# Dynamic-axis bounds: large enough for every bucket (N ≤ 128·128 at 2048², grid sides ≤ 128) and prompt.
MAX_BATCH = 64
MAX_IMAGE_TOKENS = (2048 // io.PIXELS_PER_TOKEN) ** 2
MAX_GRID_SIDE = 2048 // io.PIXELS_PER_TOKEN


class Graph(str, Enum):
    TEXT_ENCODER = "text_encoder"
    DIT_COND = "dit_cond"
    DIT_COND_MASKED = "dit_cond_masked"  # optional: mixed-length prompt batches in one call
    DIT_UNCOND = "dit_uncond"
    VAE_DECODER = "vae_decoder"

    @property
    def contract(self) -> EngineContract:
        return {
            Graph.TEXT_ENCODER: io.TEXT_ENCODER,
            Graph.DIT_COND: io.DIT_COND,
            Graph.DIT_COND_MASKED: io.DIT_COND_MASKED,
            Graph.DIT_UNCOND: io.DIT_UNCOND,
            Graph.VAE_DECODER: io.VAE_DECODER,
        }[self]

    @property
    def component(self) -> Component:
        return self.contract.component

    @property
    def checkpoint_parts(self) -> tuple[str, ...]:
        """The checkpoint folders whose weights end up in this graph."""
        return {
            Graph.TEXT_ENCODER: ("text_encoder", TRANSFORMER),
            Graph.DIT_COND: (TRANSFORMER,),
            Graph.DIT_COND_MASKED: (TRANSFORMER,),
            Graph.DIT_UNCOND: (UNCONDITIONAL_TRANSFORMER,),
            Graph.VAE_DECODER: ("vae",),
        }[self]


DEFAULT_GRAPHS = (Graph.TEXT_ENCODER, Graph.DIT_COND, Graph.DIT_UNCOND, Graph.VAE_DECODER)


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


WRAPPERS: dict[Graph, Callable[[nn.Module], nn.Module]] = {
    Graph.TEXT_ENCODER: TextEncoderGraph,
    Graph.DIT_COND: DiTCondGraph,
    Graph.DIT_COND_MASKED: DiTCondMaskedGraph,
    Graph.DIT_UNCOND: DiTUncondGraph,
    Graph.VAE_DECODER: VaeDecoderGraph,
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
    graph: Graph, checkpoint: Checkpoint, dtype: torch.dtype, sizes: Sizes = Sizes(), seed: int = 0
) -> tuple[torch.Tensor, ...]:
    """Random inputs in contract order, in the contract's dtypes (``COMPUTE`` = ``dtype``)."""
    gen = torch.Generator().manual_seed(seed)
    b, t, n = sizes.batch, sizes.text, sizes.image_tokens
    dit = checkpoint.transformer
    c, d, r = dit.in_channels, dit.hidden_size, dit.attention_head_dim

    def randn(*shape: int, dt: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.randn(shape, generator=gen).to(dt)

    if graph is Graph.TEXT_ENCODER:
        ids = torch.randint(0, checkpoint.text_encoder.vocab_size, (b, t), generator=gen, dtype=torch.int32)
        mask = torch.ones(b, t, dtype=torch.int32)
        mask[0, :2] = 0  # one left-padded row
        return ids, mask
    if graph is Graph.VAE_DECODER:
        return (randn(b, sizes.grid_h, sizes.grid_w, checkpoint.vae.packed_channels),)
    timestep = torch.rand(b, generator=gen)
    if graph is Graph.DIT_UNCOND:
        return randn(b, n, c), timestep, randn(n, r), randn(n, r)
    if graph is Graph.DIT_COND:
        return randn(b, n, c), randn(b, t, d, dt=dtype), timestep, randn(t + n, r), randn(t + n, r)
    mask = torch.ones(b, t, dtype=torch.int32)
    mask[0, :2] = 0
    return randn(b, n, c), randn(b, t, d, dt=dtype), mask, timestep, randn(b, t + n, r), randn(b, t + n, r)


def dynamic_shapes(graph: Graph) -> dict[str, dict[int, object]]:
    """torch.export dynamic axes per input, in input order (the ONNX exporter pairs them up by position). The
    RoPE length T+N is a sum of two axes, which torch.export cannot declare; it is inferred (``Dim.AUTO``) and
    renamed to ``T+N`` in the saved graph."""
    shapes = _dynamic_axes(graph)
    return {name: shapes[name] for name in graph.contract.input_names}


def _dynamic_axes(graph: Graph) -> dict[str, dict[int, object]]:
    batch = Dim("B", min=1, max=MAX_BATCH)
    text = Dim("T", min=1, max=MAX_TEXT_TOKENS)
    tokens = Dim("N", min=1, max=MAX_IMAGE_TOKENS)
    if graph is Graph.TEXT_ENCODER:
        return {io.INPUT_IDS: {0: batch, 1: text}, io.ATTENTION_MASK: {0: batch, 1: text}}
    if graph is Graph.VAE_DECODER:
        grid_h, grid_w = Dim("GH", min=1, max=MAX_GRID_SIDE), Dim("GW", min=1, max=MAX_GRID_SIDE)
        return {io.LATENTS: {0: batch, 1: grid_h, 2: grid_w}}
    if graph is Graph.DIT_UNCOND:
        return {
            io.LATENTS: {0: batch, 1: tokens},
            io.TIMESTEP: {0: batch},
            io.ROPE_COS: {0: tokens},
            io.ROPE_SIN: {0: tokens},
        }
    shapes: dict[str, dict[int, object]] = {
        io.LATENTS: {0: batch, 1: tokens},
        io.TEXT_HIDDEN: {0: batch, 1: text},
        io.TIMESTEP: {0: batch},
    }
    if graph is Graph.DIT_COND:
        shapes[io.ROPE_COS] = shapes[io.ROPE_SIN] = {0: Dim.AUTO}
    else:
        shapes[io.TEXT_MASK] = {0: batch, 1: text}
        shapes[io.ROPE_COS] = shapes[io.ROPE_SIN] = {0: batch, 1: Dim.AUTO}
    return shapes


# --- Deep graphs are exported as prefix + one traced block per structure + suffix (see export.stitch). -------


class _DiTPrefix(nn.Module):
    def __init__(self, dit: nn.Module, input_names: tuple[str, ...]) -> None:
        super().__init__()
        self.dit = dit
        self.input_names = input_names

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        named = dict(zip(self.input_names, inputs, strict=True))  # contract order → embed's keywords
        return tuple(t for t in self.dit.embed(**named) if t is not None)


class _DiTBlock(nn.Module):
    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.block = block

    def forward(self, h: torch.Tensor, adaln: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        cos, sin, key_mask = rest if len(rest) == 3 else (*rest, None)
        return self.block(h, adaln, cos, sin, key_mask)


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


def stack_for(graph: Graph, wrapped: nn.Module, inputs: tuple[torch.Tensor, ...]) -> Stack | None:
    """The split of ``graph`` (its wrapper module from ``WRAPPERS``), or None for graphs traced whole."""
    batch = Dim("B", min=1, max=MAX_BATCH)
    contract = graph.contract
    prefix_shapes = dynamic_shapes(graph)
    if graph is Graph.TEXT_ENCODER:
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
    if graph in (Graph.DIT_COND, Graph.DIT_COND_MASKED, Graph.DIT_UNCOND):
        dit = next(iter(wrapped.children()))
        length = Dim("L", min=1, max=MAX_TEXT_TOKENS + MAX_IMAGE_TOKENS)
        seq = {0: batch, 1: length}
        masked = graph is Graph.DIT_COND_MASKED
        rope = {0: batch, 1: length} if masked else {0: length}
        block_inputs = ("h", "adaln", "cos", "sin", *(("key_mask",) if masked else ()))
        block_shapes = {"h": seq, "adaln": {0: batch}, "cos": rope, "sin": rope}
        if masked:
            block_shapes["key_mask"] = {0: batch, 3: length}
        tokens = Dim("N", min=1, max=MAX_IMAGE_TOKENS)
        return Stack(
            prefix=Piece(
                _DiTPrefix(dit, contract.input_names), inputs, contract.input_names, block_inputs, prefix_shapes
            ),
            blocks=[_DiTBlock(block) for block in dit.layers],
            block_inputs=block_inputs,
            block_shapes=block_shapes,
            suffix_module=_DiTSuffix(dit),
            suffix_input_names=("h", "adaln", io.LATENTS),
            suffix_shapes={"h": seq, "adaln": {0: batch}, io.LATENTS: {0: batch, 1: tokens}},
            suffix_sources=[len(dit.layers) - 1, "extra:0", io.LATENTS],
            layer_name="layers",
        )
    return None
