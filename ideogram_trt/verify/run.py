"""``ideogram-trt verify``: prove an engine set right and fast on this machine (docs/VERIFY.md).

In order: what ``inspect`` checks (this machine, the files' hashes, the set's structure); the checkpoint and
calibration the manifest says the set was built from; the tokenizer against the checkpoint's; each plan's
optimization profiles against the manifest's; every engine, on seeded inputs at each bucket's shapes and two text
lengths, against the fp32 PyTorch reference (``verify.reference``); whole requests against the PyTorch pipeline,
same noise and schedule; and the times per stage and per step next to the model of the plans' anatomy.

Every number compares the engine with the reference, never with itself. Checks that cannot run (the set does not
load here) are SKIPs that say why; the report's verdict is FAIL when any check fails.
"""

from __future__ import annotations

import hashlib
import platform
import shlex
import statistics
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ideogram_trt import __version__
from ideogram_trt.core import contracts as io
from ideogram_trt.core.buckets import Bucket
from ideogram_trt.core.cards import Card, card, card_for_gpu
from ideogram_trt.core.components import Component
from ideogram_trt.core.errors import IdeogramTrtError, InputError
from ideogram_trt.core.gpu import card_lines
from ideogram_trt.core.host import cpu_model, package_version
from ideogram_trt.core.manifest import EngineEntry, Manifest, RuntimeEnv, engine_set_problems, runtime_version
from ideogram_trt.core.progress import StepBar
from ideogram_trt.core.recipes import Recipe, parse_enum
from ideogram_trt.core.sampling import euler_update
from ideogram_trt.core.shapes import Sizes
from ideogram_trt.core.sidecar import ExportSettings, ExportSidecar, sidecar_path
from ideogram_trt.core.tokenization import PromptTokenizer
from ideogram_trt.runtime.backend import Backend
from ideogram_trt.verify.bounds import Bounds, bounds_for
from ideogram_trt.verify.report import Check, CheckKind, Report, Status, passed_if

# Two captions of the kind Ideogram 4 is prompted with, of different lengths (the e2e check's prompts).
DEFAULT_PROMPTS = (
    '{"subject":"a lighthouse on a cliff at dusk","style":"oil painting","lighting":"warm low sun"}',
    "a red fox in fresh snow",
)
SHORT_TEXT = 7  # the short text length of the engine checks; the long one is the set's longest
PROBE_TIMESTEP = 0.625  # the DiT checks' model time: mid-schedule, and exact in bf16 and fp16 (see Reference)
PROBE_GUIDANCE, PROBE_STEP = 4.5, -0.05  # the sampler check's blend and step size
PROBE_LORA_RANK = 4  # the random adapter a LoRA-ready DiT's checks carry
DEFAULT_REPEATS = 3
STEP = "step"  # the timing check of one denoising step (both DiTs and the sampler); the others are named by stage
DEFAULT_MAX_SLOWDOWN = 2.0  # measured / modeled time a stage may reach before its timing check fails

# (engine set folder, its manifest) → a backend: the real one by default; the tests pass the fake GPU's.
OpenBackend = Callable[[Path, Manifest], Backend]


@dataclass(frozen=True)
class VerifyRequest:
    engines: Path
    checkpoint: Path
    buckets: tuple[str, ...] = ()  # default: the set's first bucket
    preset: str | None = None
    steps: int | None = None
    prompts: tuple[str, ...] = DEFAULT_PROMPTS
    calibration: Path | None = None
    recipe_bounds: Path | None = None
    device: str | None = None  # torch device of the reference; default cuda where visible
    repeats: int = DEFAULT_REPEATS
    card: str | None = None  # default: the card of this machine's GPU 0, when the table has it
    max_slowdown: float = DEFAULT_MAX_SLOWDOWN
    allow_other_gpu: bool = False
    backend: str | None = None
    images: Path | None = None  # a new or empty folder: engine | reference | difference, per end-to-end image
    command: str = ""


def command_line(argv: list[str]) -> str:
    """The command as a user would paste it into a shell."""
    return shlex.join(["ideogram-trt", *argv])


