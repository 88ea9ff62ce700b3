"""PyTorch reference benchmark of Ideogram 4 at full size, random weights, one GPU (reproduces research/baselines.md).

What it measures, with the diffusers 0.42.1 reference classes built directly on the device in bf16 (linear weights
and biases drawn from N(0, 0.02); latency does not depend on weight values):

1. DiT forward at 1024x1024 (N = 4096 image tokens, t = 0.5), inputs built as ``Ideogram4Pipeline`` builds them:
   ``cond_pad2048`` (diffusers pads the text region to 2048: L = 6144) and ``uncond`` (image tokens only, zero text
   features: L = 4096), each in three modes on one model whose linears are swapped in place:
   ``bf16`` (diffusers as shipped), ``fp8-weight-only`` (sglang numerics: every nn.Linear stored as E4M3 + fp32
   per-row scale, dequantized to bf16 on every forward) and ``fp8-scaled-mm`` (W8A8 ``torch._scaled_mm`` on the
   block linears q/k/v/o/w1/w2/w3, dynamic per-tensor activation scale; the other linears stay bf16).
2. Text encoder: the pipeline's own ``encode_prompt`` at the diffusers padding (T = 2048), a 512-token prompt.
3. VAE decode 1024x1024: ``vae.decode`` on (1, 32, 128, 128), and the pipeline's whole decode path (bn
   de-normalization + unpatchify + decode + postprocess to a tensor) from packed (1, 4096, 128) latents.
4. End to end: the real ``Ideogram4Pipeline`` (both DiTs, TE, VAE resident), V4_DEFAULT_20, ``output_type="pil"``,
   bf16 eager. The FP8 modes' end-to-end times are composed (TE + 20·(cond + uncond) + VAE), not measured.

Timing: CUDA events around each call under ``inference_mode`` (a synchronize before each), ``--warmup`` warm-ups,
then the median of ``--repeats`` timed calls; end to end uses synchronize + perf_counter, 1 warm-up, then the median
of ``--e2e-repeats``. Peak memory is ``max_memory_allocated`` over the timed calls, resident weights and inputs
included. FLOPs come from ``ideogram_trt.core.flops``: executed FLOPs put all L rows through ``llm_cond_proj`` (as
diffusers does), useful FLOPs only the text-region rows (cond) or none (uncond).

Run on one H100 (about 3 minutes; the repo and diffusers on PYTHONPATH)::

    PYTHONPATH=/tmp/site:$PWD python tools/bench_reference.py \\
        --json bench_reference.json --markdown bench_reference.md

Smoke run on a CPU (tiny widths at 256x256, every code path; the numbers mean nothing)::

    PYTHONPATH=$PWD .venv/bin/python tools/bench_reference.py --tiny --repeats 2 --warmup 1 --e2e-repeats 1

Sections can be left out with ``--skip dit,te,vae,e2e``. The JSON (``--json``) holds every raw number and is
rewritten after each section, so a run cut short keeps what it measured.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import platform
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diffusers
import numpy as np
import torch
import transformers
from diffusers import (
    AutoencoderKLFlux2,
    FlowMatchEulerDiscreteScheduler,
    Ideogram4Pipeline,
    Ideogram4Transformer2DModel,
)
from diffusers.image_processor import VaeImageProcessor
from torch import nn
from torch.nn import functional as F
from transformers import AutoTokenizer, Qwen3VLConfig, Qwen3VLModel

from ideogram_trt.core.buckets import Bucket
from ideogram_trt.core.cards import CARDS
from ideogram_trt.core.flops import FEATURES, D, dit_flops, request_flops, text_encoder_flops, vae_flops
from ideogram_trt.core.gpu import card_lines
from ideogram_trt.core.schedule import Preset, PresetName, get_preset
from ideogram_trt.model.tiny import TinySpec, dit_config, text_encoder_config_json, vae_config_json
from ideogram_trt.model.tiny_tokenizer import default_prompts, write_tokenizer

SECTIONS = ("dit", "te", "vae", "e2e")
DTYPE = torch.bfloat16
INIT_STD = 0.02
TIMESTEP = 0.5
PRESET = PresetName.V4_DEFAULT_20
BYTE_VOCAB = 259  # 256 byte tokens + the 3 ChatML specials, no merges: one token per byte of the templated prompt
E4M3_MAX = 448.0
# The block linears that get true FP8 GEMMs in the scaled-mm mode (238 at full size); the other 41 stay bf16.
BLOCK_LINEARS = (".to_q", ".to_k", ".to_v", ".to_out.0", ".w1", ".w2", ".w3")
MODES = ("bf16", "fp8-weight-only", "fp8-scaled-mm")
GIB = 1024**3

START = time.perf_counter()


def log(message: str) -> None:
    print(f"[bench {time.perf_counter() - START:7.1f}s] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------------------
# Sizes and models


@dataclass(frozen=True)
class Sizes:
    spec: TinySpec
    height: int
    width: int
    text_pad: int  # the pipeline's max_sequence_length: the width of the text region
    text_tokens: int  # the templated prompt's length

    @property
    def bucket(self) -> Bucket:
        return Bucket(self.height, self.width)

    @property
    def grid(self) -> tuple[int, int]:
        return self.bucket.grid

    @property
    def image_tokens(self) -> int:
        return self.bucket.tokens


FULL = Sizes(TinySpec.release(), 1024, 1024, 2048, 512)
TINY = Sizes(TinySpec(), 256, 256, 128, 64)


@contextmanager
def built_on(device: torch.device) -> Iterator[None]:
    """Parameters are created on the device in bf16 directly: a full-size model never exists on the CPU."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(DTYPE)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(previous)


