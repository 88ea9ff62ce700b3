"""Tiny random Ideogram 4 checkpoints in exactly the release layout (docs/ARCHITECTURE.md §9), for tests, CI and
the demo.

Only widths shrink: the text encoder keeps 36 layers (the taps reach layer 35), the VAE its four blocks (8x
downsampling) and 2x2 patch, so one token is 16x16 pixels and 256x256 is 256 tokens. Every DiT and text-encoder
linear is stored as E4M3 + an F32 per-row scale, biases/norms/embeddings in bf16, the VAE in fp32.

Weights are drawn at a scale that keeps activations O(1) through a sampling run (default initialization
gives velocities near 16 and latents near 100 after four steps, which drowns relative-error checks): linears
N(0, 1/fan_in), norm weights near 1, small biases. The same seed writes the same bytes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from ideogram_trt.core.components import Part
from ideogram_trt.core.errors import IdeogramTrtError
from ideogram_trt.core.files import remove_stale, staged_dir
from ideogram_trt.model.configs import TEXT_TAP_LAYERS, DiTConfig, TextEncoderConfig, VAEConfig
from ideogram_trt.model.fp8 import quantize_rowwise
from ideogram_trt.model.layout import Expected, dit_expected, text_encoder_expected
from ideogram_trt.model.layout import Layout as WeightLayout
from ideogram_trt.model.safetensors_stream import SafetensorsStream
from ideogram_trt.model.tiny_tokenizer import write_tokenizer

DIFFUSERS_VERSION = "0.42.1"
TOKENIZER_VOCAB = 512  # the offline tokenizer's size; a release-size text encoder keeps its full embedding
UNCONDITIONAL_MIX = 0.3  # how far the unconditional DiT's weights stray from the conditional one's


@dataclass(frozen=True)
class TinySpec:
    """Widths of a tiny checkpoint. Depths that the model's structure depends on are fixed."""

    seed: int = 0
    layers: int = 2
    heads: int = 2
    head_dim: int = 32
    intermediate_size: int = 128
    adaln_dim: int = 32
    text_hidden: int = 32
    text_heads: int = 4
    text_kv_heads: int = 2
    text_head_dim: int = 8
    text_intermediate: int = 64
    latent_channels: int = 4
    vae_channels: tuple[int, int, int, int] = (16, 16, 32, 32)
    vae_groups: int = 8
    vocab_size: int = 512
    dit_mrope: tuple[int, int, int] | None = None  # default: the release's 24:20:20 proportion of head_dim/2
    text_max_positions: int = 4096

    @classmethod
    def release(cls, seed: int = 0) -> TinySpec:
        """Every width of the released model (docs/MODEL.md §3.1, §4.1, §6): a full-size random checkpoint."""
        return cls(
            seed=seed,
            layers=34,
            heads=18,
            head_dim=256,
            intermediate_size=12288,
            adaln_dim=512,
            text_hidden=4096,
            text_heads=32,
            text_kv_heads=8,
            text_head_dim=128,
            text_intermediate=12288,
            latent_channels=32,
            vae_channels=(128, 256, 512, 512),
            vae_groups=32,
            vocab_size=151936,
            dit_mrope=(24, 20, 20),
            text_max_positions=262144,
        )

    def validate(self) -> None:
        for name in ("layers", "heads", "head_dim", "intermediate_size", "adaln_dim", "text_hidden", "text_heads"):
            if getattr(self, name) < 1:
                raise IdeogramTrtError(f"--{name.replace('_', '-')} must be at least 1")
        if self.head_dim % 2 or self.head_dim < 6 or self.text_head_dim % 2 or self.text_head_dim < 6:
            raise IdeogramTrtError("--head-dim must be even and at least 6 (three RoPE axes share its halves)")
        if self.text_heads % self.text_kv_heads:
            raise IdeogramTrtError("--text-heads must be a multiple of --text-kv-heads")
        if any(c % self.vae_groups for c in self.vae_channels):
            raise IdeogramTrtError("VAE channels must be multiples of the VAE group count")
        if self.vocab_size < 300:
            raise IdeogramTrtError("--vocab-size must be at least 300 (256 byte tokens + merges + specials)")


def mrope_section(head_dim: int) -> tuple[int, int, int]:
    """Split head_dim/2 frequencies over (t, h, w) in the release's 24:20:20 proportion."""
    half = head_dim // 2
    hw = max(1, round(half * 20 / 64))
    return (half - 2 * hw, hw, hw)


