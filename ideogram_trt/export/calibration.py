"""Calibration for the ``fp8`` recipe: run the PyTorch model over a prompt set × every step of a preset and
record the absolute maximum of every linear input (and of q, k, v inside attention).

The sampling loop is ``core.sampling.denoise`` — the one the runtime runs — with seeded noise from
``core.noise``, so the activations seen here are the ones the engines will see. The file records the checkpoint
fingerprint and the settings; the same checkpoint, prompts, preset, resolutions and seed give the same file.
"""

from __future__ import annotations

import hashlib
import json
import math
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ideogram_trt.core import rope
from ideogram_trt.core.components import Component
from ideogram_trt.core.contracts import PIXELS_PER_TOKEN
from ideogram_trt.core.errors import InputError
from ideogram_trt.core.files import atomic_write
from ideogram_trt.core.noise import initial_latents
from ideogram_trt.core.prompts import read_prompt_file
from ideogram_trt.core.sampling import denoise
from ideogram_trt.core.schedule import PRESETS, Preset, PresetName, get_preset, preset_schedule
from ideogram_trt.core.tokenization import PromptTokenizer
from ideogram_trt.export.recipes import DIT_ACTIVATION_QUANT, TEXT_ENCODER_ACTIVATION_QUANT, QuantPlan
from ideogram_trt.model.build import load_dit, load_text_encoder
from ideogram_trt.model.checkpoint import TEXT_ENCODER, TOKENIZER, TRANSFORMER, UNCONDITIONAL_TRANSFORMER, Checkpoint
from ideogram_trt.model.dit import Attention, rope_inv_freq

FORMAT_VERSION = 1
# What the recorded activations depend on: the prompts go through the tokenizer and text encoder into both DiTs.
CALIBRATED_PARTS = (TRANSFORMER, UNCONDITIONAL_TRANSFORMER, TEXT_ENCODER, TOKENIZER)
# The amax tables, by the component whose inputs they hold, in file order (masked DiTs read dit_cond's).
TABLES = (Component.DIT_COND, Component.DIT_UNCOND, Component.TEXT_ENCODER)


@dataclass(frozen=True)
class Calibration:
    checkpoint: str  # fingerprint of CALIBRATED_PARTS
    settings: dict[str, Any]
    amax: dict[str, dict[str, float]]  # graph key → module name → amax
    sha256: str = field(default="", compare=False)

    def to_json(self) -> str:
        body = {"format": FORMAT_VERSION, "checkpoint": self.checkpoint, "settings": self.settings, "amax": self.amax}
        return json.dumps(body, indent=1, sort_keys=True) + "\n"

    def save(self, path: Path) -> None:
        atomic_write(path, self.to_json(), "calibration file")

    @classmethod
    def load(cls, path: Path) -> Calibration:
        if not path.is_file():
            raise InputError(f"{path}: calibration file not found (write one with `ideogram-trt calibrate`)")
        data = path.read_bytes()
        try:
            body = json.loads(data)
            if body.get("format") != FORMAT_VERSION:
                raise InputError(f"{path}: calibration format {body.get('format')!r}, expected {FORMAT_VERSION}")
            amax = {g: {k: float(v) for k, v in table.items()} for g, table in body["amax"].items()}
            calibration = cls(body["checkpoint"], body["settings"], amax, hashlib.sha256(data).hexdigest())
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError) as exc:
            raise InputError(f"{path}: not an ideogram-trt calibration file ({exc})") from exc
        for graph, table in amax.items():
            for name, value in table.items():
                if not math.isfinite(value) or value < 0:  # a NaN or infinite amax gives NaN activation scales
                    raise InputError(
                        f"{path}: amax[{graph!r}][{name!r}] is {value}, not a finite non-negative number: "
                        "recalibrate with `ideogram-trt calibrate`"
                    )
        return calibration

    def require_table(self, graph: str, source: Path, names: list[str] | None = None) -> None:
        """The amax table of one graph is there and holds ``names`` (the inputs the fp8 recipe quantizes)."""
        table = self.amax.get(graph)
        if table:
            missing = [n for n in names or () if n not in table]
            if missing:
                raise InputError(
                    f"{source}: the {graph} amax table lacks {len(missing)} of the {len(names or ())} inputs the "
                    f"fp8 recipe quantizes, e.g. {missing[0]!r} (a partial or hand-edited file): recalibrate with "
                    "`ideogram-trt calibrate`"
                )
            return
        hint = ""
        if graph == Component.DIT_UNCOND:
            made_with = self.settings.get("preset") if isinstance(self.settings, dict) else None
            hint = f" (made with preset {made_with})" if made_with else ""
            hint += f"; the presets that record it: {', '.join(uncond_presets())}"
        raise InputError(
            f"{source}: no amax table for the {graph} graph{hint}: recalibrate with `ideogram-trt calibrate`, or "
            f"export {graph} with --recipe fp8-wo"
        )

    def check_matches(self, checkpoint: Checkpoint, source: Path) -> None:
        expected = checkpoint.fingerprint(CALIBRATED_PARTS)
        if self.checkpoint != expected:
            raise InputError(
                f"{source}: calibrated on another checkpoint ({self.checkpoint[:12]}, this one is "
                f"{expected[:12]}): run `ideogram-trt calibrate` on {checkpoint.root}"
            )


