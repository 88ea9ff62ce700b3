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
from ideogram_trt.model.checkpoint import TRANSFORMER, UNCONDITIONAL_TRANSFORMER, Checkpoint

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
