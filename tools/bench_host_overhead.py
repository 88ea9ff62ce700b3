"""Host overhead per denoising step of the runtime's sampling loop, with stand-in engines that do no work.

No TensorRT runs here, and no model: every engine is a STAND-IN whose launch does nothing, so what is left of a
request's wall time is what the runtime itself adds — Python, numpy, the CUDA calls, buffer staging. The goal
(the issue): at most 1.5 ms of host time per denoising step.

What runs, and what is a stand-in:

* ``TensorRTBackend`` (ideogram_trt.runtime.tensorrt_backend) runs as written — persistent buffers, the shared
  scratch pool, per-step scalar uploads from page-locked staging, CUDA-graph capture on first use and replay
  after, the sampler's on-device latents copy, one synchronization per batch — over:
  - ``FakeTensorRT`` (``ideogram_trt.testing.fake_tensorrt``, the tests' fake) as the ``tensorrt`` module, given
    plans without a graph: a plan is only hashed, to find the optimization profiles its manifest entry records
    (the fake refuses, as TensorRT does, a profile index or input shape outside them), and ``execute_async_v3``
    enqueues NOTHING: every captured engine graph is empty except the sampler's, which holds the one
    device-to-device copy the backend adds itself.
  - the CUDA layer, ``--cuda``:
    ``real``: ``ideogram_trt.runtime.cuda.CudaRuntime`` on cuda-python — real device buffers, page-locked
    staging, real stream capture, graph launches and events on the GPU;
    ``host``: ``FakeCuda`` (the same module's), a HOST STAND-IN for the GPU: "device memory" is numpy bytes,
    copies happen at once (or at replay, when captured), events read ``time.perf_counter``. Its copies stand in
    for work a GPU does asynchronously, so the report also gives every figure with that copy time taken out.
    ``auto`` (default): ``real`` when cuda-python finds a device, else ``host``.
* ``OnnxRuntimeBackend`` (the CPU path: the loop and the CFG/Euler math on the host) runs as written over
  STAND-IN ONNX graphs with each engine's inputs and outputs (names, dtypes, dynamic axes) that compute nothing:
  ``Identity`` where an output has an input's shape (the DiTs' velocity), else ``ConstantOfShape`` zeros.
* ``Pipeline`` runs as written around either backend; tokenization is timed apart and subtracted.

The engine set: a tiny random checkpoint (``make-tiny``: one DiT block, one 256-wide head, 32 VAE latent channels)
built as an ONNX Runtime set for the 1024x1024 bucket (``build-engines --flavor onnxruntime``, max batch 1, 64 text
tokens), made in a temporary folder (or ``--work DIR``, reused when it already holds one). Model widths do not
change per-step host work, but the shapes that do are full size: latents 1 x 4096 x 128, RoPE tables 256 wide,
the 1024x1024x3 image. TensorRT sets carry a sampler engine; it is added here (``write_sampler``). ``--engines DIR``
uses an existing engine set instead (any flavor; its engines are replaced by the stand-ins all the same).

Measurement: per preset, one untimed request that captures the CUDA graphs and ``--warmup`` more, then ``--repeats``
rounds, each timing one ``backend.generate(inputs)`` (the loop: uploads, every step, the VAE launch, downloads,
the one synchronization; inputs as ``Pipeline`` builds them) and one whole ``pipe(prompt, bucket, preset)`` minus
its tokenization; presets take turns within a round. Per-step overhead and per-request fixed overhead are the
slope and intercept of a line through the per-preset medians against the step count, fitted separately for
presets with classifier-free guidance (cond + uncond + sampler per step) and with guidance 1 (cond + sampler).

Run on a CPU (a few minutes; the engine set takes about a minute on two cores)::

    PYTHONPATH=$PWD .venv/bin/python tools/bench_host_overhead.py --cuda host --repeats 20 \\
        --json host_overhead_cpu.json --markdown host_overhead_cpu.md

Run on one GPU with cuda-python (no TensorRT needed)::

    PYTHONPATH=/tmp/site:$PWD python3 tools/bench_host_overhead.py --cuda real --repeats 50 \\
        --json host.json --markdown host.md
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from ideogram_trt import __version__
from ideogram_trt.core import contracts as io
from ideogram_trt.core import rope
from ideogram_trt.core.buckets import Bucket
from ideogram_trt.core.components import Component
from ideogram_trt.core.errors import IdeogramTrtError
from ideogram_trt.core.gpu import card_lines
from ideogram_trt.core.host import cpu_model, package_version
from ideogram_trt.core.manifest import EngineEntry, Manifest, ProfileEntry, ShapeRangeEntry
from ideogram_trt.core.noise import initial_latents
from ideogram_trt.core.schedule import PresetName, get_preset
from ideogram_trt.core.sidecar import ExportSidecar
from ideogram_trt.core.tokenization import MAX_TEXT_TOKENS, PromptTokenizer, TokenBatch
from ideogram_trt.runtime.backend import Backend, DenoiseInputs, Generated, StepCallback
from ideogram_trt.runtime.cuda import Cuda, CudaError
from ideogram_trt.runtime.pipeline import Pipeline, to_uint8
from ideogram_trt.testing.fake_tensorrt import FakeCuda, FakePlan, FakeTensorRT

GOAL_MS_PER_STEP = 1.5
STAND_IN_NOTE = "stand-in engines that do no work; no TensorRT ran"
PROMPT = '{"subject":"a lighthouse at dusk","style":"oil painting"}'
DEFAULT_PRESETS = ",".join(p.value for p in PresetName)
# The tiny checkpoint: widths barely matter to host work, but 32 VAE latent channels make the DiT latents 128 wide
# (2x2 patches) and a 256-wide head makes the RoPE tables full width.
TINY_ARGS = ["--seed", "0", "--layers", "1", "--heads", "1", "--head-dim", "256", "--latent-channels", "32"]
BUILD_ARGS = ["--flavor", "onnxruntime", "--recipe", "bf16", "--dtype", "fp32", "--max-batch", "1"]
TEXT_TOKENS_LIMIT = 64  # the set's longest prompt (PROMPT is 38 tokens with the chat template)

START = time.perf_counter()


def log(message: str) -> None:
    print(f"[host-overhead {time.perf_counter() - START:7.1f}s] {message}", file=sys.stderr, flush=True)


class SetupError(Exception):
    """An expected failure (bad input, missing dependency, no GPU): one line, exit 2, no traceback."""


class PartUnavailable(SetupError):
    """An optional part (the ONNX Runtime measurement) cannot run here: reported as skipped, not fatal."""


# ---------------------------------------------------------------------------------------------------------------
# The CUDA layer: a counting wrapper for either FakeCuda (ideogram_trt.testing.fake_tensorrt) or the real one


class CountingCuda:
    """Forwards to a ``Cuda`` and counts its calls by name (swapped in for one untimed request only)."""

    def __init__(self, inner: Cuda) -> None:
        self.inner = inner
        self.counts: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if not callable(attribute):
            return attribute

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.counts[name] += 1
            return attribute(*args, **kwargs)

        return counted


def real_cuda() -> Cuda:
    from ideogram_trt.runtime.cuda import CudaRuntime

    try:
        return CudaRuntime()
    except (CudaError, OSError, RuntimeError) as exc:  # no cuda-python, no driver, no device
        raise SetupError(f"{exc}: install cuda-python / no CUDA device") from None


def probe_empty_graph(cuda: Cuda) -> str | None:
    """Capture nothing, instantiate, launch: what every stand-in engine's graph is. None if the GPU takes it."""
    stream = cuda.stream()
    try:
        cuda.begin_capture(stream)
        graph = cuda.end_capture(stream)
        cuda.launch(graph, stream)
        cuda.synchronize(stream)
    except CudaError as exc:
        return str(exc)
    return None