@torch.no_grad()
def finish(model: nn.Module) -> nn.Module:
    """N(0, 0.02) linears; no ``.to(bf16)``, which would also round the fp32 RoPE frequency buffers."""
    wrong = {p.dtype for p in model.parameters()} - {DTYPE}
    if wrong:
        raise RuntimeError(f"{type(model).__name__} was built with {wrong} parameters, expected bf16 only")
    for module in model.modules():
        if isinstance(module, nn.Linear):
            module.weight.normal_(0.0, INIT_STD)
            if module.bias is not None:
                module.bias.normal_(0.0, INIT_STD)
    return model.eval().requires_grad_(False)


def build_dit(sizes: Sizes, device: torch.device) -> Ideogram4Transformer2DModel:
    with built_on(device):
        model = Ideogram4Transformer2DModel.from_config(dit_config(sizes.spec).to_dict())
    return finish(model)


def build_text_encoder(sizes: Sizes, device: torch.device) -> Qwen3VLModel:
    raw = text_encoder_config_json(sizes.spec, max(BYTE_VOCAB, sizes.spec.vocab_size))
    raw.pop("ideogram_fp8_weight_only")
    with built_on(device):
        model = Qwen3VLModel(Qwen3VLConfig(**raw))
    return finish(model)


def build_vae(sizes: Sizes, device: torch.device) -> AutoencoderKLFlux2:
    with built_on(device):
        model = AutoencoderKLFlux2.from_config(vae_config_json(sizes.spec))
    return finish(model)


def build_tokenizer(folder: Path) -> Any:
    write_tokenizer(folder, BYTE_VOCAB)
    return AutoTokenizer.from_pretrained(folder)


def templated_length(tokenizer: Any, prompt: str) -> int:
    """Exactly what Ideogram4Pipeline.encode_prompt counts."""
    messages = [{"role": "user", "content": [{"type": "text", "text": prompt}]}]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def make_prompt(tokenizer: Any, tokens: int) -> str:
    """A JSON caption whose templated form is exactly ``tokens`` long (its "details" field is trimmed to fit)."""
    prompts = default_prompts()
    caption = json.loads(prompts[0])
    filler = " ".join("".join(c for c in p if c.isalnum() or c == " ") for p in prompts) * 4

    def render(size: int) -> str:
        return json.dumps({**caption, "details": filler[:size]}, separators=(",", ":"))

    while caption and templated_length(tokenizer, render(0)) > tokens:  # a short target keeps fewer fields
        caption.popitem()
    size = 0
    for _ in range(8):
        prompt = render(size)
        missing = tokens - templated_length(tokenizer, prompt)
        if missing == 0:
            return prompt
        size = max(0, size + missing)
    raise RuntimeError(f"could not build a prompt of exactly {tokens} templated tokens")


def release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------------------------
# FP8 linears