def verify(
    request: VerifyRequest,
    env: RuntimeEnv | None = None,
    open_backend: OpenBackend | None = None,
    quiet: bool = False,
) -> Report:
    """Run every check; the report says PASS or FAIL per check. Bad input (no manifest, no checkpoint, a
    missing calibration file) is an InputError before anything runs."""
    import torch

    from ideogram_trt.export.calibration import Calibration
    from ideogram_trt.model.checkpoint import open_checkpoint
    from ideogram_trt.verify.reference import Reference

    _check_request(request)
    root = request.engines
    manifest = Manifest.load(root)
    checkpoint = open_checkpoint(request.checkpoint)
    buckets = _buckets(manifest, request.buckets)
    recipe = parse_enum(Recipe, manifest.recipe, "recipe")
    bounds, bounds_source = bounds_for(manifest.recipe, manifest.dtype, request.recipe_bounds)
    calibration = None
    if manifest.calibration is not None:
        if request.calibration is None:
            raise InputError(
                f"{root} was built with activation scales from a calibration file (sha256 {manifest.calibration[:16]}"
                "…); the reference needs the same file: pass --calibration FILE"
            )
        calibration = Calibration.load(request.calibration)
    device = request.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {device}: no CUDA device is visible to torch here (use --device cpu)")
    settings, settings_source = _export_settings(root, manifest)
    env = env or RuntimeEnv.detect()

    report = Report(
        command=request.command,
        created=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        machine=_machine(env, manifest, device),
        engine_set=_engine_set(root, manifest, buckets),
        reference={
            "checkpoint": str(checkpoint.root),
            "device": device,
            "dtype": "float32",
            "recipe": recipe.value,
            "export_settings": {
                "quantize_attention": settings.quantize_attention,
                "quantize_text_encoder": settings.quantize_text_encoder,
                "excluded": list(settings.excluded),
                "from": settings_source,
            },
            "calibration": None if calibration is None else calibration.sha256,
        },
        bounds={**bounds.to_json(), "source": bounds_source},
        version=__version__,
    )
    add = report.checks.append

    problems = engine_set_problems(root, manifest, env, allow_other_gpu=request.allow_other_gpu)
    for name, found in (("machine", problems.machine), ("files", problems.files), ("structure", problems.structure)):
        add(Check(CheckKind.ENGINE_SET, name, passed_if(not found), detail="; ".join(found) or _OK[name]))
    for check in _provenance(manifest, checkpoint, calibration):
        add(check)
    for check in _recipe_checks(root, manifest, recipe):
        add(check)
    add(_tokenizer_check(root, manifest, checkpoint, request.prompts))

    planned = _engine_probes(manifest, buckets)
    if problems.all:
        why = "the engine set cannot run on this machine (see the engine_set checks)"
        for probe in planned:
            add(Check(CheckKind.ENGINE, probe.name, Status.SKIP, detail=why))
        add(Check(CheckKind.END_TO_END, "end to end", Status.SKIP, detail=why))
        add(Check(CheckKind.TIMING, "timing", Status.SKIP, detail=why))
        return report

    from ideogram_trt.runtime.backends import choose_backend
    from ideogram_trt.runtime.pipeline import Pipeline

    spec = choose_backend(root, manifest, request.backend)
    backend = (open_backend or spec.factory)(root, manifest)
    for check in _profile_checks(backend, manifest):
        add(check)
    reference = Reference(checkpoint, recipe, settings, calibration, device, timestep_dtype=_timestep_dtype(manifest),
                          lora=manifest.model.lora)  # fmt: skip
    # Every input first (the DiTs' text comes from the reference text encoder), then the checks in the probes'
    # order, engine by engine: each reference module is built once, not once per probe.
    inputs = [_probe_inputs(probe, manifest, reference) for probe in planned]
    with StepBar("verify: engines against the PyTorch reference", len(planned), quiet=quiet) as bar:
        for probe, feeds in zip(planned, inputs, strict=True):
            add(_engine_check(probe, feeds, backend, reference, bounds))
            bar.advance()
        reference.release()
    pipe = Pipeline(root, manifest, backend, PromptTokenizer.from_dir(root / manifest.tokenizer))
    for bucket in buckets:
        for check in _end_to_end(pipe, reference, bucket, request, bounds, quiet):
            add(check)
    reference.release()
    for check in _timing(pipe, root, manifest, buckets[0], request, env):
        add(check)
    return report


def _timestep_dtype(manifest: Manifest) -> Any:
    from ideogram_trt.export.recipes import GraphDType

    dtype = parse_enum(GraphDType, manifest.dtype, "dtype")
    return None if dtype is GraphDType.FP32 else dtype.torch


