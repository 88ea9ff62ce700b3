"""``ideogram-trt bench``: time an engine set where its backend runs, or print the FLOP floor of a request.

Engine mode: load (timed), one warm-up request, then ``runs`` timed requests; per-stage and per-step times,
end-to-end p50/p95, peak memory (device memory the backend holds on a GPU, resident host memory otherwise).
Results are what this machine measured with this backend — ONNX Runtime on a CPU says nothing about TensorRT.
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ideogram_trt import __version__
from ideogram_trt.core.buckets import Bucket
from ideogram_trt.core.cards import card as find_card
from ideogram_trt.core.components import Component
from ideogram_trt.core.errors import InputError
from ideogram_trt.core.flops import RequestFlops, request_flops
from ideogram_trt.core.gpu import visible_gpus
from ideogram_trt.core.host import cpu_model
from ideogram_trt.core.schedule import get_preset
from ideogram_trt.core.tokenization import MAX_TEXT_TOKENS

# p50/p95 settle after a few dozen runs; 1000 runs of a 1024² V4_QUALITY_48 request take hours on an H200.
MAX_RUNS = 1000

DEFAULT_PROMPT = (
    '{"subject":"a red fox curled up in fresh snow","style":"wildlife photography",'
    '"lighting":"soft morning light","composition":"close-up, shallow depth of field"}'
)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class BenchResult:
    machine: dict[str, Any]
    engine_set: str
    backend: str
    bucket: str
    preset: str
    runs: int
    load_seconds: float
    text_encoder_ms: float
    step_ms_mean: float
    step_ms_p50: float
    steps: int
    vae_ms: float
    total_s_p50: float
    total_s_p95: float
    peak_memory_bytes: int
    peak_memory_kind: str


def machine_line() -> dict[str, Any]:
    gpus = visible_gpus()
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "host": platform.node(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "gpus": [f"{g.name} (sm {g.compute_capability}, {g.memory_mib} MiB)" for g in gpus],
        "ideogram_trt": __version__,
        "python": platform.python_version(),
    }


def bench_engines(
    engines: Path, bucket: str | None, preset: str, runs: int, prompt: str = DEFAULT_PROMPT, backend: str | None = None
) -> BenchResult:
    from ideogram_trt.runtime import Pipeline

    if isinstance(runs, bool) or not isinstance(runs, int) or not 1 <= runs <= MAX_RUNS:
        raise InputError(f"--runs {runs!r}: give a whole number of timed runs from 1 to {MAX_RUNS}")
    get_preset(preset)  # an unknown preset is refused before the engine set loads
    start = time.perf_counter()
    pipe = Pipeline.from_engines(engines, backend=backend)
    load = time.perf_counter() - start
    size = pipe.resolve_bucket(None, None, bucket)
    pipe(prompt, bucket=size.name, preset=preset, seed=0)  # warm-up: sessions, CUDA graphs, caches
    timings = [pipe(prompt, bucket=size.name, preset=preset, seed=k + 1).timings for k in range(runs)]
    steps = [s for t in timings for s in t.steps]
    totals = [t.total for t in timings]
    device = getattr(pipe.backend, "device_bytes", None)
    if callable(device):
        peak, kind = int(device()), "device (buffers + scratch pool)"
    else:
        peak, kind = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "host resident (max RSS)"
    return BenchResult(
        machine=machine_line(),
        engine_set=pipe.engine_set_id,
        backend=pipe.backend.name,
        bucket=size.name,
        preset=preset,
        runs=runs,
        load_seconds=round(load, 3),
        text_encoder_ms=round(statistics.median(t.text_encoder for t in timings) * 1000, 3),
        step_ms_mean=round(statistics.fmean(steps) * 1000, 3),
        step_ms_p50=round(statistics.median(steps) * 1000, 3),
        steps=len(timings[0].steps),
        vae_ms=round(statistics.median(t.vae for t in timings) * 1000, 3),
        total_s_p50=round(statistics.median(totals), 4),
        total_s_p95=round(percentile(totals, 0.95), 4),
        peak_memory_bytes=peak,
        peak_memory_kind=kind,
    )


def flop_table(bucket: Bucket, preset: str, text_tokens: int, card: str) -> dict[str, Any]:
    chosen = find_card(card)
    rates = chosen.rates()
    if not 1 <= text_tokens <= MAX_TEXT_TOKENS:
        raise InputError(f"--text-tokens {text_tokens}: give a prompt length from 1 to {MAX_TEXT_TOKENS} tokens")
    flops: RequestFlops = request_flops(bucket, get_preset(preset), text_tokens)
    stages = {
        Component.TEXT_ENCODER.value: flops.text_encoder,
        "dit_cond_step": flops.cond_step,
        "dit_uncond_step": flops.uncond_step,
        "denoise": flops.denoise,
        Component.VAE_DECODER.value: flops.vae,
        "total": flops.total,
    }
    return {
        "bucket": bucket.name,
        "preset": preset,
        "text_tokens": text_tokens,
        "card": {"key": chosen.key, "name": chosen.name, "rates": chosen.source().value, **asdict(rates)},
        "tflop": {k: round(v / 1e12, 2) for k, v in stages.items()},
        "cond_steps": flops.cond_steps,
        "uncond_steps": flops.uncond_steps,
        "floor_seconds": {
            "fp8": round(flops.floor_seconds(rates.fp8_tflops), 3),
            "bf16": round(flops.floor_seconds(rates.bf16_tflops), 3),
        },
    }