class Fp8Linear(nn.Module):
    """An nn.Linear stored as E4M3 + fp32 per-row scale (amax/448), run in one of two ways.

    ``weight-only`` (sglang WeightOnlyFP8Linear numerics): ``F.linear(x, w.to(bf16) * scale.to(bf16)[:, None])``.
    ``scaled-mm``: block linears quantize the activation per tensor (amax/448, per call) and run
    ``torch._scaled_mm`` with the activation scale as (M, 1) and the weight scale as (1, N), bf16 out; the other
    linears keep a bf16 copy of their weight and run plain ``F.linear``. ``emulate`` (CPU only) replaces
    ``_scaled_mm`` by the same quantization followed by a dequantized fp32 matmul.
    """

    def __init__(self, linear: nn.Linear, block: bool, emulate: bool) -> None:
        super().__init__()
        weight = linear.weight.detach()
        scale = weight.float().abs().amax(dim=1).clamp(min=1e-12) / E4M3_MAX
        # Buffers, not parameters: diffusers reads a model's dtype from its first floating-point parameter.
        self.register_buffer("weight_fp8", (weight.float() / scale[:, None]).to(torch.float8_e4m3fn))
        self.register_buffer("weight_scale", scale)
        self.bias = linear.bias
        self.block = block
        self.emulate = emulate
        self.bf16_weight = None if block else linear.weight
        self.mode = "fp8-weight-only"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "fp8-scaled-mm":
            if not self.block:
                return F.linear(x, self.bf16_weight, self.bias)
            # _scaled_mm needs a row-major activation; the attention output reaches to_out transposed.
            out = self._scaled_mm(x.reshape(-1, x.shape[-1]).contiguous()).reshape(*x.shape[:-1], -1)
            return out if self.bias is None else out + self.bias
        weight = self.weight_fp8.to(x.dtype) * self.weight_scale.to(x.dtype)[:, None]
        return F.linear(x, weight, self.bias)

    def _scaled_mm(self, x: torch.Tensor) -> torch.Tensor:
        scale = (x.abs().amax().float() / E4M3_MAX).clamp(min=1e-12)
        x_fp8 = (x / scale).clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn)
        scale_a = scale.reshape(1, 1).expand(x.shape[0], 1).contiguous()
        scale_b = self.weight_scale.view(1, -1)
        if self.emulate:
            weight = self.weight_fp8.float() * self.weight_scale[:, None]
            return ((x_fp8.float() * scale_a) @ weight.t()).to(x.dtype)
        return torch._scaled_mm(x_fp8, self.weight_fp8.t(), scale_a=scale_a, scale_b=scale_b, out_dtype=x.dtype)


def swap_to_fp8(model: nn.Module, emulate: bool) -> dict[str, int]:
    """Replace every nn.Linear in place; names only are listed first so each bf16 weight is freed as it goes."""
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    counts = {"linears": len(names), "block_linears": 0}
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        block = name.startswith("layers.") and name.endswith(BLOCK_LINEARS)
        counts["block_linears"] += block
        setattr(parent, child, Fp8Linear(getattr(parent, child), block, emulate))
    return counts


def set_mode(model: nn.Module, mode: str) -> None:
    for module in model.modules():
        if isinstance(module, Fp8Linear):
            module.mode = mode


# ---------------------------------------------------------------------------------------------------------------
# Timing


@dataclass
class Timing:
    ms: list[float]
    peak_gib: float | None
    resident_gib: float | None

    def summary(self) -> dict[str, Any]:
        return {
            "median_ms": statistics.median(self.ms),
            "min_ms": min(self.ms),
            "max_ms": max(self.ms),
            "ms": self.ms,
            "peak_gib": self.peak_gib,
            "resident_gib": self.resident_gib,
        }


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(fn: Callable[[], Any], device: torch.device, warmup: int, repeats: int, events: bool = True) -> Timing:
    """Warm-ups, then ``repeats`` timed calls: CUDA events on a GPU (``events``), else synchronize + perf_counter."""
    with torch.inference_mode():
        for _ in range(warmup):
            fn()
        synchronize(device)
        cuda = device.type == "cuda"
        resident = torch.cuda.memory_allocated(device) / GIB if cuda else None
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        times = []
        for _ in range(repeats):
            synchronize(device)
            if cuda and events:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end))
            else:
                began = time.perf_counter()
                fn()
                synchronize(device)
                times.append((time.perf_counter() - began) * 1e3)
        peak = torch.cuda.max_memory_allocated(device) / GIB if cuda else None
    return Timing(times, peak, resident)


def rate(flops: float, ms: float) -> float:
    """TFLOP/s."""
    return flops / (ms * 1e-3) / 1e12


# ---------------------------------------------------------------------------------------------------------------
# Sections


@dataclass
class DitCase:
    name: str
    length: int
    projected_rows: int  # rows whose llm_cond_proj output is used (the text region; none for uncond)
    image_rows: int
    inputs: dict[str, torch.Tensor]