_OK = {
    "machine": "runtime version and GPUs match what the plans were built for",
    "files": "every file's sha256 matches the manifest",
    "structure": "every engine, bucket profile and the tokenizer a request needs are there",
}


def _check_request(request: VerifyRequest) -> None:
    if not request.prompts:
        raise InputError("verify needs at least one prompt")
    if isinstance(request.repeats, bool) or not 1 <= request.repeats <= 100:
        raise InputError(f"--repeats {request.repeats!r}: give a whole number of timed runs from 1 to 100")
    if not 1.0 <= request.max_slowdown < float("inf"):
        raise InputError(f"--max-slowdown {request.max_slowdown!r}: give a ratio of at least 1")
    if request.card is not None:
        card(request.card)  # an unknown card is refused before anything runs
    if request.images is not None:
        folder = request.images
        if folder.is_symlink() or (folder.exists() and (not folder.is_dir() or any(folder.iterdir()))):
            raise InputError(f"--images {folder}: give a new or empty folder (verify writes only its own PNGs there)")


def _buckets(manifest: Manifest, asked: tuple[str, ...]) -> list[Bucket]:
    if not asked:
        return manifest.bucket_objects[:1]
    if asked == ("all",):
        return manifest.bucket_objects
    chosen = []
    for name in asked:
        bucket = Bucket.parse(name)
        if bucket.name not in manifest.buckets:
            raise InputError(f"--bucket {name}: not a bucket of this engine set (it has {', '.join(manifest.buckets)})")
        chosen.append(bucket)
    return chosen


def _export_settings(root: Path, manifest: Manifest) -> tuple[ExportSettings, str]:
    """How the graphs were exported (attention and text-encoder quantization, exclusions), from the set's own
    export sidecars where they are the graphs the plans were built from; the defaults otherwise."""
    folder = root / "onnx"
    for entry in manifest.engines.values():
        if not entry.graph.spec.exported or not sidecar_path(folder, entry.graph).is_file():
            continue
        try:
            sidecar = ExportSidecar.load(folder, entry.graph)
        except IdeogramTrtError:
            continue
        if sidecar.file_sha256 == entry.onnx_sha256 and sidecar.provenance is not None:
            return sidecar.provenance.options, str(sidecar_path(folder, entry.graph))
    return ExportSettings(False, False, []), "defaults (no export sidecar of these plans in the engine set)"


def _machine(env: RuntimeEnv, manifest: Manifest, device: str) -> dict[str, Any]:
    import torch

    gpus = [f"{g.name} (sm {g.compute_capability}, {g.memory_mib} MiB)" for g in env.gpus]
    return {
        "host": platform.node(),
        "cpu": cpu_model(),
        "gpus": gpus,
        "nvidia_smi": card_lines(),  # name, driver, max SM clock, power limit
        "runtime": f"{manifest.flavor.value} {env.versions.get(manifest.flavor) or 'not installed'}",
        "torch": torch.__version__,
        "reference_device": torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu",
        "onnxruntime": runtime_version(manifest.flavor.ONNXRUNTIME) or "not installed",
        "polygraphy": package_version("polygraphy") or "not installed",
        "python": platform.python_version(),
    }


def _engine_set(root: Path, manifest: Manifest, buckets: list[Bucket]) -> dict[str, Any]:
    from ideogram_trt.core.digest import file_digest
    from ideogram_trt.core.manifest import MANIFEST_FILE

    return {
        "path": str(root),
        "id": file_digest(root / MANIFEST_FILE),
        "flavor": manifest.flavor.value,
        "runtime_version": manifest.runtime_version,
        "compute_capabilities": manifest.compute_capabilities,
        "recipe": manifest.recipe,
        "dtype": manifest.dtype,
        "buckets": manifest.buckets,
        "verified_buckets": [b.name for b in buckets],
        "max_text_tokens": manifest.max_text_tokens,
        "engines": list(manifest.engines),
    }


# --- provenance and tokenizer ---------------------------------------------------------------------------------


