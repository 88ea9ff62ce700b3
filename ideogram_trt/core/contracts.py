"""Engine I/O contracts (docs/ARCHITECTURE.md §4): the names, dtypes and shapes every stage uses for the four engines.

Dimension symbols: ``B`` batch, ``T`` text tokens, ``N`` image tokens (= H/16 · W/16), ``GH``/``GW`` the token
grid, ``H``/``W`` pixels, ``C`` latent channels per token (128 in the release), ``D`` DiT hidden size (4608),
``R`` the RoPE width (= DiT head dim, 256). ``COMPUTE`` is the graph's compute dtype (bf16 for TensorRT,
fp32/fp16 for ONNX Runtime).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class DType(str, Enum):
    FLOAT32 = "float32"
    INT32 = "int32"
    COMPUTE = "compute"


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: DType
    shape: tuple[str, ...]


@dataclass(frozen=True)
class EngineContract:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.outputs)


# Tensor names, shared by the PyTorch modules, the ONNX graphs, the engines and the runtime.
INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
TEXT_HIDDEN = "text_hidden"
LATENTS = "latents"
TEXT_MASK = "text_mask"
TIMESTEP = "timestep"
ROPE_COS = "rope_cos"
ROPE_SIN = "rope_sin"
VELOCITY = "velocity"
IMAGE = "image"
VELOCITY_COND = "velocity_cond"
VELOCITY_UNCOND = "velocity_uncond"
GUIDANCE = "guidance"
STEP = "step"
LATENTS_NEXT = "latents_next"

TEXT_ENCODER = EngineContract(
    inputs=(
        TensorSpec(INPUT_IDS, DType.INT32, ("B", "T")),
        TensorSpec(ATTENTION_MASK, DType.INT32, ("B", "T")),  # left padding, 1 on real tokens
    ),
    # Ends with the conditional DiT's llm_cond_norm + llm_cond_proj (docs/MODEL.md §4.9): the 53,248-wide features
    # never leave the engine; padded rows are zero.
    outputs=(TensorSpec(TEXT_HIDDEN, DType.COMPUTE, ("B", "T", "D")),),
)

# A single prompt (or prompts of one length) runs at its exact text length without a mask: no padding, and the
# attention kernel runs 2.2-2.8x faster unmasked on the H100 (docs/ARCHITECTURE.md §4).
DIT_COND = EngineContract(
    inputs=(
        TensorSpec(LATENTS, DType.FLOAT32, ("B", "N", "C")),
        TensorSpec(TEXT_HIDDEN, DType.COMPUTE, ("B", "T", "D")),
        TensorSpec(TIMESTEP, DType.FLOAT32, ("B",)),
        TensorSpec(ROPE_COS, DType.FLOAT32, ("T+N", "R")),
        TensorSpec(ROPE_SIN, DType.FLOAT32, ("T+N", "R")),
    ),
    outputs=(TensorSpec(VELOCITY, DType.FLOAT32, ("B", "N", "C")),),
)

# Prompts of different lengths batched together: text left-padded to T, a key-padding mask, and RoPE tables per
# row (each row's text-to-image distances depend on its own length; see core.rope.padded_sequence_positions).
DIT_COND_MASKED = EngineContract(
    inputs=(
        TensorSpec(LATENTS, DType.FLOAT32, ("B", "N", "C")),
        TensorSpec(TEXT_HIDDEN, DType.COMPUTE, ("B", "T", "D")),
        TensorSpec(TEXT_MASK, DType.INT32, ("B", "T")),
        TensorSpec(TIMESTEP, DType.FLOAT32, ("B",)),
        TensorSpec(ROPE_COS, DType.FLOAT32, ("B", "T+N", "R")),
        TensorSpec(ROPE_SIN, DType.FLOAT32, ("B", "T+N", "R")),
    ),
    outputs=(TensorSpec(VELOCITY, DType.FLOAT32, ("B", "N", "C")),),
)

DIT_UNCOND = EngineContract(
    inputs=(
        TensorSpec(LATENTS, DType.FLOAT32, ("B", "N", "C")),
        TensorSpec(TIMESTEP, DType.FLOAT32, ("B",)),
        TensorSpec(ROPE_COS, DType.FLOAT32, ("N", "R")),
        TensorSpec(ROPE_SIN, DType.FLOAT32, ("N", "R")),
    ),
    outputs=(TensorSpec(VELOCITY, DType.FLOAT32, ("B", "N", "C")),),
)

# The latents arrive on their token grid: [B, N, C] and [B, GH, GW, C] are the same memory (tokens are
# row-major), and the grid is what tells 1152x896 from 896x1152, which share N.
VAE_DECODER = EngineContract(
    inputs=(TensorSpec(LATENTS, DType.FLOAT32, ("B", "GH", "GW", "C")),),
    outputs=(TensorSpec(IMAGE, DType.FLOAT32, ("B", "H", "W", "3")),),  # in [0, 1]
)

# TensorRT sets only: one step's CFG blend and Euler update on the GPU, so latents never leave it.
SAMPLER = EngineContract(
    inputs=(
        TensorSpec(LATENTS, DType.FLOAT32, ("B", "N", "C")),
        TensorSpec(VELOCITY_COND, DType.FLOAT32, ("B", "N", "C")),
        TensorSpec(VELOCITY_UNCOND, DType.FLOAT32, ("B", "N", "C")),
        TensorSpec(GUIDANCE, DType.FLOAT32, ("1",)),
        TensorSpec(STEP, DType.FLOAT32, ("1",)),
    ),
    outputs=(TensorSpec(LATENTS_NEXT, DType.FLOAT32, ("B", "N", "C")),),
)

# docs/MODEL.md §5.6, §6: 8x VAE downsampling times the 2x2 patch.
PIXELS_PER_TOKEN = 16