def dit_cases(sizes: Sizes, device: torch.device, in_channels: int, features: int) -> list[DitCase]:
    """The conditional and unconditional inputs exactly as Ideogram4Pipeline.__call__ assembles them."""
    gen = torch.Generator(device=device).manual_seed(0)
    pad, tokens, image = sizes.text_pad, sizes.text_tokens, sizes.image_tokens
    position_ids, segment_ids, indicator = Ideogram4Pipeline._prepare_ids([tokens], *sizes.grid, pad, device)
    latents = torch.randn(1, image, in_channels, generator=gen, device=device)
    text = torch.zeros(1, pad, features, device=device, dtype=DTYPE)
    text[:, pad - tokens :] = torch.randn(1, tokens, features, generator=gen, device=device).to(DTYPE)
    timestep = torch.full((1,), TIMESTEP, device=device).to(DTYPE)
    cond = {
        "hidden_states": torch.cat([torch.zeros(1, pad, in_channels, device=device), latents], 1).to(DTYPE),
        "timestep": timestep,
        "encoder_hidden_states": torch.cat([text, torch.zeros(1, image, features, device=device, dtype=DTYPE)], 1),
        "position_ids": position_ids,
        "segment_ids": segment_ids,
        "indicator": indicator,
    }
    uncond = {
        "hidden_states": latents.to(DTYPE),
        "timestep": timestep,
        "encoder_hidden_states": torch.zeros(1, image, features, device=device, dtype=DTYPE),
        "position_ids": position_ids[:, pad:],
        "segment_ids": segment_ids[:, pad:],
        "indicator": indicator[:, pad:],
    }
    return [DitCase(f"cond_pad{pad}", pad + image, pad, image, cond), DitCase("uncond", image, 0, image, uncond)]


def run_dit(model: nn.Module, case: DitCase) -> torch.Tensor:
    return model(**case.inputs, return_dict=False)[0]


def dit_mode(
    model: nn.Module, case: DitCase, mode: str, reference: torch.Tensor | None, args: argparse.Namespace
) -> tuple[dict[str, Any], torch.Tensor]:
    device = case.inputs["hidden_states"].device
    with torch.inference_mode():
        image_rows = run_dit(model, case)[:, -case.image_rows :].float()
    timing = measure(lambda: run_dit(model, case), device, args.warmup, args.repeats)
    result = timing.summary()
    executed, useful = dit_flops(case.length, case.length), dit_flops(case.length, case.projected_rows)
    result |= {
        "length": case.length,
        "executed_tflop": executed / 1e12,
        "useful_tflop": useful / 1e12,
        "executed_tflops": rate(executed, result["median_ms"]),
        "useful_tflops": rate(useful, result["median_ms"]),
        "finite": bool(torch.isfinite(image_rows).all()),
    }
    if reference is not None:
        diff = torch.linalg.vector_norm(image_rows - reference) / torch.linalg.vector_norm(reference).clamp(min=1e-30)
        result["rel_l2_vs_bf16"] = float(diff)
    log(f"  dit {mode:16s} {case.name:13s} median {result['median_ms']:9.2f} ms, peak {result['peak_gib']} GiB")
    return result, image_rows


def section_dit(sizes: Sizes, device: torch.device, args: argparse.Namespace) -> dict[str, Any]:
    log("dit: building one DiT on the device")
    model = build_dit(sizes, device)
    params = sum(p.numel() for p in model.parameters())
    cases = dit_cases(sizes, device, model.config.in_channels, model.config.llm_features_dim)
    emulate = device.type != "cuda"
    out: dict[str, Any] = {"params": params, "timestep": TIMESTEP, "modes": {m: {} for m in MODES}}
    out["cases"] = {c.name: {"length": c.length, "projected_rows_useful": c.projected_rows} for c in cases}
    references: dict[str, torch.Tensor] = {}
    for case in cases:
        out["modes"]["bf16"][case.name], references[case.name] = dit_mode(model, case, "bf16", None, args)
    log("dit: swapping the linears to FP8 in place")
    out["fp8_swap"] = swap_to_fp8(model, emulate) | {"scaled_mm_emulated": emulate}
    release(device)
    for mode in MODES[1:]:
        set_mode(model, mode)
        for case in cases:
            try:
                out["modes"][mode][case.name], _ = dit_mode(model, case, mode, references[case.name], args)
            except Exception as exc:  # one failing mode (e.g. no FP8 GEMMs on this card) must not lose the rest
                log(f"  dit {mode} {case.name} failed: {exc}")
                out["modes"][mode][case.name] = {"error": f"{type(exc).__name__}: {exc}"}
    return out


