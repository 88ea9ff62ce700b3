"""The PyTorch side of ``verify``: the checkpoint's own modules, built under the engine set's recipe with the same
fake quantization (``export.build_module``, the export's source), in fp32, on one torch device.

It never reads the engine set's graphs or plans, so an engine built from the wrong recipe, checkpoint or
calibration cannot agree with it. One module is held at a time (a full-size fp32 DiT is 37 GB), except the two
DiTs of a whole request. (``tools/verify_bounds.py`` also builds it in bf16 and fp16, to estimate what those dtypes
cost against fp32: docs/VERIFY.md §3.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ideogram_trt.core import rope
from ideogram_trt.core.components import Component
from ideogram_trt.core.contracts import TIMESTEP, DType
from ideogram_trt.core.lora import LoraSlots
from ideogram_trt.core.noise import initial_latents
from ideogram_trt.core.recipes import Recipe
from ideogram_trt.core.sampling import denoise
from ideogram_trt.core.schedule import Schedule
from ideogram_trt.core.sidecar import ExportSettings
from ideogram_trt.core.tokenization import PromptTokenizer
from ideogram_trt.export.calibration import Calibration
from ideogram_trt.export.exporter import build_module
from ideogram_trt.export.graphs import LoraDiTGraph, contract_of
from ideogram_trt.export.lora import add_side_path
from ideogram_trt.export.recipes import quant_plan
from ideogram_trt.model.checkpoint import Checkpoint
from ideogram_trt.model.dit import rope_inv_freq


@dataclass(frozen=True)
class ReferenceRun:
    latents: np.ndarray  # float32 [P, N, C], one image per prompt
    images: np.ndarray  # float32 [P, H, W, 3] in [0, 1]


class Reference:
    def __init__(
        self,
        checkpoint: Checkpoint,
        recipe: Recipe,
        settings: ExportSettings,
        calibration: Calibration | None,
        device: str,
        dtype: torch.dtype = torch.float32,
        timestep_dtype: torch.dtype | None = None,
        lora: LoraSlots | None = None,
    ) -> None:
        """``timestep_dtype``: the engines' compute dtype. The DiT casts its timestep to the compute dtype before
        the sinusoid of 1e4·t (docs/MODEL.md §5.2): in bf16 that moves the angles by radians, by design, so the
        reference of a bf16 engine rounds its timesteps through bf16 too, and is fp32 everywhere else."""
        self.checkpoint, self.recipe, self.settings = checkpoint, recipe, settings
        self.calibration, self.device, self.dtype = calibration, torch.device(device), dtype
        self.timestep_dtype = timestep_dtype
        self.lora = lora  # a LoRA-ready set's side path: the conditional DiTs take its factors too
        # fp32 means fp32: CUDA convolutions default to TF32 (10-bit mantissas), which moved the VAE 50 dB.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        self._held: dict[Component, nn.Module] = {}
        config = checkpoint.transformer
        self.inv_freq, self.mrope_section = rope_inv_freq(config), tuple(config.mrope_section)

    # --- modules ----------------------------------------------------------------------------------------------

    def module(self, graph: Component, keep: Sequence[Component] = ()) -> nn.Module:
        """``graph``'s module, built on first use; every held module not in ``keep`` is let go first."""
        for other in [g for g in self._held if g is not graph and g not in keep]:
            del self._held[other]
        if graph not in self._held:
            self._free()
            plan = quant_plan(
                graph.spec.serves,
                self.recipe,
                self.settings.quantize_attention,
                self.settings.quantize_text_encoder,
                tuple(self.settings.excluded),
            )
            amax = None
            if plan.needs_calibration:
                assert self.calibration is not None, "verify asks for the calibration file before it gets here"
                amax = self.calibration.amax[graph.spec.serves.value]
            module = build_module(self.checkpoint, graph, self.recipe, self.dtype, plan, amax)
            if self._lora_of(graph) is not None:
                dit = next(iter(module.children()))
                add_side_path(dit)
                module = LoraDiTGraph(dit, graph.spec.contract.input_names).eval()
            self._held[graph] = module.to(self.device)
        return self._held[graph]

    def release(self) -> None:
        self._held.clear()
        self._free()

    def _free(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    @torch.no_grad()
    def run(self, graph: Component, feeds: Sequence[np.ndarray]) -> np.ndarray:
        """One call of ``graph``'s module on inputs in its contract's order; float32 on the host."""
        specs = contract_of(graph, self._lora_of(graph)).inputs
        tensors = [self._input(x, spec.dtype) for x, spec in zip(feeds, specs, strict=True)]
        tensors = [self._rounded(t) if spec.name == TIMESTEP else t for t, spec in zip(tensors, specs, strict=True)]
        out = self.module(graph)(*tensors)
        return np.asarray(out.float().cpu().numpy(), dtype=np.float32)

    def _lora_of(self, graph: Component) -> LoraSlots | None:
        return self.lora if graph.spec.serves is Component.DIT_COND else None

    def _input(self, array: np.ndarray, dtype: DType) -> torch.Tensor:
        """A host array as the module takes it: the compute dtype where the contract says so (the graph's
        ``text_hidden``), as given otherwise (float32 latents and tables, int32 ids)."""
        tensor = torch.from_numpy(np.ascontiguousarray(array)).to(self.device)
        return tensor.to(self.dtype) if dtype is DType.COMPUTE else tensor

    # --- RoPE tables (from the checkpoint's config, not the manifest's) ----------------------------------------

    def tables(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return rope.rope_tables(positions, self.inv_freq, self.mrope_section)

    def cond_tables(self, text: int, grid: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        return self.tables(rope.sequence_positions(text, *grid))

    def image_tables(self, grid: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        return self.tables(rope.image_positions(*grid))

    # --- a whole request ---------------------------------------------------------------------------------------

    @torch.no_grad()
    def generate(
        self, prompts: list[str], grid: tuple[int, int], schedule: Schedule, seed: int, max_text_tokens: int
    ) -> ReferenceRun:
        """One image per prompt, as ``Pipeline`` makes them: the checkpoint's tokenizer, every prompt encoded in
        one padded batch, each denoised at its exact length from the noise of seed + its index, then decoded."""
        tokenizer = PromptTokenizer.from_dir(self.checkpoint.tokenizer_dir)
        batch = tokenizer.batch(prompts, max_tokens=max_text_tokens)
        hidden = self.run(Component.TEXT_ENCODER, [batch.input_ids, batch.attention_mask])
        channels = self.checkpoint.transformer.in_channels
        tokens = grid[0] * grid[1]
        has_uncond = self.checkpoint.has_unconditional
        dits = [Component.DIT_COND, *([Component.DIT_UNCOND] if has_uncond else [])]
        cond_dit = self.module(Component.DIT_COND, keep=dits)
        uncond_dit = self.module(Component.DIT_UNCOND, keep=dits) if has_uncond else None
        uncond_cos, uncond_sin = (self._tensor(t) for t in self.image_tables(grid))
        finals = []
        for index, length in enumerate(batch.lengths):
            rows = self._input(hidden[index : index + 1, batch.text_tokens - int(length) :], DType.COMPUTE)
            cos, sin = (self._tensor(t) for t in self.cond_tables(int(length), grid))
            noise = self._tensor(initial_latents(seed + index, 1, tokens, channels))

            def cond(z: torch.Tensor, t: float, rows: torch.Tensor = rows, cos=cos, sin=sin) -> torch.Tensor:  # type: ignore[no-untyped-def]
                velocity: torch.Tensor = cond_dit(z, rows, self._timestep(z, t), cos, sin)
                return velocity

            def uncond(z: torch.Tensor, t: float) -> torch.Tensor:
                assert uncond_dit is not None
                velocity: torch.Tensor = uncond_dit(z, self._timestep(z, t), uncond_cos, uncond_sin)
                return velocity

            # torch.Tensor's operators are typed narrower than core.sampling's ArrayLike; they are the same ops.
            finals.append(denoise(noise, schedule, cond, uncond if uncond_dit is not None else None))  # type: ignore[type-var]
        latents = torch.cat(finals).float()
        packed = latents.reshape(len(prompts), grid[0], grid[1], channels).cpu().numpy()
        images = self.run(Component.VAE_DECODER, [packed])
        return ReferenceRun(latents.cpu().numpy(), images)

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        tensor: torch.Tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).to(self.device)
        return tensor

    def _timestep(self, z: torch.Tensor, t: float) -> torch.Tensor:
        return self._rounded(torch.full((z.shape[0],), t, dtype=torch.float32, device=self.device))

    def _rounded(self, timestep: torch.Tensor) -> torch.Tensor:
        if self.timestep_dtype is None:
            return timestep
        rounded: torch.Tensor = timestep.to(self.timestep_dtype).to(timestep.dtype)
        return rounded