def amax_names(checkpoint: Checkpoint, graph: str, plan: QuantPlan) -> list[str]:
    """The amax entries table ``graph`` (a TABLES value) needs under ``plan``, from the config's layer count:
    the quantized linears' inputs, and q/k/v of every attention when attention is quantized."""
    if graph == Component.TEXT_ENCODER:
        patterns, layers = TEXT_ENCODER_ACTIVATION_QUANT, checkpoint.text_encoder.num_hidden_layers
    else:
        part = UNCONDITIONAL_TRANSFORMER if graph == Component.DIT_UNCOND else TRANSFORMER
        patterns, layers = DIT_ACTIVATION_QUANT, checkpoint.dit_config(part).num_layers
    names = [p.replace("*", str(n)) for n in range(layers) for p in patterns]
    names = [name for name in names if plan.quantizes_input_of(name)]
    if plan.quantize_attention and graph != Component.TEXT_ENCODER:
        names += [f"layers.{n}.attention.{part}" for n in range(layers) for part in "qkv"]
    return names


def uncond_presets() -> list[str]:
    """The presets whose calibration runs (and records) the unconditional DiT: those with guidance > 1."""
    return [name.value for name, preset in PRESETS.items() if preset.needs_unconditional]


def read_prompts(path: Path | None) -> list[str]:
    """The shipped calibration prompts, or a prompt file read by ``core.prompts.read_prompt_file`` (a ``.jsonl``
    file of {"prompt": ...} objects, or plain text with one prompt per line)."""
    if path is None:
        from ideogram_trt.model.tiny_tokenizer import default_prompts

        return default_prompts()
    return read_prompt_file(path)