def _provenance(manifest: Manifest, checkpoint: Any, calibration: Any) -> Iterator[Check]:
    for name, recorded in sorted(manifest.checkpoint.items()):
        graph = Component(name)
        ours = checkpoint.fingerprint(graph.spec.part_names)
        yield Check(
            CheckKind.PROVENANCE,
            f"checkpoint: {name}",
            passed_if(ours == recorded),
            detail=f"{', '.join(graph.spec.part_names)} of {checkpoint.root}"
            + ("" if ours == recorded else f": fingerprint {ours[:16]}…, the manifest says {recorded[:16]}…"),
        )
    if manifest.calibration is not None:
        same = calibration.sha256 == manifest.calibration
        yield Check(
            CheckKind.PROVENANCE,
            "calibration",
            passed_if(same),
            detail="the file the activation scales came from"
            if same
            else f"sha256 {calibration.sha256[:16]}…, the manifest says {manifest.calibration[:16]}…",
        )


def _recipe_checks(root: Path, manifest: Manifest, recipe: Recipe) -> Iterator[Check]:
    """What TensorRT built, from each DiT plan's anatomy (recorded at build time, hash-checked): under the fp8
    recipe every DiT block runs FP8 GEMMs; under fp8-wo and bf16 none does."""
    if not manifest.flavor.is_tensorrt:
        return
    from ideogram_trt.engines.anatomy import block_patterns
    from ideogram_trt.engines.anatomy_report import load_anatomy

    for entry in manifest.engines.values():
        if entry.graph.spec.serves not in (Component.DIT_COND, Component.DIT_UNCOND):
            continue
        name = f"recipe: {entry.name}"
        try:
            anatomy = load_anatomy(root, entry)
        except IdeogramTrtError as exc:
            yield Check(CheckKind.PROVENANCE, name, Status.SKIP, detail=f"no anatomy to read ({exc})")
            continue
        blocks = block_patterns([layer for layer in anatomy.layers if layer.profile == anatomy.profiles[0].index])
        fp8 = [block for block, pattern in blocks.items() if pattern.fp8_gemm]
        if recipe is Recipe.FP8:
            ok, seen = len(fp8) == len(blocks) > 0, f"{len(fp8)} of {len(blocks)} DiT blocks run FP8 GEMMs"
        else:
            ok, seen = not fp8, f"{len(fp8)} of {len(blocks)} DiT blocks run FP8 GEMMs"
        want = "every block" if recipe is Recipe.FP8 else "none"
        yield Check(
            CheckKind.PROVENANCE,
            name,
            passed_if(ok),
            detail=f"{seen} (the {recipe.value} recipe: {want})"
            + ("" if ok else f": the plan was not built from a {recipe.value} export; rebuild the engine set"),
        )


def _tokenizer_check(root: Path, manifest: Manifest, checkpoint: Any, prompts: tuple[str, ...]) -> Check:
    """The set's tokenizer must turn prompts into the ids the checkpoint's does (chat template included)."""
    probes = [*prompts, "Ünïcødé — 漢字, emoji 🦊, tabs\tand\nnew lines", "a" * 40]
    try:
        ours = PromptTokenizer.from_dir(root / manifest.tokenizer)
    except IdeogramTrtError as exc:
        return Check(CheckKind.TOKENIZER, "tokenizer", Status.FAIL, detail=f"the set's tokenizer does not load: {exc}")
    theirs = PromptTokenizer.from_dir(checkpoint.tokenizer_dir)
    for prompt in probes:
        a, b = ours.encode(prompt, manifest.max_text_tokens), theirs.encode(prompt, manifest.max_text_tokens)
        if a != b:
            first = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
            return Check(
                CheckKind.TOKENIZER,
                "tokenizer",
                Status.FAIL,
                detail=f"prompt {prompt[:40]!r}: the set's tokenizer gives {len(a)} ids, the checkpoint's {len(b)}, "
                f"first different at position {first}: rebuild the engine set from this checkpoint",
            )
    return Check(CheckKind.TOKENIZER, "tokenizer", Status.PASS, detail=f"same ids on {len(probes)} prompts")


# --- profiles ---------------------------------------------------------------------------------------------------


