"""One protocol for every way of running an engine set.

``encode`` runs the text encoder (once per prompt); ``generate`` runs every step of a schedule for one prompt's
images (conditional and unconditional DiT, CFG blend and Euler update in fp32), then the VAE. A backend keeps
whatever it needs between calls (sessions, device buffers, CUDA graphs); the pipeline hands it host arrays and
gets host arrays back once per call — a GPU backend synchronizes once per batch of images, never per step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ideogram_trt.core.buckets import Bucket
from ideogram_trt.core.components import Component
from ideogram_trt.core.schedule import Schedule

if TYPE_CHECKING:
    from ideogram_trt.runtime.lora import LoraFeeds

# Manifest dtype names → numpy types for host arrays (bfloat16 has none: its bytes travel as float16).
NUMPY_DTYPES = {"float32": np.float32, "float16": np.float16, "int32": np.int32}

# on_step(step_index, seconds_for_that_step); a GPU backend reports every step after the batch completes.
StepCallback = Callable[[int, float], None]


@dataclass(frozen=True)
class DenoiseInputs:
    """Everything one prompt's denoising needs, computed on the host by the pipeline (docs/MODEL.md §4.4, §4.7)."""

    latents: np.ndarray  # float32 [B, N, C] initial noise
    text_hidden: np.ndarray  # [B, T, D] this prompt's rows only (exact length: the mask-free engine)
    rope_cond: tuple[np.ndarray, np.ndarray]  # float32 [T + N, R] each
    rope_uncond: tuple[np.ndarray, np.ndarray]  # float32 [N, R] each
    bucket: Bucket
    schedule: Schedule
    # A LoRA-ready set's side-path inputs for this request (zero at rank 1 without adapters); None otherwise.
    lora: LoraFeeds | None = None


@dataclass
class Generated:
    latents: np.ndarray  # float32 [B, N, C], the final latents
    images: np.ndarray  # float32 [B, H, W, 3] in [0, 1]
    step_seconds: list[float]
    vae_seconds: float


class Backend(Protocol):
    name: str

    def encode(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """text_hidden [B, T, D] (zero on padded rows)."""
        ...

    def generate(self, inputs: DenoiseInputs, on_step: StepCallback | None = None) -> Generated:
        """Denoise from ``inputs.latents`` through every step of the schedule, then decode."""
        ...

    def run_engine(
        self, graph: Component, bucket: str | None, feeds: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """One call of one engine outside the loop (``verify``): ``feeds`` by input name, in the manifest's
        dtypes; every output by name, on the host. ``bucket`` picks the plan and profile (None: the text encoder)."""
        ...