def memset_token(stream: int, pointer: int) -> None:
    """One 1-byte cudaMemsetAsync into the scratch pool: a graph node for GPUs that refuse an empty graph."""
    from cuda.bindings import runtime as cudart

    error = cudart.cudaMemsetAsync(pointer, 0, 1, stream)[0]
    if int(error) != 0:
        raise CudaError(f"cudaMemsetAsync failed ({error})")


# ---------------------------------------------------------------------------------------------------------------
# The engine set and its stand-ins


def make_engine_set(work: Path, bucket: Bucket) -> Path:
    """A tiny checkpoint and an ONNX Runtime engine set for ``bucket``, through the CLI (in a subprocess, so
    PyTorch never loads into the measuring process)."""
    engines = work / "engines"
    if (engines / "manifest.json").is_file():
        log(f"reusing the engine set in {engines}")
        return engines
    commands = [
        ["make-tiny", str(work / "tiny"), *TINY_ARGS, "--overwrite"],
        ["build-engines", "--model", str(work / "tiny"), "--out", str(engines), *BUILD_ARGS,
         "--buckets", bucket.name, "--max-text-tokens", str(TEXT_TOKENS_LIMIT)],
    ]  # fmt: skip
    for command in commands:
        log(f"ideogram-trt {command[0]}")
        done = subprocess.run(
            [sys.executable, "-m", "ideogram_trt", *command], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            tail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["no output"]
            raise SetupError(f"ideogram-trt {command[0]} failed (exit {done.returncode}): {tail[0]}")
    return engines


def with_sampler(manifest: Manifest, folder: Path) -> Manifest:
    """The manifest a TensorRT set would have: ONNX Runtime sets have no sampler engine (the CPU loop blends on
    the host), so add one, written by the builder's own ``write_sampler``, with a profile per bucket."""
    if manifest.has(Component.SAMPLER):
        return manifest
    from ideogram_trt.engines.profiles import AxisRange, ProfileRanges, profile_for
    from ideogram_trt.engines.sampler import write_sampler

    folder.mkdir(parents=True, exist_ok=True)
    assert manifest.model.latent_channels is not None
    path = write_sampler(folder, manifest.model.latent_channels)
    sidecar = ExportSidecar.load(folder, Component.SAMPLER)
    ranges = ProfileRanges(batch=AxisRange(1, 1, manifest.max_batch))
    profiles = []
    for index, name in enumerate(manifest.buckets):
        shapes = profile_for(sidecar.inputs, Bucket.parse(name), ranges)
        ranges_ = {n: ShapeRangeEntry(list(r.min), list(r.opt), list(r.max)) for n, r in shapes.items()}
        profiles.append(ProfileEntry(index, name, ranges_))
    data = path.read_bytes()
    entry = EngineEntry(
        name=Component.SAMPLER.value,
        graph=Component.SAMPLER,
        file=str(path.resolve()),  # absolute: the backend joins it to the set's root, which keeps it as is
        sha256=hashlib.sha256(data).hexdigest(),
        bytes=len(data),
        key="stand-in",
        buckets=list(manifest.buckets),
        profiles=profiles,
        inputs=sidecar.inputs,
        outputs=sidecar.outputs,
        onnx_sha256=sidecar.file_sha256,
    )
    return dataclasses.replace(manifest, engines={**manifest.engines, entry.name: entry})


def stand_in_plans(root: Path, manifest: Manifest) -> dict[str, FakePlan]:
    """sha256 of each engine file (hashed here, not trusted from the manifest) → a FakeTensorRT plan without a
    graph: it enqueues nothing, but holds the optimization profiles the manifest records, so the fake refuses a
    profile index or an input shape that TensorRT would refuse. A file two entries share gets the longer list."""
    plans: dict[str, FakePlan] = {}
    for entry in manifest.engines.values():
        digest = hashlib.sha256((root / entry.file).read_bytes()).hexdigest()
        profiles = [
            {name: (tuple(r.min), tuple(r.opt), tuple(r.max)) for name, r in profile.shapes.items()}
            for profile in entry.profiles
        ]
        if digest not in plans or len(plans[digest].profiles) < len(profiles):
            plans[digest] = FakePlan(None, profiles)
    return plans


def stand_in_graph(entry: EngineEntry) -> Any:
    """An ONNX graph with ``entry``'s inputs and outputs that computes nothing: Identity where an output has an
    input's shape and dtype, else zeros of the output's shape (its axes read off the inputs' shapes)."""
    from onnx import TensorProto, checker, helper

    types = {"float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16, "bfloat16": TensorProto.BFLOAT16,
             "int32": TensorProto.INT32, "int64": TensorProto.INT64}  # fmt: skip
    dims = {"H": "GH", "W": "GW"}  # the VAE's image: 16 pixels per token on each side

    def dim(symbol: Any) -> Any:
        return int(symbol) if isinstance(symbol, int) or str(symbol).isdigit() else str(symbol)

    inputs = [helper.make_tensor_value_info(s.name, types[s.dtype], [dim(d) for d in s.shape])
              for s in entry.inputs]  # fmt: skip
    nodes: list[Any] = []

    def axis_of(symbol: str, out: str) -> str:
        scale = io.PIXELS_PER_TOKEN if symbol in dims else 1
        wanted = dims.get(symbol, symbol)
        for spec in entry.inputs:
            for axis, value in enumerate(spec.shape):
                if value == wanted:
                    nodes.append(helper.make_node("Shape", [spec.name], [out], start=axis, end=axis + 1))
                    if scale != 1:
                        factor = helper.make_tensor(f"{out}/k", TensorProto.INT64, [1], [scale])
                        nodes.append(helper.make_node("Constant", [], [f"{out}/k"], value=factor))
                        nodes.append(helper.make_node("Mul", [out, f"{out}/k"], [f"{out}/x"]))
                        return f"{out}/x"
                    return out
        raise SetupError(f"{entry.name}: cannot make a stand-in for axis {symbol!r} (no input carries it)")

    for spec in entry.outputs:
        same = next((s for s in entry.inputs if s.shape == spec.shape and s.dtype == spec.dtype), None)
        if same is not None:
            nodes.append(helper.make_node("Identity", [same.name], [spec.name]))
            continue
        parts = []
        for k, symbol in enumerate(spec.shape):
            name = f"{spec.name}/dim{k}"
            if isinstance(dim(symbol), int):
                value = helper.make_tensor(name, TensorProto.INT64, [1], [dim(symbol)])
                nodes.append(helper.make_node("Constant", [], [name], value=value))
                parts.append(name)
            else:
                parts.append(axis_of(str(symbol), name))
        shape = f"{spec.name}/shape"
        nodes.append(helper.make_node("Concat", parts, [shape], axis=0))
        zero = helper.make_tensor("zero", types[spec.dtype], [1], [0])
        nodes.append(helper.make_node("ConstantOfShape", [shape], [spec.name], value=zero))
    outputs = [helper.make_tensor_value_info(s.name, types[s.dtype], [dim(d) for d in s.shape]) for s in entry.outputs]
    graph = helper.make_graph(nodes, f"stand_in_{entry.graph}", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], producer_name="stand-in")
    model.ir_version = 10
    checker.check_model(model)
    return model