def _profile_checks(backend: Backend, manifest: Manifest) -> Iterator[Check]:
    """Each plan's optimization profiles, as TensorRT reports them, against the manifest's (ONNX Runtime graphs
    have none: they take any shape)."""
    read = getattr(backend, "plan_profiles", None)
    for entry in manifest.engines.values():
        name = f"profiles: {entry.name}"
        if read is None:
            yield Check(CheckKind.PROFILES, name, Status.SKIP, detail="ONNX Runtime graphs have no profiles")
            continue
        plan = read(entry.name)
        wrong = []
        for profile in entry.profiles:
            where = f"profile {profile.index}" + (f" ({profile.bucket})" if profile.bucket else "")
            if profile.index >= len(plan):
                wrong.append(f"{where} is not in the plan (it has {len(plan)})")
                continue
            for tensor, ranges in profile.shapes.items():
                expected = (tuple(ranges.min), tuple(ranges.opt), tuple(ranges.max))
                if plan[profile.index].get(tensor) != expected:
                    wrong.append(f"{where} {tensor}: plan {plan[profile.index].get(tensor)}, manifest {expected}")
        if len(plan) > len(entry.profiles):
            wrong.append(f"the plan has {len(plan)} profiles, the manifest names {len(entry.profiles)}")
        yield Check(
            CheckKind.PROFILES,
            name,
            passed_if(not wrong),
            detail="; ".join(wrong[:3]) + (" (rebuild the engine set)" if wrong else "")
            or f"{len(plan)} profiles, every input range as the manifest says",
        )


# --- engines ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """One engine call verify makes: the engine, its bucket (None: the text encoder) and text length."""

    entry: EngineEntry
    bucket: Bucket | None
    text: int | None

    @property
    def name(self) -> str:
        where = f"@{self.bucket.name}" if self.bucket is not None else ""
        return f"{self.entry.graph.value}{where}" + (f" T={self.text}" if self.text is not None else "")

    @property
    def seed(self) -> int:
        """The inputs' seed: the first 8 bytes of sha256(name), big-endian (docs/VERIFY.md §2), so anyone can
        draw the same inputs from a report."""
        return int.from_bytes(hashlib.sha256(self.name.encode()).digest()[:8], "big")


def _engine_probes(manifest: Manifest, buckets: list[Bucket]) -> list[Probe]:
    lengths = sorted({min(SHORT_TEXT, manifest.max_text_tokens), manifest.max_text_tokens})
    probes: list[Probe] = []
    for entry in manifest.engines.values():
        texted = any("T" in spec.shape or "T+N" in spec.shape for spec in entry.inputs)
        wheres: list[Bucket | None] = (
            [b for b in buckets if not entry.buckets or b.name in entry.buckets]
            if entry.graph.spec.per_bucket
            else [None]
        )
        for bucket in wheres:
            for text in lengths if texted else [None]:
                probes.append(Probe(entry, bucket, text))
    return probes


def _engine_check(
    probe: Probe, feeds: dict[str, np.ndarray], backend: Backend, reference: Any, bounds: Bounds
) -> Check:
    graph, entry = probe.entry.graph, probe.entry
    try:
        ran = backend.run_engine(graph, None if probe.bucket is None else probe.bucket.name, feeds)
    except IdeogramTrtError as exc:
        return Check(CheckKind.ENGINE, probe.name, Status.FAIL, detail=f"the engine did not run: {exc}")
    host = {name: np.asarray(value, dtype=np.float32) for name, value in feeds.items()}
    if graph is Component.SAMPLER:  # core.sampling's update, in float32 numpy: what the sampler engine must do
        # (numpy's operators are typed narrower than core.sampling's ArrayLike; they are the same ops.)
        update = euler_update(host[io.LATENTS], host[io.VELOCITY_COND], host[io.VELOCITY_UNCOND],  # type: ignore[type-var]
                              PROBE_GUIDANCE, PROBE_STEP)  # fmt: skip
        expected = {io.LATENTS_NEXT: np.asarray(update, dtype=np.float32)}
    else:
        (output,) = entry.outputs
        expected = {output.name: reference.run(graph, [host[spec.name] for spec in entry.inputs])}
    worst: tuple[float, str] = (float("inf"), "")
    for name, want in expected.items():
        got = np.asarray(ran[name], dtype=np.float32)
        if got.shape != want.shape:
            return Check(CheckKind.ENGINE, probe.name, Status.FAIL,
                         detail=f"{name}: the engine gave shape {got.shape}, the reference {want.shape}")  # fmt: skip
        if not np.isfinite(got).all():
            return Check(CheckKind.ENGINE, probe.name, Status.FAIL, detail=f"{name}: the engine gave NaN or Inf")
        worst = min(worst, (snr_db(want, got), name))
    value, name = worst
    return Check(
        CheckKind.ENGINE,
        probe.name,
        passed_if(value >= bounds.engine_snr_db),
        metric="snr_db",
        value=value,
        bound=bounds.engine_snr_db,
        detail=f"{name}, batch 1, seed {probe.seed}" + ("" if value >= bounds.engine_snr_db else _engine_hint(graph)),
    )