def dit_config(spec: TinySpec) -> DiTConfig:
    return DiTConfig(
        in_channels=4 * spec.latent_channels,
        num_layers=spec.layers,
        attention_head_dim=spec.head_dim,
        num_attention_heads=spec.heads,
        intermediate_size=spec.intermediate_size,
        adaln_dim=spec.adaln_dim,
        llm_features_dim=spec.text_hidden * len(TEXT_TAP_LAYERS),
        mrope_section=spec.dit_mrope or mrope_section(spec.head_dim),
    )


def text_encoder_config_json(spec: TinySpec, vocab_size: int) -> dict[str, Any]:
    """A Qwen3-VL config (text + a tiny vision tower) with the release's FP8 flag (docs/MODEL.md §8.1)."""
    text = TextEncoderConfig(
        vocab_size=vocab_size,
        hidden_size=spec.text_hidden,
        num_hidden_layers=max(TEXT_TAP_LAYERS) + 1,
        num_attention_heads=spec.text_heads,
        num_key_value_heads=spec.text_kv_heads,
        head_dim=spec.text_head_dim,
        intermediate_size=spec.text_intermediate,
        mrope_section=mrope_section(spec.text_head_dim),
        max_position_embeddings=spec.text_max_positions,
    )
    text_config = {**text.text_config_dict(), "model_type": "qwen3_vl_text", "pad_token_id": None}
    vision_config = {
        "model_type": "qwen3_vl",
        "depth": 1,
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_heads": 2,
        "out_hidden_size": spec.text_hidden,
        "patch_size": 4,
        "temporal_patch_size": 2,
        "spatial_merge_size": 2,
        "num_position_embeddings": 16,
        "deepstack_visual_indexes": [0],
    }
    return {
        "architectures": ["Qwen3VLModel"],
        "model_type": "qwen3_vl",
        "ideogram_fp8_weight_only": True,
        "text_config": text_config,
        "vision_config": vision_config,
        "image_token_id": vocab_size - 1,
        "video_token_id": vocab_size - 1,
        "vision_start_token_id": vocab_size - 1,
        "vision_end_token_id": vocab_size - 1,
        "tie_word_embeddings": False,
    }


def vae_config_json(spec: TinySpec) -> dict[str, Any]:
    return {
        "_class_name": "AutoencoderKLFlux2",
        "_diffusers_version": DIFFUSERS_VERSION,
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ["DownEncoderBlock2D"] * 4,
        "up_block_types": ["UpDecoderBlock2D"] * 4,
        "block_out_channels": list(spec.vae_channels),
        "decoder_block_out_channels": None,
        "layers_per_block": 2,
        "act_fn": "silu",
        "latent_channels": spec.latent_channels,
        "norm_num_groups": spec.vae_groups,
        "sample_size": 1024,
        "use_quant_conv": True,
        "use_post_quant_conv": True,
        "mid_block_add_attention": True,
        "batch_norm_eps": 1e-4,
        "batch_norm_momentum": 0.1,
        "patch_size": [2, 2],
    }


SCHEDULER_CONFIG = {
    "_class_name": "FlowMatchEulerDiscreteScheduler",
    "_diffusers_version": DIFFUSERS_VERSION,
    "num_train_timesteps": 1000,
    "shift": 1.0,
    "use_dynamic_shifting": False,
    "base_shift": 0.5,
    "max_shift": 1.15,
    "base_image_seq_len": 256,
    "max_image_seq_len": 4096,
    "invert_sigmas": False,
    "shift_terminal": None,
    "use_karras_sigmas": False,
    "use_exponential_sigmas": False,
    "use_beta_sigmas": False,
    "time_shift_type": "exponential",
    "stochastic_sampling": False,
}


def model_index_json() -> dict[str, Any]:
    return {
        "_class_name": "Ideogram4Pipeline",
        "_diffusers_version": DIFFUSERS_VERSION,
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
        Part.TEXT_ENCODER.value: ["transformers", "Qwen3VLModel"],
        "tokenizer": ["transformers", "Qwen2Tokenizer"],
        "transformer": ["diffusers", "Ideogram4Transformer2DModel"],
        "unconditional_transformer": ["diffusers", "Ideogram4Transformer2DModel"],
        "vae": ["diffusers", "AutoencoderKLFlux2"],
    }