def with_stand_in_graphs(manifest: Manifest, folder: Path) -> Manifest:
    """The manifest with every engine but the sampler pointing at a stand-in ONNX graph (absolute paths)."""
    import onnx

    folder.mkdir(parents=True, exist_ok=True)
    engines = {}
    for name, entry in manifest.engines.items():
        if entry.graph is Component.SAMPLER:
            continue
        path = folder / f"{entry.name}.onnx"
        onnx.save(stand_in_graph(entry), str(path))
        engines[name] = dataclasses.replace(entry, file=str(path.resolve()))
    return dataclasses.replace(manifest, engines=engines)


# ---------------------------------------------------------------------------------------------------------------
# Wrappers the pipeline is handed: they time tokenization and keep generate's inputs


class TimedTokenizer:
    """The pipeline's tokenizer, with the seconds spent in ``batch`` added up (subtracted from request times)."""

    def __init__(self, inner: PromptTokenizer) -> None:
        self.inner = inner
        self.seconds = 0.0

    def batch(self, prompts: list[str], pad_to: int | None = None, max_tokens: int = MAX_TEXT_TOKENS) -> TokenBatch:
        start = time.perf_counter()
        try:
            return self.inner.batch(prompts, pad_to=pad_to, max_tokens=max_tokens)
        finally:
            self.seconds += time.perf_counter() - start