def _engine_hint(graph: Component) -> str:
    return (
        f": {graph.value} computes something else than the checkpoint under the manifest's recipe: a plan built "
        "from another recipe, checkpoint or calibration, or a broken build (docs/VERIFY.md §4)"
    )


def _probe_inputs(probe: Probe, manifest: Manifest, reference: Any) -> dict[str, np.ndarray]:
    """Seeded inputs at the probe's shapes, in the engine's dtypes: token ids, unit-normal latents and velocities,
    the text encoder's reference output as the DiT's text, real RoPE tables."""
    rng = np.random.default_rng(probe.seed)
    entry, bucket = probe.entry, probe.bucket
    text = probe.text or 0  # 0 only for graphs that take no text
    grid = bucket.grid if bucket is not None else (1, 1)
    tokens = grid[0] * grid[1]
    channels = manifest.model.latent_channels or 0
    values: dict[str, np.ndarray] = {}
    for spec in entry.inputs:
        name = spec.name
        if name == io.INPUT_IDS:
            vocab = reference.checkpoint.text_encoder.vocab_size
            values[name] = rng.integers(0, vocab, size=(1, text)).astype(np.int32)
        elif name in (io.ATTENTION_MASK, io.TEXT_MASK):
            values[name] = np.ones((1, text), dtype=np.int32)
        elif name == io.LATENTS:
            shape = (1, grid[0], grid[1], channels) if entry.graph is Component.VAE_DECODER else (1, tokens, channels)
            values[name] = rng.standard_normal(shape, dtype=np.float32)
        elif name in (io.VELOCITY_COND, io.VELOCITY_UNCOND):
            values[name] = rng.standard_normal((1, tokens, channels), dtype=np.float32)
        elif name == io.TEXT_HIDDEN:
            ids = rng.integers(0, reference.checkpoint.text_encoder.vocab_size, size=(1, text)).astype(np.int32)
            values[name] = reference.run(Component.TEXT_ENCODER, [ids, np.ones_like(ids)])
        elif name == io.TIMESTEP:
            values[name] = np.full((1,), PROBE_TIMESTEP, dtype=np.float32)
        elif name in (io.ROPE_COS, io.ROPE_SIN):
            tables = reference.cond_tables(text, grid) if probe.text is not None else reference.image_tables(grid)
            table = tables[0 if name == io.ROPE_COS else 1]
            values[name] = table[None] if len(spec.shape) == 3 else table
        elif name == io.GUIDANCE:
            values[name] = np.array([PROBE_GUIDANCE], dtype=np.float32)
        elif manifest.model.lora is not None and name in manifest.model.lora.input_names:
            # A random adapter of rank PROBE_LORA_RANK, its update a few tenths of the weights' scale: the engine's
            # side path is checked against the reference's, not just fed zeros (docs/VERIFY.md §2).
            rank = min(PROBE_LORA_RANK, manifest.model.lora.max_rank)
            factor = Sizes(lora_rank=rank).resolve(spec.shape)
            width = factor[1] if name.endswith("_a") else rank  # Aᵀ [layers, in, rank]; Bᵀ [layers, rank, out]
            values[name] = (0.3 / width**0.5) * rng.standard_normal(factor, dtype=np.float32)
        elif name == io.STEP:
            values[name] = np.array([PROBE_STEP], dtype=np.float32)
        else:
            raise IdeogramTrtError(f"{entry.name}: verify has no inputs for {name!r} (a newer engine set?)")
        values[name] = as_engine_dtype(values[name], spec.dtype)
    return values


def as_engine_dtype(array: np.ndarray, dtype: str) -> np.ndarray:
    """``array`` in a manifest dtype; bfloat16 through ml_dtypes (the same bytes TensorRT reads)."""
    if dtype == "bfloat16":
        import ml_dtypes

        return np.asarray(array, dtype=np.float32).astype(ml_dtypes.bfloat16)
    return np.ascontiguousarray(array, dtype={"float32": np.float32, "float16": np.float16, "int32": np.int32}[dtype])