def make_pipeline(tokenizer: Any, **components: Any) -> Ideogram4Pipeline:
    parts = {"vae": None, "text_encoder": None, "transformer": None, "unconditional_transformer": None}
    pipe = Ideogram4Pipeline(scheduler=FlowMatchEulerDiscreteScheduler(), tokenizer=tokenizer, **(parts | components))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def section_te(sizes: Sizes, device: torch.device, args: argparse.Namespace, tokenizer: Any, prompt: str) -> dict:
    log("te: building the text encoder on the device")
    text_encoder = build_text_encoder(sizes, device)
    pipe = make_pipeline(tokenizer, text_encoder=text_encoder)
    grid_h, grid_w = sizes.grid

    def encode() -> torch.Tensor:
        return pipe.encode_prompt(prompt, grid_h, grid_w, max_sequence_length=sizes.text_pad, device=device)[0]

    timing = measure(encode, device, args.warmup, args.repeats)
    result = timing.summary()
    # encode_prompt stops at the 13 taps; the text projection runs inside the DiT (llm_cond_proj), where
    # dit_flops counts it, so it is taken out of the text-encoder figure here.
    flops = text_encoder_flops(sizes.text_pad) - sizes.text_pad * 2 * FEATURES * D
    result |= {
        "text_pad": sizes.text_pad,
        "prompt_tokens": sizes.text_tokens,
        "language_model_params": sum(p.numel() for p in text_encoder.language_model.parameters()),
        "attn_implementation": text_encoder.config._attn_implementation,
        "tflop_layers": flops / 1e12,
        "tflops_layers": rate(flops, result["median_ms"]),
    }
    log(f"  te encode_prompt T={sizes.text_pad}: median {result['median_ms']:.2f} ms")
    return result