class Recorder:
    """A backend that forwards, keeping the last ``DenoiseInputs``: generate() is then timed on exactly what
    ``Pipeline`` builds."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.name = inner.name
        self.inputs: DenoiseInputs | None = None

    def encode(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return self.inner.encode(input_ids, attention_mask)

    def generate(self, inputs: DenoiseInputs, on_step: StepCallback | None = None) -> Generated:
        self.inputs = inputs
        return self.inner.generate(inputs, on_step)

    def run_engine(
        self, graph: Component, bucket: str | None, feeds: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        return self.inner.run_engine(graph, bucket, feeds)


# ---------------------------------------------------------------------------------------------------------------
# Measurement


@dataclass
class Samples:
    steps: int
    guided: bool  # guidance != 1: the unconditional DiT runs every step
    generate_ms: list[float] = field(default_factory=list)
    generate_copy_ms: list[float] = field(default_factory=list)  # FakeCuda's stand-in device copies within
    pipeline_ms: list[float] = field(default_factory=list)  # minus tokenization
    pipeline_copy_ms: list[float] = field(default_factory=list)
    tokenize_ms: list[float] = field(default_factory=list)
    step_ms: list[float] = field(default_factory=list)  # the backend's own per-step times (events)
    counts: dict[str, int] = field(default_factory=dict)  # CUDA calls in one generate()


@dataclass
class Bench:
    name: str  # "tensorrt" | "onnxruntime"
    label: str
    pipe: Pipeline
    backend: Backend
    tokenizer: TimedTokenizer
    host_cuda: FakeCuda | None = None
    notes: list[str] = field(default_factory=list)

    def copy_seconds(self) -> float:
        return self.host_cuda.device_seconds if self.host_cuda is not None else 0.0


def summary(values: list[float]) -> dict[str, float]:
    array = np.asarray(values, dtype=np.float64)
    return {
        "p50": float(np.percentile(array, 50)),
        "p95": float(np.percentile(array, 95)),
        "mean": float(array.mean()),
        "min": float(array.min()),
    }


def rounded(values: list[float]) -> list[float]:
    return [round(v, 4) for v in values]


def fit(points: list[tuple[int, float]]) -> dict[str, float] | None:
    """Least-squares line through (steps, ms): slope = ms per step, intercept = ms per request."""
    if len({steps for steps, _ in points}) < 2:
        return None
    x = np.asarray([p[0] for p in points], dtype=np.float64)
    y = np.asarray([p[1] for p in points], dtype=np.float64)
    slope, intercept = np.polyfit(x, y, 1)
    return {"ms_per_step": float(slope), "ms_per_request": float(intercept), "points": len(points)}


def measure(bench: Bench, presets: list[str], bucket: Bucket, warmup: int, repeats: int) -> dict[str, Samples]:
    pipe, backend = bench.pipe, bench.backend
    recorder = Recorder(backend)
    inputs: dict[str, DenoiseInputs] = {}
    samples: dict[str, Samples] = {}
    pipe.backend = recorder  # the first request per preset: captures graphs, and keeps generate's inputs
    for preset in presets:
        pipe(PROMPT, bucket=bucket.name, preset=preset, seed=0)
        assert recorder.inputs is not None
        inputs[preset] = recorder.inputs
        schedule = recorder.inputs.schedule
        samples[preset] = Samples(schedule.steps, bool(np.any(schedule.guidance != 1.0)))
    pipe.backend = backend
    for _ in range(warmup):
        for preset in presets:
            pipe(PROMPT, bucket=bucket.name, preset=preset, seed=0)
            backend.generate(inputs[preset])
    if bench.name == "tensorrt":  # CUDA calls per request, counted once, outside the timed runs
        from ideogram_trt.runtime.tensorrt_backend import TensorRTBackend

        assert isinstance(backend, TensorRTBackend)
        for preset in presets:
            plain, counting = backend.cuda, CountingCuda(backend.cuda)
            backend.cuda = cast(Cuda, counting)
            try:
                backend.generate(inputs[preset])
            finally:
                backend.cuda = plain
            samples[preset].counts = dict(sorted(counting.counts.items()))

    log(f"{bench.label}: {repeats} rounds of {len(presets)} presets")
    for round_ in range(repeats):
        for preset in presets:  # presets take turns, so drift spreads over all of them
            s = samples[preset]
            copies = bench.copy_seconds()
            start = time.perf_counter()
            generated = backend.generate(inputs[preset])
            wall = time.perf_counter() - start
            s.generate_ms.append(wall * 1e3)
            s.generate_copy_ms.append((bench.copy_seconds() - copies) * 1e3)
            s.step_ms.extend(seconds * 1e3 for seconds in generated.step_seconds)

            copies, tokenized = bench.copy_seconds(), bench.tokenizer.seconds
            start = time.perf_counter()
            pipe(PROMPT, bucket=bucket.name, preset=preset, seed=round_ + 1)
            wall = time.perf_counter() - start
            tokenize = bench.tokenizer.seconds - tokenized
            s.pipeline_ms.append((wall - tokenize) * 1e3)
            s.pipeline_copy_ms.append((bench.copy_seconds() - copies) * 1e3)
            s.tokenize_ms.append(tokenize * 1e3)
    return samples


def report(bench: Bench, samples: dict[str, Samples]) -> dict[str, Any]:
    presets: dict[str, Any] = {}
    for preset, s in samples.items():
        generate = summary(s.generate_ms)
        row: dict[str, Any] = {
            "steps": s.steps,
            "guided": s.guided,
            "generate_ms": generate,
            "generate_ms_per_step_p50": generate["p50"] / s.steps,
            "step_ms_events": summary(s.step_ms),
            "pipeline_minus_tokenization_ms": summary(s.pipeline_ms),
            "tokenization_ms": summary(s.tokenize_ms),
            "repeats": len(s.generate_ms),
        }
        if bench.host_cuda is not None:
            row["generate_minus_copies_ms"] = summary(
                [a - b for a, b in zip(s.generate_ms, s.generate_copy_ms, strict=True)]
            )
            row["generate_copies_ms"] = summary(s.generate_copy_ms)
            row["pipeline_minus_copies_ms"] = summary(
                [a - b for a, b in zip(s.pipeline_ms, s.pipeline_copy_ms, strict=True)]
            )
        if s.counts:
            row["cuda_calls_per_generate"] = s.counts
        row["raw_ms"] = {
            "generate": rounded(s.generate_ms),
            "pipeline_minus_tokenization": rounded(s.pipeline_ms),
            "tokenization": rounded(s.tokenize_ms),
            **({"generate_copies": rounded(s.generate_copy_ms)} if bench.host_cuda is not None else {}),
            **({"pipeline_copies": rounded(s.pipeline_copy_ms)} if bench.host_cuda is not None else {}),
        }
        presets[preset] = row
    fits: dict[str, Any] = {}
    measures = ["generate_ms", "pipeline_minus_tokenization_ms"]
    if bench.host_cuda is not None:
        measures += ["generate_minus_copies_ms", "pipeline_minus_copies_ms"]
    for family, guided in (("cfg", True), ("guidance_1", False)):
        for measure_ in measures:
            points = [(row["steps"], row[measure_]["p50"]) for row in presets.values() if row["guided"] == guided]
            line = fit(points)
            if line is not None:
                fits.setdefault(family, {})[measure_] = line
    return {"backend": bench.name, "label": bench.label, "notes": bench.notes, "presets": presets, "fits": fits}


def fixed_host_work(manifest: Manifest, bucket: Bucket, text_tokens: int, repeats: int) -> dict[str, dict[str, float]]:
    """The per-request host work of Pipeline.__call__ outside the backend, timed alone (ms)."""
    assert manifest.model.latent_channels is not None and manifest.model.rope is not None
    channels = manifest.model.latent_channels
    inv_freq = np.asarray(manifest.model.rope.inv_freq, dtype=np.float32)
    section = tuple(manifest.model.rope.mrope_section)
    grid_h, grid_w = bucket.grid
    image = np.random.default_rng(0).random((1, bucket.height, bucket.width, 3), dtype=np.float32)
    work: dict[str, Callable[[], object]] = {
        "initial_latents (seeded noise)": lambda: initial_latents(0, 1, bucket.tokens, channels),
        "rope tables (cond + uncond) from scratch; the pipeline computes them once per bucket": lambda: (
            rope.rope_tables(rope.image_positions(grid_h, grid_w), inv_freq, section),
            rope.rope_tables(rope.sequence_positions(text_tokens, grid_h, grid_w), inv_freq, section),
        ),
        "to_uint8 (1 image)": lambda: to_uint8(image),
    }
    timed: dict[str, dict[str, float]] = {}
    for name, fn in work.items():
        fn()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start) * 1e3)
        timed[name] = summary(times)
    return timed


# ---------------------------------------------------------------------------------------------------------------
# Environment and output


def environment(args: argparse.Namespace, cuda_mode: str) -> dict[str, Any]:
    return {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "gpu": ("; ".join(card_lines()) or None) if cuda_mode == "real" else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cuda_python": package_version("cuda-bindings", "cuda-python"),
        "onnxruntime": package_version("onnxruntime", "onnxruntime-gpu"),
        "ideogram_trt": __version__,
        "cuda": cuda_mode,
        "warmup": args.warmup,
        "repeats": args.repeats,
    }


def fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def markdown(results: dict[str, Any]) -> str:
    env, engine_set = results["environment"], results["engine_set"]
    lines = [
        f"## Runtime host overhead per denoising step, {engine_set['bucket']} — {STAND_IN_NOTE} ({env['date_utc']})",
        "",
        f"* **Machine**: {env['cpu']} ({env['cpu_count']} CPUs)"
        + (f"; GPU {env['gpu']}" if env.get("gpu") else "; no GPU used")
        + f"; {env['platform']}.",
        f"* **Software**: Python {env['python']}, numpy {env['numpy']}, cuda-python {env['cuda_python'] or '–'}, "
        f"onnxruntime {env['onnxruntime'] or '–'}, ideogram-trt {env['ideogram_trt']}.",
        f"* **CUDA layer**: {results['cuda_layer']}.",
        f"* **Engines**: stand-ins that do no work (FakeTensorRT plans enqueue nothing; ONNX Runtime runs stand-in "
        f"graphs: Identity / ConstantOfShape). Engine set: {engine_set['what']}; latents {engine_set['latents']}, "
        f"prompt {engine_set['text_tokens']} tokens.",
        f"* **Runs**: per preset 1 capturing request + {env['warmup']} warm-up(s), then {env['repeats']} rounds "
        "(presets take turns), each timing `backend.generate(inputs)` and the whole `pipe(...)` minus its "
        "tokenization (perf_counter). ms/step and ms/request: slope and intercept of a line through the "
        "per-preset medians against the step count.",
        f"* **Goal**: ≤ {GOAL_MS_PER_STEP} ms host overhead per step.",
        "",
    ]
    lines += summary_lines(results)
    for result in results["backends"].values():
        lines += backend_tables(result)
    fixed = results.get("fixed_host_work")
    if fixed:
        lines += [
            "### Per-request host work in `Pipeline.__call__`, timed alone (ms)",
            "",
            "| work | p50 | p95 |",
            "|---|---|---|",
            *(f"| {name} | {fmt(v['p50'])} | {fmt(v['p95'])} |" for name, v in fixed.items()),
            "",
        ]
    return "\n".join(lines) + "\n"


def summary_lines(results: dict[str, Any]) -> list[str]:
    """The headline per backend: the loop's ms per step (CFG presets, else guidance 1) and the fixed costs."""
    lines = ["### Summary", ""]
    for result in results["backends"].values():
        fits = result.get("fits", {})
        family = fits.get("cfg") or fits.get("guidance_1")
        if not family:
            lines.append(f"* {result['label']}: no fit ({result.get('skipped', 'needs two step counts per family')})")
            continue
        guided = "cfg" in fits
        kind = "CFG presets" if guided else "guidance-1 presets"
        loop, whole = family["generate_ms"], family["pipeline_minus_tokenization_ms"]
        timer = float(
            np.median([r["step_ms_events"]["p50"] for r in result["presets"].values() if r["guided"] == guided])
        )
        verdict = "met" if max(loop["ms_per_step"], timer) <= GOAL_MS_PER_STEP else "MISSED"
        text = (
            f"* {result['label']}: **{loop['ms_per_step']:.3f} ms per step** in the loop ({kind}; the backend's own "
            f"step timer: p50 {timer:.3f} ms; goal ≤ {GOAL_MS_PER_STEP} ms: {verdict}), "
            f"{loop['ms_per_request']:.2f} ms fixed per `generate`; the whole request (tokenization excluded) "
            f"{whole['ms_per_step']:.3f} ms per step + {whole['ms_per_request']:.2f} ms fixed"
        )
        bare = family.get("generate_minus_copies_ms")
        if bare is not None:
            text += f"; without FakeCuda's stand-in device copies {bare['ms_per_step']:.3f} ms per step"
        lines.append(text + ".")
    return [*lines, ""]