def snr_db(reference: np.ndarray, engine: np.ndarray) -> float:
    """polygraphy's SNR of ``engine`` against ``reference``: 10·log10(Σ ref² / Σ (ref − engine)²); inf if equal."""
    from polygraphy.comparator.compare import SnrCompareFunc

    return float(_polygraphy(SnrCompareFunc, "snr", reference, engine))


def psnr_db(reference: np.ndarray, engine: np.ndarray) -> float:
    """polygraphy's PSNR with the reference's largest value as the peak."""
    from polygraphy.comparator.compare import PsnrCompareFunc

    return float(_polygraphy(PsnrCompareFunc, "psnr", reference, engine))


def _polygraphy(func: Any, field: str, reference: np.ndarray, engine: np.ndarray) -> float:
    from polygraphy.comparator import IterationResult
    from polygraphy.logger import G_LOGGER

    G_LOGGER.module_severity = G_LOGGER.CRITICAL  # its per-output log lines would bury the progress bar
    ours = {"x": np.ascontiguousarray(reference, dtype=np.float32)}
    theirs = {"x": np.ascontiguousarray(engine, dtype=np.float32)}
    result = func()(IterationResult(ours, runner_name="reference"), IterationResult(theirs, runner_name="engine"))
    return float(getattr(result["x"], field))


# --- end to end -----------------------------------------------------------------------------------------------


def _end_to_end(
    pipe: Any, reference: Any, bucket: Bucket, request: VerifyRequest, bounds: Bounds, quiet: bool
) -> Iterator[Check]:
    from ideogram_trt.core.progress import stage

    prompts = list(request.prompts)
    try:
        with stage(f"verify: {len(prompts)} prompts end to end at {bucket.name} on the engines", quiet=quiet):
            ours = pipe(prompts, bucket=bucket.name, preset=request.preset, steps=request.steps, seed=0)
    except IdeogramTrtError as exc:
        yield Check(CheckKind.END_TO_END, f"generate@{bucket.name}", Status.FAIL, detail=f"generate failed: {exc}")
        return
    with stage(f"verify: the same {len(prompts)} prompts in the PyTorch reference", quiet=quiet):
        theirs = reference.generate(prompts, bucket.grid, ours.schedule, 0, pipe.manifest.max_text_tokens)
    # Both sides as the 8-bit image a user gets (round half to even of x·255, as diffusers' numpy_to_pil).
    images = np.asarray(ours.images, dtype=np.float32) / 255.0
    wanted = np.rint(np.clip(theirs.images, 0.0, 1.0) * 255.0) / 255.0
    for index in range(len(prompts)):
        label = f"prompt {index + 1}@{bucket.name}"
        schedule = f"{ours.preset}, {ours.schedule.steps} steps, seed {index}"
        latent = snr_db(theirs.latents[index], ours.latents[index])
        yield Check(CheckKind.END_TO_END, f"latents {label}", passed_if(latent >= bounds.latent_snr_db),
                    metric="snr_db", value=latent, bound=bounds.latent_snr_db, detail=schedule)  # fmt: skip
        image = psnr_db(wanted[index], images[index])
        shown = ""
        if request.images is not None:
            shown = f"; {_save_comparison(request.images, label, ours.images[index], wanted[index], image)}"
        yield Check(CheckKind.END_TO_END, f"image {label}", passed_if(image >= bounds.image_psnr_db),
                    metric="psnr_db", value=image, bound=bounds.image_psnr_db,
                    detail=f"8-bit images; {schedule}{shown}")  # fmt: skip


DIFFERENCE_GAIN = 8  # the difference panel shows |engine − reference| × 8: one 8-bit level is visible


def _save_comparison(folder: Path, label: str, engine: np.ndarray, reference: np.ndarray, psnr: float) -> Path:
    """One PNG: the engines' image, the reference's, and their difference amplified, side by side."""
    from ideogram_trt.runtime.images import save_png

    ours = np.asarray(engine, dtype=np.uint8)
    theirs = np.rint(np.asarray(reference) * 255.0).astype(np.uint8)
    difference = np.clip(np.abs(ours.astype(np.int16) - theirs.astype(np.int16)) * DIFFERENCE_GAIN, 0, 255)
    gap = np.full((ours.shape[0], 4, 3), 255, dtype=np.uint8)
    strip = np.concatenate([ours, gap, theirs, gap, difference.astype(np.uint8)], axis=1)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (label.replace(" ", "-").replace("@", "_") + ".png")
    notes = {"verify": f"engines | reference | |difference| x {DIFFERENCE_GAIN}; PSNR {psnr:.2f} dB"}
    return save_png(strip, path, notes)