def pipeline_decode(vae: AutoencoderKLFlux2, latents: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Ideogram4Pipeline.__call__'s step 9 (it is inline there, not a method): bn de-normalization, unpatchify,
    decode, postprocess (to a tensor, so no PIL conversion on the CPU is timed)."""
    z = latents
    bn_mean = vae.bn.running_mean.view(1, 1, -1).to(device=z.device, dtype=z.dtype)
    bn_std = torch.sqrt(vae.bn.running_var + vae.config.batch_norm_eps).view(1, 1, -1).to(z.device, z.dtype)
    z = z * bn_std + bn_mean
    patch, (grid_h, grid_w) = 2, grid
    channels = z.shape[-1] // (patch * patch)
    z = z.view(z.shape[0], grid_h, grid_w, patch, patch, channels).permute(0, 5, 1, 3, 2, 4).contiguous()
    z = z.view(z.shape[0], channels, grid_h * patch, grid_w * patch)
    decoded = vae.decode(z.to(vae.dtype), return_dict=False)[0]
    return VaeImageProcessor(vae_scale_factor=16).postprocess(decoded.float(), output_type="pt")


def section_vae(sizes: Sizes, device: torch.device, args: argparse.Namespace) -> dict[str, Any]:
    log("vae: building the VAE on the device")
    vae = build_vae(sizes, device)
    gen = torch.Generator(device=device).manual_seed(0)
    channels = sizes.spec.latent_channels
    z = torch.randn(1, channels, sizes.height // 8, sizes.width // 8, generator=gen, device=device).to(DTYPE)
    packed = torch.randn(1, sizes.image_tokens, 4 * channels, generator=gen, device=device)
    flops = vae_flops(sizes.bucket)
    out: dict[str, Any] = {"params": sum(p.numel() for p in vae.parameters()), "tflop": flops / 1e12}
    with torch.inference_mode():
        image = vae.decode(z, return_dict=False)[0]
    out["output_shape"], out["finite"] = list(image.shape), bool(torch.isfinite(image).all())
    for name, fn in (
        ("decode", lambda: vae.decode(z, return_dict=False)[0]),
        ("pipeline_decode", lambda: pipeline_decode(vae, packed, sizes.grid)),
    ):
        result = measure(fn, device, args.warmup, args.repeats).summary()
        result["tflops"] = rate(flops, result["median_ms"])
        out[name] = result
        log(f"  vae {name}: median {result['median_ms']:.2f} ms")
    return out


def section_e2e(
    sizes: Sizes, device: torch.device, args: argparse.Namespace, tokenizer: Any, prompt: str, preset: Preset
) -> dict[str, Any]:
    log("e2e: building two DiTs, the text encoder and the VAE on the device")
    pipe = make_pipeline(
        tokenizer,
        vae=build_vae(sizes, device),
        text_encoder=build_text_encoder(sizes, device),
        transformer=build_dit(sizes, device),
        unconditional_transformer=build_dit(sizes, device),
    )
    release(device)
    call = {
        "prompt": prompt,
        "height": sizes.height,
        "width": sizes.width,
        "num_inference_steps": preset.steps,
        "guidance_schedule": list(preset.guidance),
        "mu": preset.mu,
        "std": preset.std,
        "max_sequence_length": sizes.text_pad,
        "output_type": "pil",
    }

    def generate() -> Any:
        return pipe(**call, generator=torch.Generator(device=device).manual_seed(0)).images

    with torch.inference_mode():
        synchronize(device)
        began = time.perf_counter()
        images = generate()
        synchronize(device)
        first_s = time.perf_counter() - began
    log(f"  e2e first call {first_s:.2f} s")
    timing = measure(generate, device, 0, args.e2e_repeats, events=False)
    result = timing.summary()
    result |= {
        "median_s": result["median_ms"] / 1e3,
        "first_call_s": first_s,
        "warmup": 1,
        "output_type": "pil",
        "image_size": list(images[0].size),
        "image_std": float(np.asarray(images[0], dtype=np.float32).std()),
        "preset": preset.name.value,
        "steps": preset.steps,
        "guidance_schedule": list(preset.guidance),
        "mu": preset.mu,
        "std": preset.std,
        "max_sequence_length": sizes.text_pad,
    }
    log(f"  e2e median {result['median_s']:.2f} s, peak {result['peak_gib']} GiB")
    return result


def composed(results: dict[str, Any], preset: Preset, sizes: Sizes) -> dict[str, Any]:
    """TE + steps·(cond + uncond) + VAE from the measured parts (the pipeline runs both DiTs at every step)."""
    dit, te, vae = results.get("dit"), results.get("te"), results.get("vae")
    if not (dit and te and vae) or "error" in dit or "error" in te or "error" in vae:
        return {}
    cond, out = f"cond_pad{sizes.text_pad}", {}
    for mode, cases in dit["modes"].items():
        if "median_ms" not in cases.get(cond, {}) or "median_ms" not in cases.get("uncond", {}):
            continue
        step = cases[cond]["median_ms"] + cases["uncond"]["median_ms"]
        total = te["median_ms"] + preset.steps * step + vae["decode"]["median_ms"]
        out[mode] = {"per_step_ms": step, "e2e_s": total / 1e3}
    return out


# ---------------------------------------------------------------------------------------------------------------
# Environment and report


def environment(device: torch.device, args: argparse.Namespace) -> dict[str, Any]:
    env: dict[str, Any] = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "tiny": args.tiny,
        "device": str(device),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "e2e_repeats": args.e2e_repeats,
        "cpu_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env |= {
            "gpu": torch.cuda.get_device_name(device),
            "sms": props.multi_processor_count,
            "gpu_memory_gib": props.total_memory / GIB,
            "capability": f"{props.major}.{props.minor}",
            "nvidia_smi": "; ".join(card_lines()) or None,
        }
    return env


def fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def markdown(results: dict[str, Any], sizes: Sizes, preset: Preset) -> str:
    env = results["environment"]
    title = f"PyTorch reference: Ideogram 4, {sizes.height}x{sizes.width}, random weights, bf16 ({env['date_utc']})"
    lines = [f"## {title}", ""]
    if env["tiny"]:
        lines += ["**`--tiny`: tiny widths, the numbers mean nothing (a code-path check only).**", ""]
    card = env.get("nvidia_smi") or env.get("gpu") or f"CPU ({env['cpu_threads']} threads)"
    sms = f", {env['sms']} SMs" if "sms" in env else ""
    lines.append(f"* **Card**: {card}{sms} (torch: {env.get('gpu', env['device'])}).")
    lines.append(
        f"* **Software**: torch {env['torch']} (CUDA {env['cuda']}, cuDNN {env['cudnn']}), diffusers "
        f"{env['diffusers']}, transformers {env['transformers']}, Python {env['python']}."
    )
    clock = "CUDA events" if env["device"].startswith("cuda") else "perf_counter"
    lines.append(
        f"* **Runs**: {env['warmup']} warm-up(s), then the median of {env['repeats']} ({clock}); end to end "
        f"1 warm-up, then the median of {env['e2e_repeats']}. Reproduces research/baselines.md."
    )
    lines += ["", *dit_table(results, sizes), "", *parts_table(results), "", *e2e_table(results, preset)]
    return "\n".join(lines) + "\n"


def dit_table(results: dict[str, Any], sizes: Sizes) -> list[str]:
    dit = results.get("dit")
    if not dit:
        return []
    if "error" in dit:
        return [f"DiT: failed ({dit['error']})"]
    lines = [
        f"### DiT forward, {sizes.height}x{sizes.width}, t = {TIMESTEP} (ms; TFLOP/s executed / useful)",
        "",
        "| mode | case | L | median ms | min–max ms | peak GiB | TFLOP/s exec | TFLOP/s useful | rel-L2 vs bf16 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    emulated = dit.get("fp8_swap", {}).get("scaled_mm_emulated")
    for mode, cases in dit["modes"].items():
        label = f"{mode} (emulated on CPU)" if mode == "fp8-scaled-mm" and emulated else mode
        for case, r in cases.items():
            if "error" in r:
                lines.append(f"| {label} | {case} | {dit['cases'][case]['length']} | failed: {r['error']} |||||")
                continue
            lines.append(
                f"| {label} | {case} | {r['length']} | **{fmt(r['median_ms'])}** | {fmt(r['min_ms'])}–"
                f"{fmt(r['max_ms'])} | {fmt(r['peak_gib'], 2)} | {fmt(r['executed_tflops'], 0)} | "
                f"{fmt(r['useful_tflops'], 0)} | {fmt(r.get('rel_l2_vs_bf16'), 4) if 'rel_l2_vs_bf16' in r else '–'} |"
            )
    swap = dit.get("fp8_swap", {})
    lines += [
        "",
        f"DiT params {dit['params']:,}; FP8 swap: {swap.get('linears')} linears, {swap.get('block_linears')} of them "
        "with `_scaled_mm` in the scaled-mm mode. Executed FLOPs put every row through `llm_cond_proj`; useful "
        "FLOPs only the text region (cond) or none (uncond).",
    ]
    return lines


def parts_table(results: dict[str, Any]) -> list[str]:
    te, vae = results.get("te"), results.get("vae")
    if not te and not vae:
        return []
    lines = [
        "### Text encoder and VAE (bf16)",
        "",
        "| part | median ms | min–max ms | peak GiB (resident) | TFLOP | TFLOP/s |",
        "|---|---|---|---|---|---|",
    ]
    rows: list[tuple[str, dict[str, Any], float | None, float | None]] = []
    if te and "error" not in te:
        name = f"TE `encode_prompt`, T = {te['text_pad']} ({te['prompt_tokens']}-token prompt)"
        rows.append((name, te, te["tflop_layers"], te["tflops_layers"]))
    elif te:
        lines.append(f"| TE | failed: {te['error']} |||||")
    if vae and "error" not in vae:
        shape = "×".join(str(s) for s in vae["output_shape"])
        rows.append((f"VAE `vae.decode` → {shape}", vae["decode"], vae["tflop"], vae["decode"]["tflops"]))
        name = "VAE pipeline decode (bn + unpatchify + decode + postprocess)"
        rows.append((name, vae["pipeline_decode"], None, None))
    elif vae:
        lines.append(f"| VAE | failed: {vae['error']} |||||")
    for name, r, tflop, tflops in rows:
        lines.append(
            f"| {name} | **{fmt(r['median_ms'])}** | {fmt(r['min_ms'])}–{fmt(r['max_ms'])} | "
            f"{fmt(r['peak_gib'], 2)} ({fmt(r['resident_gib'], 2)}) | {fmt(tflop, 2)} | {fmt(tflops, 0)} |"
        )
    lines += ["", "TE FLOPs: the 36 decoder layers only (causal attention counted as half)."]
    return lines


def e2e_table(results: dict[str, Any], preset: Preset) -> list[str]:
    e2e, comp = results.get("e2e"), results.get("composed", {})
    if not e2e and not comp:
        return []
    lines = [
        f"### End to end, {preset.name.value} ({preset.steps} steps), `Ideogram4Pipeline`",
        "",
        "| variant | per step ms | e2e s | how |",
        "|---|---|---|---|",
    ]
    if e2e and "error" not in e2e:
        te, vae = results.get("te", {}), results.get("vae", {})
        step = None
        if "median_ms" in te and "decode" in vae:
            step = (e2e["median_ms"] - te["median_ms"] - vae["decode"]["median_ms"]) / preset.steps
        spread = f"{e2e['min_ms'] / 1e3:.2f}–{e2e['max_ms'] / 1e3:.2f} s"
        lines.append(
            f"| bf16 eager, the real pipeline | {fmt(step, 0)} | **{e2e['median_s']:.2f}** | measured: median of "
            f"{len(e2e['ms'])} ({spread}), 1 warm-up, `output_type='pil'`, peak {fmt(e2e['peak_gib'], 2)} GiB |"
        )
    elif e2e:
        lines.append(f"| bf16 eager, the real pipeline | – | failed | {e2e['error']} |")
    for mode, r in comp.items():
        lines.append(
            f"| {mode} | {r['per_step_ms']:.0f} | {r['e2e_s']:.2f} | composed, not measured: TE + "
            f"{preset.steps}·(cond + uncond) + VAE |"
        )
    if e2e and "error" not in e2e and "bf16" in comp:
        overhead = e2e["median_s"] - comp["bf16"]["e2e_s"]
        note = f"Pipeline overhead over the composed bf16 time: {overhead:+.2f} s (loop, casts, scheduler, PIL)."
        lines += ["", note]
    flops = results.get("request_flops")
    if flops:
        lines.append(
            f"Useful work per image (`request_flops`, exact text): {flops['total_pflop']:.2f} PFLOP; floor at the "
            f"measured H100 GEMM rates: {flops['floor_bf16_s']:.2f} s bf16, {flops['floor_fp8_s']:.2f} s FP8."
        )
    return lines


# ---------------------------------------------------------------------------------------------------------------
# Main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny widths at 256x256: a code-path check on a CPU")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up calls before the timed ones (default 2)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per DiT/TE/VAE measurement (default 5)")
    parser.add_argument("--e2e-repeats", type=int, default=3, help="timed end-to-end runs after 1 warm-up (default 3)")
    parser.add_argument("--skip", default="", help=f"comma list of sections to leave out: {','.join(SECTIONS)}")
    parser.add_argument("--json", type=Path, help="write every raw number here")
    parser.add_argument("--markdown", type=Path, help="write the Markdown tables here too")
    args = parser.parse_args(argv)
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if args.skip - set(SECTIONS):
        parser.error(f"--skip: unknown sections {sorted(args.skip - set(SECTIONS))}; use {','.join(SECTIONS)}")
    if min(args.repeats, args.e2e_repeats) < 1 or args.warmup < 0:
        parser.error("--repeats and --e2e-repeats must be at least 1, --warmup at least 0")
    return args


def save(results: dict[str, Any], path: Path | None) -> None:
    if path is not None:
        path.write_text(json.dumps(results, indent=2) + "\n")


def run_section(
    results: dict[str, Any], name: str, fn: Callable[[], dict[str, Any]], device: torch.device, path: Path | None
) -> None:
    """One section; its models die with its frame, and the allocator's cache is emptied before the next one."""
    try:
        results[name] = fn()
    except Exception as exc:  # keep the other sections' numbers: the GPU run happens once
        traceback.print_exc(file=sys.stderr)
        log(f"{name}: failed: {type(exc).__name__}: {exc}")
        results[name] = {"error": f"{type(exc).__name__}: {exc}"}
    release(device)
    save(results, path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("bench_reference: no CUDA device here; full size needs one GPU (use --tiny for the CPU check)")
        return 2
    if not args.tiny and device.type != "cuda":
        print("bench_reference: full size needs a CUDA GPU (none selected or found); pass --tiny for the CPU check")
        return 2
    sizes, preset = (TINY if args.tiny else FULL), get_preset(PRESET)
    results: dict[str, Any] = {"environment": environment(device, args)}
    log(f"{'tiny' if args.tiny else 'full size'} on {results['environment'].get('gpu', device)}")
    flops = request_flops(sizes.bucket, preset, sizes.text_tokens)
    results["request_flops"] = {
        "total_pflop": flops.total / 1e15,
        "floor_bf16_s": flops.floor_seconds(CARDS["h100"].rates().bf16_tflops),
        "floor_fp8_s": flops.floor_seconds(CARDS["h100"].rates().fp8_tflops),
    }
    with tempfile.TemporaryDirectory(prefix="bench_reference.") as folder:
        tokenizer = build_tokenizer(Path(folder) / "tokenizer")
        prompt = make_prompt(tokenizer, sizes.text_tokens)
        results["prompt"] = {"text": prompt, "templated_tokens": templated_length(tokenizer, prompt)}
        steps: dict[str, Callable[[], dict[str, Any]]] = {
            "dit": lambda: section_dit(sizes, device, args),
            "te": lambda: section_te(sizes, device, args, tokenizer, prompt),
            "vae": lambda: section_vae(sizes, device, args),
            "e2e": lambda: section_e2e(sizes, device, args, tokenizer, prompt, preset),
        }
        for name, fn in steps.items():
            if name not in args.skip:
                run_section(results, name, fn, device, args.json)
    results["composed"] = composed(results, preset, sizes)
    save(results, args.json)
    text = markdown(results, sizes, preset)
    print(text)
    if args.markdown is not None:
        args.markdown.write_text(text)
    log("done")
    return 1 if any(isinstance(v, dict) and "error" in v for v in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