def backend_tables(result: dict[str, Any]) -> list[str]:
    lines = [f"### {result['label']}", ""]
    if "skipped" in result:
        return [*lines, f"Not measured: {result['skipped']}", ""]
    lines += [f"* {note}" for note in result["notes"]]
    if result["notes"]:
        lines.append("")
    host = any("generate_minus_copies_ms" in row for row in result["presets"].values())
    lines += [
        "| preset | steps | uncond | generate p50 | p95 | mean | p50 / step | step p50 (backend's own) | "
        "pipeline − tokenization p50 | p95 | tokenization p50 |"
        + (" generate − stand-in copies p50 |" if host else ""),
        "|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if host else ""),
    ]
    for preset, row in result["presets"].items():
        g, p = row["generate_ms"], row["pipeline_minus_tokenization_ms"]
        lines.append(
            f"| {preset} | {row['steps']} | {'yes' if row['guided'] else 'no'} | {fmt(g['p50'])} | {fmt(g['p95'])} | "
            f"{fmt(g['mean'])} | {fmt(row['generate_ms_per_step_p50'])} | {fmt(row['step_ms_events']['p50'])} | "
            f"{fmt(p['p50'])} | {fmt(p['p95'])} | {fmt(row['tokenization_ms']['p50'])} |"
            + (f" {fmt(row['generate_minus_copies_ms']['p50'])} |" if host else "")
        )
    lines += ["", "All times in ms.", ""]
    names = {
        "generate_ms": "`backend.generate` (the loop)",
        "pipeline_minus_tokenization_ms": "whole request − tokenization",
        "generate_minus_copies_ms": "`backend.generate` − FakeCuda's stand-in device copies",
        "pipeline_minus_copies_ms": "whole request − tokenization − FakeCuda's stand-in device copies",
    }
    families = {"cfg": "with CFG (cond + uncond + sampler)", "guidance_1": "guidance 1 (cond + sampler)"}
    lines += [
        "| measured | presets | **ms / step** | ms / request (fixed) | goal ≤ 1.5 ms/step |",
        "|---|---|---|---|---|",
    ]
    for family, fits in result["fits"].items():
        for measure_, line in fits.items():
            verdict = "met" if line["ms_per_step"] <= GOAL_MS_PER_STEP else "missed"
            lines.append(
                f"| {names[measure_]} | {families[family]}, {line['points']} presets | "
                f"**{fmt(line['ms_per_step'])}** | {fmt(line['ms_per_request'], 2)} | {verdict} |"
            )
    lines += [
        "",
        "The whole-request lines carry the fixed per-request work (noise, RoPE tables, uint8 image: see the last "
        "table), whose jitter can swamp a few µs per step; read ms/step off the `generate` lines and the backend's "
        "own step timer.",
    ]
    counts = {
        p: row["cuda_calls_per_generate"] for p, row in result["presets"].items() if "cuda_calls_per_generate" in row
    }
    if counts:
        lines += ["", "CUDA calls in one `generate` (after capture):", ""]
        for preset, calls in counts.items():
            lines.append(f"* {preset}: " + ", ".join(f"{name} {n}" for name, n in calls.items()))
    return [*lines, ""]