# --- timing ---------------------------------------------------------------------------------------------------


def _timing(
    pipe: Any, root: Path, manifest: Manifest, bucket: Bucket, request: VerifyRequest, env: RuntimeEnv
) -> Iterator[Check]:
    """Per stage and per step, the median of ``repeats`` requests (after the end-to-end run warmed everything),
    from the backend's clocks (CUDA events on a GPU), next to the model of the plans' anatomy."""
    prompt = request.prompts[0]
    try:
        runs = [pipe(prompt, bucket=bucket.name, preset=request.preset, steps=request.steps, seed=k + 1)
                for k in range(request.repeats)]  # fmt: skip
    except IdeogramTrtError as exc:
        yield Check(CheckKind.TIMING, "timing", Status.FAIL, detail=f"requests at {bucket.name} did not run: {exc}")
        return
    text_tokens = len(pipe.tokenizer.encode(prompt, manifest.max_text_tokens))
    measured = {
        Component.TEXT_ENCODER.value: statistics.median(r.timings.text_encoder for r in runs) * 1e3,
        STEP: statistics.median(s for r in runs for s in r.timings.steps) * 1e3,
        Component.VAE_DECODER.value: statistics.median(r.timings.vae for r in runs) * 1e3,
    }
    modeled, why = _modeled(root, manifest, bucket, runs[0].preset, text_tokens, request, env)
    where = f"{bucket.name}, {text_tokens} text tokens, median of {request.repeats} ({pipe.backend.name})"
    for stage_name, ms in measured.items():
        model = None if modeled is None else modeled.get(stage_name)
        if not model:
            yield Check(CheckKind.TIMING, stage_name, Status.INFO, metric="ms", value=ms,
                        detail=f"measured, {where}; {why}")  # fmt: skip
            continue
        ratio = ms / model
        yield Check(CheckKind.TIMING, stage_name, passed_if(ratio <= request.max_slowdown), metric="ratio",
                    value=ratio, bound=request.max_slowdown,
                    detail=f"measured {ms:.2f} ms / modeled {model:.2f} ms; {where}")  # fmt: skip
    total = statistics.median(r.timings.total for r in runs)
    floor = (
        ""
        if modeled is None
        else f"; modeled {modeled['end_to_end_s']:.3f} s, FLOP floor {modeled['flop_floor_s']:.3f} s"
    )
    yield Check(CheckKind.TIMING, "end to end", Status.INFO, metric="ms", value=total * 1e3,
                detail=f"{runs[0].preset}, {len(runs[0].timings.steps)} steps, {where}{floor}")  # fmt: skip


def _modeled(
    root: Path, manifest: Manifest, bucket: Bucket, preset: str, text_tokens: int, request: VerifyRequest,
    env: RuntimeEnv,
) -> tuple[dict[str, float] | None, str]:  # fmt: skip
    """Modeled ms per stage (engines/step_model.py) for this GPU's card, or None and why not."""
    if not manifest.flavor.is_tensorrt:
        return None, "an ONNX Runtime set has no anatomy to model"
    chosen: Card | None = card(request.card) if request.card else None
    if chosen is None and env.gpus:
        chosen = card_for_gpu(env.gpus[0].name)
    if chosen is None:
        return None, "no card in the table matches this GPU (pass --card)"
    from ideogram_trt.engines.anatomy_report import anatomies_for_request, model_report

    try:
        anatomies = anatomies_for_request(root, manifest, bucket)
    except IdeogramTrtError as exc:
        return None, f"no anatomy to model ({exc})"
    report = model_report(anatomies, bucket, preset, text_tokens, chosen, datasheet=False)
    stages = {name: (run or {}).get("ms", 0.0) for name, run in report["stages"].items()}
    step = stages["dit_cond_pass"] + (stages["dit_uncond_pass"] * report["uncond_steps"] / max(report["steps"], 1))
    return {
        Component.TEXT_ENCODER.value: stages[Component.TEXT_ENCODER.value],
        STEP: step,
        Component.VAE_DECODER.value: stages[Component.VAE_DECODER.value],
        "end_to_end_s": report["end_to_end_s"],
        "flop_floor_s": report["flop_floor_s"],
    }, ""