class AmaxRecorder:
    """Forward hooks recording max |input| of every linear, and max |q|, |k|, |v| of every attention."""

    def __init__(self) -> None:
        self.amax: dict[str, float] = {}
        self._handles: list[Any] = []

    def _record(self, name: str, tensor: torch.Tensor) -> None:
        value = float(tensor.detach().abs().max())
        self.amax[name] = max(self.amax.get(name, 0.0), value)

    @contextmanager
    def observe(self, module: nn.Module) -> Iterator[AmaxRecorder]:
        patched: list[Attention] = []
        for name, child in module.named_modules():
            if isinstance(child, nn.Linear):
                hook = self._linear_hook(name)
                self._handles.append(child.register_forward_pre_hook(hook))
            elif isinstance(child, Attention):
                child.attend = types.MethodType(self._observing_attend(name), child)  # type: ignore[method-assign]
                patched.append(child)
        try:
            yield self
        finally:
            for handle in self._handles:
                handle.remove()
            self._handles.clear()
            for child in patched:
                del child.attend

    def _linear_hook(self, name: str) -> Callable[..., None]:
        def hook(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            self._record(name, args[0])

        return hook

    def _observing_attend(self, name: str) -> Callable[..., torch.Tensor]:
        def attend(attn: Attention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: Any) -> torch.Tensor:
            for part, tensor in (("q", q), ("k", k), ("v", v)):
                self._record(f"{name}.{part}", tensor)
            return Attention.attend(attn, q, k, v, mask)

        return attend


def parse_resolution(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise InputError(f"resolution {text!r}: write it as HEIGHTxWIDTH, e.g. 1024x1024") from None
    if height % PIXELS_PER_TOKEN or width % PIXELS_PER_TOKEN or height <= 0 or width <= 0:
        raise InputError(f"resolution {text!r}: both sides must be positive multiples of {PIXELS_PER_TOKEN}")
    return height, width


def check_preset(checkpoint: Checkpoint, preset: str | PresetName) -> Preset:
    """The preset can calibrate every DiT of this checkpoint (before any model is loaded)."""
    preset_ = get_preset(preset)
    if preset_.needs_unconditional and not checkpoint.has_unconditional:
        raise InputError(f"{preset_.name.value} needs the unconditional DiT, which this checkpoint does not have")
    if checkpoint.has_unconditional and not preset_.needs_unconditional:
        # Guidance 1 at every step: v = v_cond, the unconditional DiT never runs, and the file would lack the
        # dit_uncond table the fp8 recipe needs for that graph (issue 12).
        raise InputError(
            f"--preset {preset_.name.value} has guidance 1 at every step, so the unconditional DiT never runs and "
            f"the calibration would have no {Component.DIT_UNCOND.value} amax; calibrate with a "
            f"guided preset, which records both DiTs: {', '.join(uncond_presets())}"
        )
    return preset_


@torch.no_grad()
def calibrate(
    checkpoint: Checkpoint,
    prompts: list[str],
    preset: str | PresetName,
    resolutions: list[tuple[int, int]],
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: str = "cpu",
    on_step: Callable[[], None] | None = None,
) -> Calibration:
    """Record activation amax over ``prompts`` × every step of ``preset`` at each resolution."""
    preset_ = check_preset(checkpoint, preset)
    tokenizer = PromptTokenizer.from_dir(checkpoint.tokenizer_dir)
    encoder = load_text_encoder(checkpoint, dtype).to(device)
    dit_cond = load_dit(checkpoint, TRANSFORMER, dtype).to(device)
    dit_uncond = (
        load_dit(checkpoint, UNCONDITIONAL_TRANSFORMER, dtype).to(device) if checkpoint.has_unconditional else None
    )
    config = checkpoint.transformer
    inv_freq = rope_inv_freq(config)
    recorders = {key: AmaxRecorder() for key in TABLES}

    def tables(positions: Any) -> tuple[torch.Tensor, torch.Tensor]:
        cos, sin = rope.rope_tables(positions, inv_freq, config.mrope_section)
        return torch.from_numpy(cos).to(device), torch.from_numpy(sin).to(device)

    with (
        recorders[Component.TEXT_ENCODER].observe(encoder),
        recorders[Component.DIT_COND].observe(dit_cond),
        recorders[Component.DIT_UNCOND].observe(dit_uncond) if dit_uncond is not None else _nothing(),
    ):
        for height, width in resolutions:
            grid_h, grid_w = height // PIXELS_PER_TOKEN, width // PIXELS_PER_TOKEN
            schedule = preset_schedule(preset_, height, width)
            uncond_tables = tables(rope.image_positions(grid_h, grid_w))
            for index, prompt in enumerate(prompts):
                batch = tokenizer.batch([prompt])
                ids = torch.from_numpy(batch.input_ids).to(device)
                mask = torch.from_numpy(batch.attention_mask).to(device)
                text_hidden = encoder(ids, mask)
                cos, sin = tables(rope.sequence_positions(batch.text_tokens, grid_h, grid_w))
                noise = initial_latents(seed + index, 1, grid_h * grid_w, config.in_channels)

                cond, uncond = _velocity_fns(dit_cond, dit_uncond, text_hidden, (cos, sin), uncond_tables, device)
                denoise(
                    torch.from_numpy(noise).to(device),
                    schedule,
                    cond,
                    uncond,
                    on_step=(lambda _j, _z: on_step()) if on_step else None,
                )

    prompt_digest = hashlib.sha256("\n".join(prompts).encode()).hexdigest()
    settings = {
        "preset": preset_.name.value,
        "resolutions": [f"{h}x{w}" for h, w in resolutions],
        "seed": seed,
        "prompts": len(prompts),
        "prompts_sha256": prompt_digest,
        "dtype": str(dtype).removeprefix("torch."),
    }
    amax = {key.value: dict(sorted(rec.amax.items())) for key, rec in recorders.items() if rec.amax}
    calibration = Calibration(checkpoint.fingerprint(CALIBRATED_PARTS), settings, amax)
    return Calibration(
        calibration.checkpoint,
        settings,
        amax,
        hashlib.sha256(calibration.to_json().encode()).hexdigest(),
    )


def _velocity_fns(
    dit_cond: nn.Module,
    dit_uncond: nn.Module | None,
    text_hidden: torch.Tensor,
    cond_tables: tuple[torch.Tensor, torch.Tensor],
    uncond_tables: tuple[torch.Tensor, torch.Tensor],
    device: str,
) -> tuple[Callable[[torch.Tensor, float], torch.Tensor], Callable[[torch.Tensor, float], torch.Tensor] | None]:
    def cond(z: torch.Tensor, t: float) -> torch.Tensor:
        return dit_cond(z, torch.full((z.shape[0],), t, device=device), *cond_tables, text_hidden=text_hidden)

    def uncond(z: torch.Tensor, t: float) -> torch.Tensor:
        assert dit_uncond is not None
        return dit_uncond(z, torch.full((z.shape[0],), t, device=device), *uncond_tables)

    return cond, (uncond if dit_uncond is not None else None)


@contextmanager
def _nothing() -> Iterator[None]:
    yield None