# ---------------------------------------------------------------------------------------------------------------
# Main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cuda", choices=["auto", "real", "host"], default="auto",
                        help="real: cuda-python on the GPU; host: FakeCuda, a host stand-in (default: real if a "
                        "GPU is visible)")  # fmt: skip
    parser.add_argument("--engines", type=Path, metavar="DIR", help="an existing engine set (default: make a tiny one)")
    parser.add_argument("--work", type=Path, metavar="DIR", help="where to make (or find) the tiny engine set; kept")
    parser.add_argument("--bucket", default="1024x1024", help="bucket to run (default 1024x1024)")
    parser.add_argument("--presets", default=DEFAULT_PRESETS, help=f"comma list (default {DEFAULT_PRESETS})")
    parser.add_argument("--backends", default="tensorrt,onnxruntime", help="comma list: tensorrt, onnxruntime")
    parser.add_argument("--warmup", type=int, default=2, help="untimed requests per preset after the first (default 2)")
    parser.add_argument("--repeats", type=int, default=50, help="timed rounds (default 50)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write every number here")
    parser.add_argument("--markdown", type=Path, metavar="FILE", help="write the Markdown report here too")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.warmup < 0:
        parser.error("--repeats must be at least 1, --warmup at least 0")
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if not args.backends or set(args.backends) - {"tensorrt", "onnxruntime"}:
        parser.error("--backends: a comma list of tensorrt, onnxruntime")
    if args.engines is not None and args.work is not None:
        parser.error("give --engines DIR or --work DIR, not both")
    return args