def _draw(key: str, want: Expected, gen: torch.Generator) -> torch.Tensor:
    """One random tensor at an O(1)-activation scale, chosen by what the tensor is (on the generator's device)."""
    noise = torch.randn(want.shape, generator=gen, dtype=torch.float32, device=gen.device)
    leaf = key.rsplit(".", 1)[-1]
    if want.linear or (leaf == "weight" and len(want.shape) == 4):  # linear or conv kernel
        fan_in = math.prod(want.shape[1:])
        return noise / math.sqrt(fan_in)
    if "norm" in key and leaf == "weight":
        return 1.0 + 0.1 * noise
    if "norm" in key and leaf == "bias":
        return 0.1 * noise
    if leaf == "bias":
        return 0.02 * noise
    return 0.5 * noise  # embeddings


def _sibling(key: str, value: torch.Tensor, gen: torch.Generator, mix: float) -> torch.Tensor:
    """√(1−m²)·value + m·(a fresh draw around the same centre).

    A trained unconditional DiT predicts velocities close to the conditional one; two independent random
    DiTs would not, and guidance 7 would then blow the latents up (v = 7·v_c − 6·v_u).
    """
    centre = 1.0 if ("norm" in key and key.endswith(".weight")) else 0.0
    deviation = value - centre
    fresh = torch.randn(value.shape, generator=gen, device=gen.device) * deviation.std().clamp(min=1e-3)
    return centre + math.sqrt(1.0 - mix * mix) * deviation + mix * fresh


Sink = Callable[[str, torch.Tensor], None]  # takes one finished release-format tensor
Progress = Callable[[str, int, int], None]  # (weight files being written, keys drawn, keys in them)


def _store(sink: Sink, key: str, value: torch.Tensor, linear: bool) -> None:
    """Linears as E4M3 + F32 per-row scale, everything else bf16 (docs/MODEL.md §8.1); handed over on the CPU."""
    if linear:
        weight, scale = quantize_rowwise(value)
        sink(key, weight.cpu())
        sink(key + "_scale", scale.cpu())
    else:
        sink(key, value.to(torch.bfloat16).cpu())


def draw_release_states(
    expected: dict[str, Expected],
    gen: torch.Generator,
    first: Sink,
    sibling: Sink | None = None,
    sibling_mix: float = UNCONDITIONAL_MIX,
    scale: Callable[[str], float] | None = None,
    tick: Callable[[], None] | None = None,
) -> None:
    """Release-format tensors for every expected key, drawn one at a time and handed to ``first`` (so a
    full-size model never sits in memory: no fp32 copy, no whole state), plus a correlated sibling model for
    ``sibling``; sorted key order fixes every value. ``scale(key)`` multiplies a draw before it is stored;
    ``tick()`` follows each key."""
    for key in sorted(expected):
        value = _draw(key, expected[key], gen)
        if scale is not None:
            value = scale(key) * value
        _store(first, key, value, expected[key].linear)
        if sibling is not None:
            _store(sibling, key, _sibling(key, value, gen, sibling_mix), expected[key].linear)
        if tick is not None:
            tick()


def text_encoder_scale(key: str) -> float:
    """Token embeddings N(0, 1), like a trained Qwen3's, rather than ``_draw``'s N(0, ¼) for embeddings."""
    return 2.0 if key.endswith("embed_tokens.weight") else 1.0


def _discard(key: str, tensor: torch.Tensor) -> None:
    """A sink for the model that is drawn (to keep the random stream) but not written."""


def _stream(path: Path, expected: dict[str, Expected]) -> SafetensorsStream:
    """A streaming writer whose header has room for every key and its ``_scale`` (what a linear becomes)."""
    names = [name for key in expected for name in (key, key + "_scale")]
    return SafetensorsStream(path, names, metadata={"format": "pt"})


def vae_state(
    config: dict[str, Any], gen: torch.Generator, progress: Callable[[int, int], None] | None = None
) -> dict[str, torch.Tensor]:
    """The fp32 VAE state (0.34 GB at full size: kept whole). ``progress(done, total)`` follows each tensor."""
    from diffusers import AutoencoderKLFlux2

    with torch.device("meta"):
        model = AutoencoderKLFlux2.from_config(config)  # type: ignore[no-untyped-call]
    out: dict[str, torch.Tensor] = {}
    items = sorted(model.state_dict().items())
    for done, (key, tensor) in enumerate(items, 1):
        if key == "bn.num_batches_tracked":
            out[key] = torch.tensor(1000, dtype=torch.int64)
        elif key == "bn.running_mean":
            out[key] = 0.1 * torch.randn(tensor.shape, generator=gen, device=gen.device)
        elif key == "bn.running_var":
            out[key] = 0.5 + 1.5 * torch.rand(tensor.shape, generator=gen, device=gen.device)
        else:
            out[key] = _draw(key, Expected(tuple(tensor.shape)), gen)
        if progress is not None:
            progress(done, len(items))
    return {k: v.cpu() for k, v in out.items()}