@contextmanager
def work_folder(args: argparse.Namespace) -> Iterator[Path]:
    if args.work is not None:
        args.work.mkdir(parents=True, exist_ok=True)
        yield args.work
    else:
        with tempfile.TemporaryDirectory(prefix="bench_host_overhead.") as folder:
            yield Path(folder)


def choose_cuda(mode: str) -> tuple[Cuda, str]:
    if mode == "host":
        return FakeCuda(), "host"
    try:
        return real_cuda(), "real"
    except SetupError as exc:
        if mode == "real":
            raise SetupError(f"--cuda real: {exc}") from None
        log(f"--cuda auto: no usable GPU ({exc}); using FakeCuda, the host stand-in")
        return FakeCuda(), "host"


def tensorrt_bench(root: Path, manifest: Manifest, cuda: Cuda, tokenizer: PromptTokenizer, work: Path) -> Bench:
    from ideogram_trt.runtime.tensorrt_backend import TensorRTBackend

    trt_manifest = with_sampler(manifest, work / "stand-in-sampler")
    notes = []
    token: Callable[[int, int], None] | None = None
    if isinstance(cuda, FakeCuda):
        layer = "FakeCuda (host stand-in for the GPU)"
        notes.append(
            "FakeCuda: device memory is host memory and its copies (uploads, the sampler graph's 2 MiB latents "
            "copy, the image download) run on the host; a GPU does them asynchronously, so the '− stand-in "
            "copies' rows are the closer estimate of host overhead."
        )
    else:
        layer = "CudaRuntime (cuda-python, real GPU)"
        refused = probe_empty_graph(cuda)
        if refused is None:
            notes.append("An empty captured CUDA graph instantiates and launches: stand-in engines enqueue nothing.")
        else:
            token = memset_token
            notes.append(
                f"An empty captured CUDA graph was refused ({refused}): each stand-in engine enqueues one 1-byte "
                "cudaMemsetAsync into the scratch pool instead, so its graph has a node."
            )
            log(f"empty CUDA graph refused: {refused}; stand-in engines enqueue a 1-byte memset")
    module = FakeTensorRT(cuda, stand_in_plans(root, trt_manifest), on_enqueue=token)
    backend = TensorRTBackend(root, trt_manifest, cuda=cuda, module=module)
    timed = TimedTokenizer(tokenizer)
    pipe = Pipeline(root, trt_manifest, backend, cast(PromptTokenizer, timed))
    label = f"TensorRT backend: `TensorRTBackend` over FakeTensorRT stand-in engines, {layer}"
    return Bench("tensorrt", label, pipe, backend, timed, cuda if isinstance(cuda, FakeCuda) else None, notes)


def onnxruntime_bench(root: Path, manifest: Manifest, tokenizer: PromptTokenizer, work: Path) -> Bench:
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError as exc:
        raise PartUnavailable(f"the ONNX Runtime part needs onnx and onnxruntime ({exc})") from None
    from ideogram_trt.runtime.onnxruntime_backend import OnnxRuntimeBackend

    ort_manifest = with_stand_in_graphs(manifest, work / "stand-in-onnx")
    backend = OnnxRuntimeBackend(root, ort_manifest)
    timed = TimedTokenizer(tokenizer)
    pipe = Pipeline(root, ort_manifest, backend, cast(PromptTokenizer, timed))
    notes = [
        f"onnxruntime {onnxruntime.__version__}, providers {', '.join(backend.providers)}. The loop and the CFG "
        "blend + Euler update run on the host in numpy (core.sampling.denoise); each engine call is one "
        "`session.run` of a stand-in graph (Identity for the DiTs' velocity, ConstantOfShape zeros for the text "
        "encoder and the VAE's image), so a step still moves the 2 MiB latents in and out of ONNX Runtime."
    ]
    label = "ONNX Runtime backend: `OnnxRuntimeBackend` over stand-in ONNX graphs"
    return Bench("onnxruntime", label, pipe, backend, timed, None, notes)


def run(args: argparse.Namespace) -> dict[str, Any]:
    try:
        bucket = Bucket.parse(args.bucket)
        presets = [get_preset(p.strip()).name.value for p in args.presets.split(",") if p.strip()]
    except IdeogramTrtError as exc:
        raise SetupError(str(exc)) from None
    if not presets:
        raise SetupError("--presets: none given")
    cuda: Cuda | None = None
    cuda_mode = "none"
    if "tensorrt" in args.backends:
        cuda, cuda_mode = choose_cuda(args.cuda)
    results: dict[str, Any] = {"title": "runtime host overhead per denoising step", "note": STAND_IN_NOTE}
    results["environment"] = environment(args, cuda_mode)
    with work_folder(args) as work:
        started = time.perf_counter()
        root = args.engines if args.engines is not None else make_engine_set(work, bucket)
        manifest = Manifest.load(root)
        if bucket.name not in manifest.buckets:
            raise SetupError(f"{root}: no {bucket.name} bucket (it has {', '.join(manifest.buckets)})")
        if not manifest.tokenizer or "text_encoder" not in {e.graph for e in manifest.engines.values()}:
            raise SetupError(f"{root}: no text encoder or tokenizer; build the set with all four components")
        has_uncond = manifest.model.has_unconditional
        skipped = [p for p in presets if get_preset(p).needs_unconditional and not has_uncond]
        presets = [p for p in presets if p not in skipped]
        if skipped:
            log(f"skipping {', '.join(skipped)}: this engine set has no unconditional DiT")
        if not presets:
            raise SetupError("no preset left to run on this engine set")
        tokenizer = PromptTokenizer.from_dir(root / manifest.tokenizer)
        text_tokens = tokenizer.batch([PROMPT], max_tokens=manifest.max_text_tokens).lengths[0]
        results["engine_set"] = {
            "path": str(root) if args.engines is not None else None,
            "what": f"existing ({manifest.flavor.value})" if args.engines is not None else
                    "tiny random checkpoint, ONNX Runtime flavor (`make-tiny " + " ".join(TINY_ARGS) + "`)",
            "seconds_to_make": round(time.perf_counter() - started, 1),
            "bucket": bucket.name,
            "latents": f"1 x {bucket.tokens} x {manifest.model.latent_channels}",
            "image": f"1 x {bucket.height} x {bucket.width} x 3",
            "text_tokens": text_tokens,
            "max_text_tokens": manifest.max_text_tokens,
            "presets_skipped": skipped,
        }  # fmt: skip
        benches: list[Callable[[], Bench]] = []
        if cuda is not None:
            chosen = cuda
            results["cuda_layer"] = (
                "CudaRuntime on cuda-python (real device buffers, page-locked staging, stream capture, graph launches)"
                if cuda_mode == "real"
                else "FakeCuda, a host stand-in for the GPU (numpy memory)"
            )
            benches.append(lambda: tensorrt_bench(root, manifest, chosen, tokenizer, work))
        else:
            results["cuda_layer"] = "none (the TensorRT backend was not measured)"
        if "onnxruntime" in args.backends:
            benches.append(lambda: onnxruntime_bench(root, manifest, tokenizer, work))
        results["backends"] = {}
        for make in benches:
            try:
                bench = make()
            except PartUnavailable as exc:
                results["backends"]["onnxruntime"] = {"label": "ONNX Runtime backend", "skipped": str(exc)}
                log(f"ONNX Runtime part skipped: {exc}")
                continue
            log(f"measuring {bench.label}")
            samples = measure(bench, presets, bucket, args.warmup, args.repeats)
            results["backends"][bench.name] = report(bench, samples)
            save(results, args.json)
        results["fixed_host_work"] = fixed_host_work(manifest, bucket, text_tokens, max(args.repeats, 5))
    return results


def save(results: dict[str, Any], path: Path | None) -> None:
    if path is not None:
        path.write_text(json.dumps(results, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        results = run(args)
    except (SetupError, IdeogramTrtError) as exc:
        print(f"bench_host_overhead: {exc}", file=sys.stderr)
        return 2
    save(results, args.json)
    text = markdown(results)
    print(text)
    if args.markdown is not None:
        args.markdown.write_text(text)
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