COMPONENTS = tuple(part.value for part in Part)  # transformer, unconditional_transformer, text_encoder, vae


def _generator(spec: TinySpec, stream: int, device: str) -> torch.Generator:
    """One random stream per weight file, so writing some components gives the same bytes as writing all."""
    return torch.Generator(device=device).manual_seed(spec.seed * len(COMPONENTS) + stream)


def _save(state: dict[str, torch.Tensor], path: Path) -> None:
    save_file(state, str(path), metadata={"format": "pt"})


def _write_json(path: Path, value: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2) + "\n")


def write_tiny_checkpoint(
    out_dir: str | Path,
    spec: TinySpec | None = None,
    overwrite: bool = False,
    components: tuple[str, ...] = COMPONENTS,
    device: str = "cpu",
    progress: Progress | None = None,
) -> Path:
    """Write a release-layout checkpoint to ``out_dir`` atomically (staged, then renamed into place).

    ``components`` limits which weight files are written (configs are always written), for full-size
    checkpoints on small disks; ``device`` draws the random numbers there (a GPU makes full size quick);
    ``progress(what, done, total)`` follows every weight key drawn."""
    spec = spec or TinySpec()
    spec.validate()
    target = Path(out_dir)
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise IdeogramTrtError(f"{target}: already exists and is not empty (pass --overwrite to replace it)")
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(target.parent, names=lambda name: name == target.name)  # staging of a killed earlier run
    with staged_dir(target, replace=True) as stage:  # a kill or failure leaves the previous folder as it was
        _write_into(stage, spec, components, device, progress)
    return target


def _ticker(progress: Progress | None, what: str, total: int) -> Callable[[], None] | None:
    if progress is None:
        return None
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        progress(what, done, total)

    return tick


def _write_into(
    root: Path, spec: TinySpec, components: tuple[str, ...], device: str, progress: Progress | None = None
) -> None:
    vocab = write_tokenizer(root / "tokenizer", min(spec.vocab_size, TOKENIZER_VOCAB))
    dit = dit_config(spec)
    for component in ("transformer", "unconditional_transformer"):
        _write_json(root / component / "config.json", dit.to_dict())
    if {"transformer", "unconditional_transformer"} & set(components):
        # One random stream draws both DiTs (the unconditional one is correlated key by key), so both are
        # always drawn; each requested one streams to its file as it is drawn.
        expected = dit_expected(dit, WeightLayout.RELEASE, conditional=True)
        with ExitStack() as files:
            sinks: list[Sink] = []
            for name in ("transformer", "unconditional_transformer"):
                path = root / name / "diffusion_pytorch_model.safetensors"
                sinks.append(files.enter_context(_stream(path, expected)).add if name in components else _discard)
            what = " + ".join(name for name in ("transformer", "unconditional_transformer") if name in components)
            tick = _ticker(progress, what, len(expected))
            draw_release_states(expected, _generator(spec, 0, device), sinks[0], sinks[1], tick=tick)

    te_json = text_encoder_config_json(spec, max(vocab, spec.vocab_size))
    _write_json(root / Part.TEXT_ENCODER.value / "config.json", te_json)
    if Part.TEXT_ENCODER.value in components:
        te_config = TextEncoderConfig.from_dict(te_json, "tiny text encoder")
        expected = text_encoder_expected(te_config)
        with _stream(root / Part.TEXT_ENCODER.value / "model.safetensors", expected) as out:
            tick = _ticker(progress, Part.TEXT_ENCODER.value, len(expected))
            draw_release_states(expected, _generator(spec, 2, device), out.add, scale=text_encoder_scale, tick=tick)

    vae_json = vae_config_json(spec)
    VAEConfig.from_dict(vae_json, "tiny vae")
    _write_json(root / "vae" / "config.json", vae_json)
    if "vae" in components:
        vae_progress = None if progress is None else partial(progress, "vae")
        state = vae_state(vae_json, _generator(spec, 3, device), vae_progress)
        _save(state, root / "vae" / "diffusion_pytorch_model.safetensors")

    _write_json(root / "scheduler" / "scheduler_config.json", SCHEDULER_CONFIG)
    _write_json(root / "model_index.json", model_index_json())
