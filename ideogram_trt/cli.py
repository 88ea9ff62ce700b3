"""``ideogram-trt``: one entry point, one subcommand per job.

Errors the user can fix print as one ``error:`` line and exit 2; nothing prints a traceback unless
IDEOGRAM_TRT_DEBUG=1. Heavy imports (torch, transformers, diffusers) happen inside the subcommand that needs them,
so ``--help`` is instant and a serving install without them still runs the commands it can.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from ideogram_trt import __version__
from ideogram_trt.core.errors import IdeogramTrtError
from ideogram_trt.core.recipes import CALIBRATED_RECIPES, DEFAULT_OPSET, DEFAULT_RECIPE, Recipe
from ideogram_trt.runtime.backends import backend_names

DEBUG_ENV = "IDEOGRAM_TRT_DEBUG"
ALLOW_OTHER_GPU_HELP = (
    "run datacenter TensorRT plans built on another GPU model of the same compute capability (refused by default)"
)
DEFAULT_COMPONENTS = "text_encoder,dit_cond,dit_uncond,vae_decoder"
DEFAULT_EXTERNAL_DATA = "auto"


@dataclass(frozen=True)
class Option:
    """One command-line option, declared once for every subcommand that takes it with the same meaning."""

    flags: tuple[str, ...]
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def dest(self) -> str:
        return str(self.settings.get("dest") or self.flags[-1].lstrip("-").replace("-", "_"))

    def add_to(self, parser: argparse._ActionsContainer, **changes: Any) -> argparse.Action:
        """Add it to ``parser``; ``changes`` override settings where one subcommand words a flag its own way."""
        return parser.add_argument(*self.flags, **{**self.settings, **changes})


def option(*flags: str, **settings: Any) -> Option:
    return Option(flags, settings)


def add_options(
    parser: argparse._ActionsContainer, options: Sequence[Option], changes: dict[str, dict[str, Any]] | None = None
) -> None:
    """Add ``options`` in order; ``changes`` (by dest) are what one subcommand words or defaults its own way."""
    for item in options:
        item.add_to(parser, **(changes or {}).get(item.dest, {}))


def _recipe_list() -> str:
    """``bf16 (dequantized weights), fp8-wo (...), fp8 (...; needs --calibration)``, from the Recipe enum."""
    return ", ".join(f"{r.value} ({r.summary}{'; needs --calibration' if r.needs_calibration else ''})" for r in Recipe)


RECIPE = option(
    "--recipe",
    default=DEFAULT_RECIPE.value,
    help=f"{' | '.join(r.value for r in Recipe)} (default {DEFAULT_RECIPE.value})",
)
CALIBRATION = option(
    "--calibration",
    type=Path,
    metavar="FILE",
    help=f"calibration file ({' | '.join(r.value for r in CALIBRATED_RECIPES)} recipe)",
)
EXPORT_COMPONENTS = option(
    "--components",
    default=DEFAULT_COMPONENTS,
    help="comma-separated graphs (also: dit_cond_masked, for mixed-length prompt batches)",
)
QUANTIZE_ATTENTION = option("--quantize-attention", action="store_true", help="FP8 Q/DQ on q, k, v and softmax")
QUANTIZE_TEXT_ENCODER = option(
    "--quantize-text-encoder", action="store_true", help="activation Q/DQ in the text encoder"
)
EXCLUDE = option("--exclude", action="append", default=[], metavar="PATTERN", help="keep a linear out of Q/DQ")
OPSET = option(
    "--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (>= {DEFAULT_OPSET}; default {DEFAULT_OPSET})"
)
EXTERNAL_DATA = option("--external-data", default=DEFAULT_EXTERNAL_DATA, help="auto (above 1.8 GB) | always | never")
DTYPE = option("--dtype", default="bf16", help="graph compute dtype: bf16 (TensorRT) | fp16 | fp32 (ORT)")
LORA_RANK = option(
    "--lora-rank", type=int, default=None, metavar="R",
    help="LoRA-ready conditional DiT: adapters of total rank up to R as engine inputs, switched per request",
)  # fmt: skip
# What shapes an export, in `export --help` order: `export` takes these, and `build-engines --model` passes them
# to the export it makes into OUT/onnx.
EXPORT_OPTIONS = (
    RECIPE,
    DTYPE,
    CALIBRATION,
    EXPORT_COMPONENTS,
    QUANTIZE_ATTENTION,
    QUANTIZE_TEXT_ENCODER,
    EXCLUDE,
    OPSET,
    EXTERNAL_DATA,
    LORA_RANK,
)
# Where `build-engines` takes a shared option its own way (same flag, same meaning), by dest.
BUILD_EXPORT_CHANGES: dict[str, dict[str, Any]] = {
    "dtype": {"default": None, "help": "graph dtype (default bf16 for TensorRT, fp32 for onnxruntime)"},
    "quantize_attention": {"help": "FP8 attention (with --recipe fp8)"},
}
# What shapes only the files of an export (not its recipe, dtype or graphs): an --onnx export has its own.
EXPORT_FILE_OPTIONS = (EXCLUDE, OPSET, EXTERNAL_DATA, LORA_RANK)

CHECKPOINT = option("--model", type=Path, required=True, metavar="DIR", help="checkpoint folder")
ENGINES = option("--engines", type=Path, required=True, metavar="DIR", help="engine set folder")
ALLOW_OTHER_GPU = option("--allow-other-gpu", action="store_true", help=ALLOW_OTHER_GPU_HELP)
BACKEND = option("--backend", help=f"{' | '.join(backend_names())} (default: the engine set's flavor)")
IMAGE_SIZE = (option("--height", type=int), option("--width", type=int))
PROMPT_FILE_HELP = ".jsonl with 'prompt' fields or one per line"


def _make_tiny(args: argparse.Namespace) -> int:
    import torch
    from rich.console import Console

    from ideogram_trt.core.progress import LabelledBars
    from ideogram_trt.model.tiny import COMPONENTS, TinySpec, write_tiny_checkpoint

    widths = {
        "layers": args.layers,
        "heads": args.heads,
        "head_dim": args.head_dim,
        "intermediate_size": args.intermediate_size,
        "text_hidden": args.text_hidden,
        "latent_channels": args.latent_channels,
    }
    given = {name: value for name, value in widths.items() if value is not None}
    if args.config == "release":
        if given:
            flags = ", ".join("--" + name.replace("_", "-") for name in given)
            raise IdeogramTrtError(f"--config release fixes every width; drop {flags}")
        spec = TinySpec.release(seed=args.seed)
    else:
        spec = TinySpec(seed=args.seed, **given)
    components = tuple(args.components.split(",")) if args.components else COMPONENTS
    unknown = sorted(set(components) - set(COMPONENTS))
    if unknown:
        raise IdeogramTrtError(f"--components: unknown {', '.join(unknown)} (choose from {', '.join(COMPONENTS)})")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise IdeogramTrtError(f"--device {args.device}: no CUDA device is visible here (use --device cpu)")
    console = Console(stderr=True)
    with LabelledBars() as bars:  # one bar per weight file (both DiTs share one): weight keys drawn
        path = write_tiny_checkpoint(
            args.out, spec, overwrite=args.overwrite, components=components, device=args.device, progress=bars.update
        )
    what = "every weight file" if components == COMPONENTS else "weights of " + ", ".join(components)
    console.print(
        f"{args.config} random Ideogram 4 checkpoint (release FP8 layout, seed {args.seed}, {what}) "
        f"written to [bold]{path}[/]"
    )
    return 0


def _check(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from ideogram_trt.core.components import Part
    from ideogram_trt.model.checkpoint import open_checkpoint

    checkpoint = open_checkpoint(args.checkpoint)  # configs, headers, FP8 scales
    scanned = ""
    if not args.headers_only:
        import time

        from ideogram_trt.core.progress import StepBar
        from ideogram_trt.core.progress import console as progress_console
        from ideogram_trt.model.finite import scan_plan, scan_tensors, tensor_bytes

        plan = scan_plan(checkpoint)
        total = sum(tensor_bytes(folder, keys) for folder, keys in plan)
        start = time.perf_counter()
        # The bar only on a terminal: in a log, a refusal stays the one `error:` line.
        quiet = not progress_console.is_terminal
        with StepBar("scanning weights for NaN/Inf (MiB)", max(1, total >> 20), quiet=quiet) as bar:
            done = [0]

            def advance(nbytes: int) -> None:
                bar.advance(((done[0] + nbytes) >> 20) - (done[0] >> 20))
                done[0] += nbytes

            for folder, keys in plan:
                scan_tensors(folder, keys, advance)
        seconds = time.perf_counter() - start
        scanned = (
            f"weights scanned: {sum(len(k) for _, k in plan)} tensors, {total / 1e6:.1f} MB in {seconds:.1f}s "
            f"({total / 1e6 / max(seconds, 1e-9):.0f} MB/s), all finite"
        )
    table = Table(title=f"{checkpoint.root}", show_header=True)
    table.add_column("component")
    table.add_column("layout")
    table.add_column("shape")
    dit = checkpoint.transformer
    dit_shape = (
        f"{dit.num_layers} layers, {dit.num_attention_heads}x{dit.attention_head_dim} heads, "
        f"hidden {dit.hidden_size}, {dit.in_channels} latent channels"
    )
    for component, layout in checkpoint.dit_layouts.items():
        table.add_row(component, layout.value, dit_shape)
    te = checkpoint.text_encoder
    table.add_row(
        Part.TEXT_ENCODER.value,
        "release (FP8 weight-only)" if checkpoint.text_encoder_fp8 else "floating",
        f"Qwen3-VL, {te.num_hidden_layers} layers, hidden {te.hidden_size}, vocab {te.vocab_size}",
    )
    vae = checkpoint.vae
    table.add_row(Part.VAE.value, "diffusers", f"AutoencoderKLFlux2, {vae.latent_channels} latent channels")
    console = Console()
    console.print(table)
    console.print(scanned or "weights not scanned for NaN/Inf (--headers-only); FP8 scales checked")
    console.print("checkpoint OK")
    return 0


def _to_diffusers(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ideogram_trt.model.diffusers_layout import convert_to_diffusers

    console = Console(stderr=True)
    with console.status(f"converting {args.checkpoint} to the diffusers layout"):
        path = convert_to_diffusers(args.checkpoint, args.out, overwrite=args.overwrite)
    console.print(f"diffusers-layout copy (bf16) written to [bold]{path}[/]; load it with Ideogram4Pipeline")
    return 0


def _export(args: argparse.Namespace) -> int:
    from ideogram_trt.core.components import parse_components
    from ideogram_trt.core.lora import check_engine_rank
    from ideogram_trt.core.recipes import parse_enum
    from ideogram_trt.export.exporter import ExportOptions, ExternalData, export
    from ideogram_trt.export.recipes import GraphDType

    graphs = parse_components(args.components)
    options = ExportOptions(
        recipe=parse_enum(Recipe, args.recipe, "recipe"),
        dtype=parse_enum(GraphDType, args.dtype, "dtype"),
        graphs=graphs,
        calibration=args.calibration,
        quantize_attention=args.quantize_attention,
        quantize_text_encoder=args.quantize_text_encoder,
        excluded=tuple(args.exclude),
        opset=args.opset,
        external_data=parse_enum(ExternalData, args.external_data, "--external-data mode"),
        lora_rank=None if args.lora_rank is None else check_engine_rank(args.lora_rank),
    )
    exported = export(args.model, args.out, options)
    for item in exported:
        data = item.sidecar.external_data
        size = item.path.stat().st_size + ((item.path.parent / data).stat().st_size if data else 0)
        print(f"{item.path}  {size / 1e6:.1f} MB  {item.sidecar.recipe}/{item.sidecar.dtype}")
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    import torch

    from ideogram_trt.core.progress import StepBar, stage
    from ideogram_trt.core.schedule import get_preset
    from ideogram_trt.export.calibration import calibrate, check_preset, parse_resolution, read_prompts
    from ideogram_trt.model.checkpoint import open_checkpoint

    preset = get_preset(args.preset)
    resolutions = [parse_resolution(r) for r in args.resolution] or [(1024, 1024)]
    prompts = read_prompts(args.prompts)
    if args.limit:
        prompts = prompts[: args.limit]
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    if args.out.exists() and not args.overwrite:
        raise IdeogramTrtError(f"{args.out}: exists (pass --overwrite to replace it)")
    with stage(f"reading and validating {args.model}"):
        checkpoint = open_checkpoint(args.model)
        check_preset(checkpoint, preset.name)  # a cond-only preset would leave dit_uncond uncalibrated
    total = len(resolutions) * len(prompts) * preset.steps
    with StepBar(f"calibrating {preset.name.value} over {len(prompts)} prompts", total) as bar:
        result = calibrate(
            checkpoint, prompts, preset.name, resolutions, args.seed, dtype, args.device, on_step=bar.advance
        )
    result.save(args.out)
    print(f"{args.out}  sha256 {result.sha256[:16]}  {sum(len(t) for t in result.amax.values())} tensors")
    return 0


def _lint(args: argparse.Namespace) -> int:
    from ideogram_trt.export.lint import lint_file

    failed = 0
    for path in args.graphs:
        if not path.is_file():
            raise IdeogramTrtError(f"{path}: no such ONNX file")
        violations = lint_file(path)
        for violation in violations:
            print(f"{path}: {violation}")
        failed += bool(violations)
        if not violations:
            print(f"{path}: OK")
    return 1 if failed else 0


def _build_engines(args: argparse.Namespace) -> int:
    from ideogram_trt.core.components import parse_components
    from ideogram_trt.engines.buckets import parse_buckets
    from ideogram_trt.engines.builder import BuildRequest, build_engine_set
    from ideogram_trt.engines.report import print_report

    if args.onnx is not None:  # the export is made: what shapes its files cannot change it
        given = [o.flags[0] for o in EXPORT_FILE_OPTIONS if getattr(args, o.dest) != o.settings["default"]]
        if given:
            raise IdeogramTrtError(
                f"{', '.join(given)} shape the export build-engines makes with --model; --onnx {args.onnx} is "
                "exported already (export it again with `ideogram-trt export` and these options)"
            )
    request = BuildRequest(
        out=args.out,
        recipe=args.recipe,
        buckets=parse_buckets(args.buckets),
        model=args.model,
        onnx=args.onnx,
        flavor=args.flavor,
        dtype=args.dtype,
        calibration=args.calibration,
        compute_capabilities=tuple(c for cc in args.compute_capability for c in cc.split(",") if c),
        per_bucket=args.per_bucket,
        max_batch=args.max_batch,
        max_text_tokens=args.max_text_tokens,
        timing_cache=args.timing_cache,
        optimization_level=args.opt_level,
        components=parse_components(args.components),
        quantize_attention=args.quantize_attention,
        quantize_text_encoder=args.quantize_text_encoder,
        excluded=tuple(args.exclude),
        opset=args.opset,
        external_data=args.external_data,
        lora_rank=args.lora_rank,
    )
    outcome = build_engine_set(request)
    print_report(outcome.manifest)
    rebuilt = ", ".join(outcome.built) or "nothing"
    print(f"engine set written to {args.out} (built: {rebuilt}; up to date: {len(outcome.reused)})")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from ideogram_trt.core.manifest import Manifest, RuntimeEnv, check_engine_set
    from ideogram_trt.engines.report import print_report

    if args.anatomy or args.from_plan:
        return _inspect_anatomy(args)
    manifest = Manifest.load(args.engines)
    print_report(manifest)
    problems = check_engine_set(args.engines, manifest, RuntimeEnv.detect(), allow_other_gpu=args.allow_other_gpu)
    if problems:
        print("this engine set cannot run on this machine:")
        for problem in problems:
            print(f"  - {problem}")
        return 1
    print("engine set OK for this machine")
    return 0


def _inspect_anatomy(args: argparse.Namespace) -> int:
    import json

    from ideogram_trt.core.files import atomic_write, check_output_target
    from ideogram_trt.core.manifest import Manifest
    from ideogram_trt.engines.anatomy_report import chosen_bucket, plan_anatomies, set_anatomies, summarize

    if args.json is not None:
        check_output_target(args.json, "--json output")
    manifest = Manifest.load(args.engines)
    text_tokens = _check_text_tokens(args.text_tokens, manifest.max_text_tokens)
    bucket = chosen_bucket(manifest, args.bucket)
    if args.from_plan:
        anatomies = plan_anatomies(args.engines, manifest, args.component, bucket.name)
    else:
        anatomies = set_anatomies(args.engines, manifest, args.component, bucket.name)
    summaries = [summarize(anatomy, bucket, text_tokens) for anatomy in anatomies]
    for summary in summaries:
        _print_anatomy(summary)
    if args.json is not None:
        body = {"modeled_bytes": True, "engines": summaries}
        atomic_write(args.json, json.dumps(body, indent=1) + "\n", "--json output")
        print(f"JSON: {args.json}")
    return 0


def _check_text_tokens(tokens: int | None, limit: int) -> int:
    """--text-tokens for a model of an engine set: within its profiles; by default a typical JSON caption."""
    if tokens is None:
        return min(512, limit)
    if not 1 <= tokens <= limit:
        raise IdeogramTrtError(
            f"--text-tokens {tokens}: give a prompt length from 1 to {limit} tokens (the engine set's profiles)"
        )
    return tokens


def _print_anatomy(summary: dict[str, Any]) -> None:
    profile = summary["profile"]
    where = f"profile {profile['index']}" + (f" ({profile['bucket']})" if profile["bucket"] else "")
    print(f"{summary['engine']}: {summary['kernels']} kernels in {where}, from the {summary['source']} of "
          f"TensorRT {summary['version']}")  # fmt: skip
    print("  per class: " + ", ".join(f"{k} {v}" for k, v in summary["classes"].items()))
    for group in summary["patterns"]:
        shown = [f"{kind} {precision}" + (f" {modules}" if modules else "") for kind, precision, modules in
                 group["kernels"] if kind in ("gemm", "dequant_gemm", "attention", "dequant")]  # fmt: skip
        others = len(group["kernels"]) - len(shown)
        print(f"  blocks {group['blocks']}: " + " | ".join(shown) + f" | +{others} other")
    sizes = summary["sizes"]
    moved = f"{summary['non_gemm_bytes_per_run'] / 1e6:,.1f} MB" if summary["costed"] else "unknown"
    print(f"  non-GEMM kernels move {moved} per run (modeled: batch 1, "
          f"{sizes['text_tokens']} text tokens, {sizes['bucket']}; {summary['unresolved_tensors']} tensors of "
          "unknown size)")  # fmt: skip


def _verify(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from ideogram_trt.core.files import atomic_write, check_output_target
    from ideogram_trt.verify.report import Status
    from ideogram_trt.verify.run import DEFAULT_PROMPTS, VerifyRequest, command_line, verify

    for path, what in ((args.json, "--json report"), (args.markdown, "--markdown report")):
        if path is not None:  # refused before minutes of checks, not after
            check_output_target(path, what)
    buckets = tuple(b for item in args.bucket for b in item.split(",") if b)
    request = VerifyRequest(
        engines=args.engines,
        checkpoint=args.model,
        buckets=buckets,
        preset=args.preset,
        steps=args.steps,
        prompts=tuple(args.prompt) or DEFAULT_PROMPTS,
        calibration=args.calibration,
        recipe_bounds=args.recipe_bounds,
        device=args.device,
        repeats=args.repeats,
        card=args.card,
        max_slowdown=args.max_slowdown,
        allow_other_gpu=args.allow_other_gpu,
        backend=args.backend,
        images=args.images,
        command=command_line(args.argv),
    )
    report = verify(request)
    console = Console()
    table = Table(title=f"ideogram-trt verify {args.engines}")
    for column in ("status", "check", "value", "bound", "detail"):
        table.add_column(column, overflow="fold")
    colors = {Status.PASS: "green", Status.FAIL: "bold red", Status.SKIP: "yellow", Status.INFO: "cyan"}
    from ideogram_trt.verify.report import format_bound, format_value

    for check in report.checks:
        table.add_row(f"[{colors[check.status]}]{check.status.value}[/]", check.name,
                      format_value(check.value, check.metric), format_bound(check), check.detail)  # fmt: skip
    console.print(table)
    if args.json is not None:
        atomic_write(args.json, report.to_json(), "--json report")
    if args.markdown is not None:
        atomic_write(args.markdown, report.to_markdown(), "--markdown report")
    counts = ", ".join(f"{n} {s}" for s, n in report.counts().items() if n)
    if report.passed:
        console.print(f"verify: PASS ({counts})")
        return 0
    names = ", ".join(c.name for c in report.failures[:5]) + (" …" if len(report.failures) > 5 else "")
    print(f"verify: FAIL ({counts}): {names}; docs/VERIFY.md §4 says how to read a failure", file=sys.stderr)
    return 1


def _generate(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ideogram_trt.core.lora import parse_choice
    from ideogram_trt.core.progress import StepBar
    from ideogram_trt.core.prompts import check_prompt, read_prompt_file
    from ideogram_trt.core.requests import check_images, check_seed, check_steps, parse_guidance
    from ideogram_trt.runtime.images import check_outputs, png_metadata, save_png, schedule_parameters
    from ideogram_trt.runtime.pipeline import Pipeline

    prompts = [check_prompt(p, f"prompt argument {k}") for k, p in enumerate(args.prompt, 1)]
    if args.prompt_file is not None:
        prompts += read_prompt_file(args.prompt_file)
    if not prompts:
        raise IdeogramTrtError("no prompt: give one as an argument, or --prompt-file FILE")
    # Everything the request itself gets wrong is refused before the engines load: its numbers, then every
    # output path (a device, FIFO, folder or link is never written, and no run is wasted on it).
    count = check_images(args.num_images, len(prompts))
    check_seed(args.seed, count)
    if args.steps is not None:
        check_steps(args.steps)
    guidance = None if args.guidance is None else parse_guidance(args.guidance)
    paths = check_outputs(args.output, count)
    loras = [parse_choice(text) for text in args.lora]
    console = Console(stderr=True)
    pipe = Pipeline.from_engines(
        args.engines, backend=args.backend, allow_other_gpu=args.allow_other_gpu, adapters=args.lora_dir
    )
    pipe.lora_feeds(loras)  # every adapter read and checked against the engines before anything runs
    bucket = pipe.resolve_bucket(args.height, args.width, args.bucket, args.snap)
    plan = pipe.sampling_plan(bucket, args.preset, args.steps, guidance, args.terminal)
    total = pipe.step_reports(plan, len(prompts), args.num_images)
    with StepBar(f"{plan.preset} at {bucket.name}", total) as bar:
        result = pipe(
            prompts,
            bucket=bucket.name,
            preset=args.preset,
            seed=args.seed,
            num_images=args.num_images,
            steps=args.steps,
            guidance=guidance,
            terminal=args.terminal,
            on_step=lambda _p, _s, _t: bar.advance(),
            loras=loras,
        )
        # Inside the bar: a PNG that cannot be written (full disk) fails the run, and leaves one error line.
        parameters = schedule_parameters(plan.schedule)
        for image, path, prompt, seed in zip(result.images, paths, result.prompts, result.seeds, strict=True):
            metadata = png_metadata(
                prompt, seed, result.preset, bucket.name, result.engine_set, parameters, result.loras
            )
            save_png(image, path, metadata)
    t = result.timings
    steps = ", ".join(f"{s * 1000:.0f}" for s in t.steps)
    console.print(
        f"text encoder {t.text_encoder * 1000:.0f} ms | denoise {t.denoise:.2f} s ({len(t.steps)} steps: {steps} ms) "
        f"| VAE {t.vae * 1000:.0f} ms | total {t.total:.2f} s ({pipe.backend.name})"
    )
    for path in paths:
        print(path)
    return 0


def _merge_lora(args: argparse.Namespace) -> int:
    from ideogram_trt.core.lora import parse_choice
    from ideogram_trt.model.merge_lora import merge_lora

    loras = [(Path(name), weight) for name, weight in map(parse_choice, args.lora)]
    result = merge_lora(args.model, loras, args.out, overwrite=args.overwrite)
    names = ", ".join(f"{a.name} x {w:g}" for a, w in result.adapters)
    print(f"merged {names} into {result.linears} linears of the conditional DiT (requantized per row): {result.out}")
    return 0


def _triton_repo(args: argparse.Namespace) -> int:
    from ideogram_trt.triton.repository import RepoRequest, parse_gpus, write_repository

    gpus = parse_gpus(args.gpus) if args.gpus is not None else ()
    request = RepoRequest(
        engines=args.engines,
        out=args.out,
        model_name=args.model_name,
        instances=args.instances,
        gpus=gpus,
        max_images=args.max_batch,
        decoupled=args.decoupled,
        copy=args.copy,
        preset=args.preset,
        adapters=args.adapters,
    )
    model = write_repository(request)
    print(f"{model} written; start the server with the commands in {args.out / 'README.md'}")
    return 0


def _triton_client(args: argparse.Namespace) -> int:
    from ideogram_trt.core.files import atomic_write
    from ideogram_trt.runtime.images import check_outputs
    from ideogram_trt.triton import client as triton

    if args.stream and args.protocol != "grpc":
        raise IdeogramTrtError("--stream needs --protocol grpc (Triton streams decoupled responses over gRPC only)")
    url = triton.server_address(args.url, args.protocol)
    timeout = triton.check_timeout(args.timeout)
    request = triton.check_image_request(
        triton.ImageRequest(
            args.prompt, args.height, args.width, args.preset, args.seed, args.num_images, ",".join(args.lora) or None
        )
    )
    paths = check_outputs(args.output, request.num_images)  # refused before the server is asked
    if args.stream:
        from ideogram_trt.core.progress import StepBar

        with StepBar("denoising", 1) as bar:

            def on_step(step: int, steps: int) -> None:
                bar.set_total(steps)
                bar.advance()

            _, pngs = triton.stream_images(url, request, args.model, on_step, timeout)
    else:
        _, pngs = triton.request_images(url, request, args.model, args.protocol, timeout)
    if len(pngs) != len(paths):
        raise IdeogramTrtError(f"{url}: the server sent {len(pngs)} images for {len(paths)} asked")
    for path, data in zip(paths, pngs, strict=True):
        atomic_write(path, data, "PNG output")
        print(path)
    return 0


def _bench(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    from rich.console import Console
    from rich.table import Table

    from ideogram_trt.core.buckets import Bucket
    from ideogram_trt.core.files import atomic_write, check_output_target

    console = Console()
    if args.json is not None:  # refused before minutes of timing, not after
        check_output_target(args.json, "--json output")
    if args.flops and args.model:
        raise IdeogramTrtError("give --flops (the FLOP floor) or --model (the modeled time), not both")
    if args.datasheet and not args.model:
        raise IdeogramTrtError("--datasheet chooses the rates of --model; add --model")
    if args.flops:
        if not args.bucket:
            raise IdeogramTrtError("--flops needs --bucket HxW (e.g. 1024x1024)")
        from ideogram_trt.runtime.bench import flop_table

        report = flop_table(
            Bucket.parse(args.bucket), args.preset, 512 if args.text_tokens is None else args.text_tokens, args.card
        )
        table = Table(
            title=f"FLOPs per image: {report['bucket']} {report['preset']}, {report['text_tokens']} text tokens"
        )
        table.add_column("stage")
        table.add_column("TFLOP", justify="right")
        for stage, value in report["tflop"].items():
            table.add_row(stage, f"{value:,.2f}")
        console.print(table)
        floors = report["floor_seconds"]
        console.print(
            f"time floor on {report['card']['name']}: {floors['fp8']} s at the FP8 rate, {floors['bf16']} s at bf16"
        )
    elif args.model:
        if args.engines is None:
            raise IdeogramTrtError("--model needs --engines DIR (an engine set built by TensorRT or TensorRT-RTX)")
        from ideogram_trt.core.cards import card
        from ideogram_trt.core.manifest import Manifest
        from ideogram_trt.engines.anatomy_report import anatomies_for_request, chosen_bucket, model_report

        chosen = card(args.card)  # an unknown card is refused before the engine set is read
        manifest = Manifest.load(args.engines)
        text_tokens = _check_text_tokens(args.text_tokens, manifest.max_text_tokens)
        bucket = chosen_bucket(manifest, args.bucket)
        anatomies = anatomies_for_request(args.engines, manifest, bucket)
        report = model_report(anatomies, bucket, args.preset, text_tokens, chosen, args.datasheet)
        _print_model(report, console)
    else:
        if args.engines is None:
            raise IdeogramTrtError("give --engines DIR to time an engine set, or --flops for the FLOP floor")
        from ideogram_trt.runtime.bench import bench_engines

        result = bench_engines(args.engines, args.bucket, args.preset, args.runs, backend=args.backend)
        report = asdict(result)
        table = Table(title=f"{result.backend} | {result.bucket} {result.preset} | {args.runs} runs after 1 warm-up")
        table.add_column("measure")
        table.add_column("value", justify="right")
        rows = [
            ("engine-set load", f"{result.load_seconds:.3f} s"),
            ("text encoder (p50)", f"{result.text_encoder_ms:.1f} ms"),
            (f"denoise step (p50 of {result.steps} x {args.runs})", f"{result.step_ms_p50:.1f} ms"),
            ("VAE decoder (p50)", f"{result.vae_ms:.1f} ms"),
            ("end to end p50 / p95", f"{result.total_s_p50:.3f} / {result.total_s_p95:.3f} s"),
            (f"peak memory, {result.peak_memory_kind}", f"{result.peak_memory_bytes / 2**30:.2f} GiB"),
        ]
        for name, value in rows:
            table.add_row(name, value)
        console.print(table)
    if args.json is not None:
        atomic_write(args.json, json.dumps(report, indent=1) + "\n", "--json output")
        console.print(f"JSON: {args.json}")
    return 0


def _print_model(report: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    card = report["card"]
    table = Table(
        title=f"MODELED, not measured: {report['bucket']} {report['preset']}, {report['text_tokens']} text tokens, "
        f"{card['name']} ({card['rates']} rates)"
    )
    for column in ("stage", "runs", "ms per run", "kernels", "gemm", "attention", "elementwise", "dequant", "launch"):
        table.add_column(column, justify="right" if column != "stage" else "left")
    runs = {"dit_cond_pass": report["steps"], "dit_uncond_pass": report["uncond_steps"]}
    for stage, run in report["stages"].items():
        if run is None:
            continue
        b = run["breakdown_ms"]
        table.add_row(stage, str(runs.get(stage, 1)), f"{run['ms']:.1f}", str(run["kernels"]),
                      *(f"{b[k]:.1f}" for k in ("gemm", "attention", "elementwise", "dequant", "launch")))  # fmt: skip
    console.print(table)
    console.print(
        f"modeled step {report['step_ms']:.1f} ms, end to end {report['end_to_end_s']:.2f} s; floors: kernel "
        f"ceilings {report['kernel_ceiling_floor_s']:.2f} s, FLOPs at the FP8 rate {report['flop_floor_s']:.2f} s"
    )


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one ``error:`` line (the usage is one ``--help`` away) and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ideogram-trt",
        description=(
            "Deploy Ideogram 4 on NVIDIA GPUs: checkpoints, ONNX export with FP8 Q/DQ, TensorRT engines per "
            "resolution bucket, a thin runtime and a Triton model repository."
        ),
    )
    parser.add_argument("--version", action="version", version=f"ideogram-trt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    tiny = sub.add_parser(
        "make-tiny",
        help="write a tiny random checkpoint in the release layout",
        description=(
            "Write a tiny random Ideogram 4 checkpoint in exactly the official FP8 release layout "
            "(model_index.json, transformer/, unconditional_transformer/, text_encoder/, tokenizer/, vae/, "
            "scheduler/). Only widths shrink: 36 text-encoder layers, a VAE with 8x downsampling and 2x2 "
            "patches (16 pixels per token). The same seed writes the same bytes."
        ),
    )
    tiny.add_argument("out", type=Path, metavar="DIR", help="output folder (must not exist or be empty)")
    tiny.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    tiny.add_argument(
        "--config",
        choices=("tiny", "release"),
        default="tiny",
        help="tiny widths (default) or every width of the release: a full-size random checkpoint, ~27 GB",
    )
    tiny.add_argument("--layers", type=int, help="DiT blocks (release: 34; tiny default 2)")
    tiny.add_argument("--heads", type=int, help="DiT attention heads (release: 18; tiny default 2)")
    tiny.add_argument("--head-dim", type=int, help="DiT head dim (release: 256; tiny default 32)")
    tiny.add_argument("--intermediate-size", type=int, help="DiT SwiGLU width (release: 12288; tiny default 128)")
    tiny.add_argument("--text-hidden", type=int, help="text-encoder hidden size (release: 4096; tiny default 32)")
    tiny.add_argument("--latent-channels", type=int, help="VAE latent channels (release: 32; tiny default 4)")
    tiny.add_argument(
        "--components",
        metavar="LIST",
        help="comma-separated weight files to write (default: all); configs are always written. Each component "
        "has its own random stream, so a partial write has the same bytes as a full one",
    )
    tiny.add_argument("--device", default="cpu", help="where to draw the random numbers (cuda makes full size quick)")
    tiny.add_argument("--overwrite", action="store_true", help="replace DIR if it exists")
    tiny.set_defaults(handler=_make_tiny)

    check = sub.add_parser(
        "check",
        help="validate a checkpoint folder and summarize it",
        description=(
            "Read every config and tensor header of an Ideogram 4 checkpoint (release FP8 layout or a "
            "diffusers-layout repack) and report the first problem, or a summary. Every config number must be "
            "finite and within the bounds in ideogram_trt/model/configs.py (MAXIMA), and every FP8 weight_scale "
            "finite and positive (export and calibrate check these too). Then every weight is scanned in chunks "
            "for NaN/Inf (FP8: the NaN bytes 0x7F/0xFF), with a progress bar on a terminal: the whole "
            "checkpoint is read, ~27 GB at full size, so this takes as long as reading it from disk."
        ),
    )
    check.add_argument("checkpoint", type=Path, metavar="DIR")
    check.add_argument(
        "--headers-only",
        action="store_true",
        help="skip the whole-weight NaN/Inf scan (configs, headers and FP8 scales are still checked)",
    )
    check.set_defaults(handler=_check)

    to_diffusers = sub.add_parser(
        "to-diffusers",
        help="convert a release-layout checkpoint to the diffusers layout (the reference)",
        description=(
            "Write a bf16 diffusers-layout copy that diffusers' Ideogram4Pipeline.from_pretrained loads "
            "correctly. (Loading the release layout directly into diffusers silently produces garbage.)"
        ),
    )
    to_diffusers.add_argument("checkpoint", type=Path, metavar="SRC")
    to_diffusers.add_argument("out", type=Path, metavar="DST")
    to_diffusers.add_argument("--overwrite", action="store_true", help="replace DST if it exists")
    to_diffusers.set_defaults(handler=_to_diffusers)

    exp = sub.add_parser(
        "export",
        help="export the text encoder, DiTs and VAE decoder to ONNX with FP8 Q/DQ",
        description=(
            "Export one ONNX graph per component with the engine I/O of docs/ARCHITECTURE.md §4 (batch, text "
            "length and image tokens dynamic), a JSON sidecar each, external data above 2 GB, and our FP8 lint. "
            "Recipes: "
            f"{_recipe_list()}."
        ),
    )
    CHECKPOINT.add_to(exp)
    exp.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder (new or empty)")
    add_options(exp, EXPORT_OPTIONS)
    exp.set_defaults(handler=_export)

    cal = sub.add_parser(
        "calibrate",
        help=f"record activation ranges for the {' | '.join(r.value for r in CALIBRATED_RECIPES)} recipe",
        description=(
            "Run the PyTorch model over a prompt set x every step of a preset and record the per-tensor amax of "
            "every quantizable input. The file records the checkpoint and the settings, and is deterministic "
            "for a seed."
        ),
    )
    CHECKPOINT.add_to(cal)
    cal.add_argument("--out", type=Path, required=True, metavar="FILE", help="calibration JSON to write")
    cal.add_argument("--prompts", type=Path, metavar="FILE", help=PROMPT_FILE_HELP)
    cal.add_argument("--preset", default="V4_DEFAULT_20", help="sampling preset (default V4_DEFAULT_20)")
    cal.add_argument("--resolution", action="append", default=[], metavar="HxW", help="repeatable; default 1024x1024")
    cal.add_argument("--seed", type=int, default=0)
    cal.add_argument("--limit", type=int, default=0, help="use only the first N prompts")
    cal.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    cal.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    cal.add_argument("--overwrite", action="store_true")
    cal.set_defaults(handler=_calibrate)

    build = sub.add_parser(
        "build-engines",
        help="build TensorRT engines (one optimization profile per resolution bucket) and their manifest",
        description=(
            "Export what is missing, then build one plan per component with one optimization profile per "
            "resolution bucket (or one plan per bucket with --per-bucket), and write manifest.json. Rebuilds only "
            "what changed; an interrupted build leaves the previous engine set intact. --flavor onnxruntime "
            "writes the same manifest over the ONNX graphs (fp32 by default)."
        ),
    )
    source = build.add_mutually_exclusive_group(required=True)
    CHECKPOINT.add_to(source, required=False, help="checkpoint folder (exports into OUT/onnx)")
    source.add_argument("--onnx", type=Path, metavar="DIR", help="an existing `ideogram-trt export` folder")
    build.add_argument("--out", type=Path, required=True, metavar="DIR", help="engine set folder")
    add_options(build, EXPORT_OPTIONS, BUILD_EXPORT_CHANGES)
    build.add_argument("--buckets", default="1024x1024", help="names or HxW, comma-separated; 'all'; or @FILE")
    build.add_argument("--flavor", default="auto", help="auto | tensorrt | tensorrt-rtx | onnxruntime")
    build.add_argument(
        "--compute-capability", action="append", default=[], metavar="CC", help="TensorRT-RTX targets, e.g. 8.9,12.0"
    )
    build.add_argument("--per-bucket", action="store_true", help="one plan per bucket instead of one profile each")
    build.add_argument("--max-batch", type=int, default=4, help="largest batch the profiles admit (default 4)")
    build.add_argument("--max-text-tokens", type=int, default=2048, help="longest prompt in tokens (default 2048)")
    build.add_argument("--timing-cache", type=Path, metavar="FILE", help="TensorRT timing cache (default per GPU)")
    build.add_argument("--opt-level", type=int, help="TensorRT builder optimization level (0-5)")
    build.set_defaults(handler=_build_engines)

    inspect = sub.add_parser(
        "inspect",
        help="show an engine set's manifest and check it against this machine",
        description="Print the manifest as a table and check it against the installed TensorRT and visible GPUs.",
    )
    inspect.add_argument("engines", type=Path, metavar="DIR")
    ALLOW_OTHER_GPU.add_to(inspect)
    inspect.add_argument(
        "--anatomy", action="store_true", help="what TensorRT built: kernels per DiT block, per class, bytes moved"
    )
    inspect.add_argument(
        "--from-plan",
        action="store_true",
        help="read the anatomy from the plans themselves (TensorRT's engine inspector; needs the plans' GPU)",
    )
    inspect.add_argument("--component", help="only this engine (e.g. dit_cond)")
    inspect.add_argument("--bucket", help="the profile to show (default: the set's first bucket)")
    inspect.add_argument(
        "--text-tokens", type=int, help="prompt length for the bytes (default 512, or the set's longest if shorter)"
    )
    inspect.add_argument("--json", type=Path, metavar="FILE", help="also write the anatomy summary as JSON")
    inspect.set_defaults(handler=_inspect)

    gen = sub.add_parser(
        "generate",
        help="generate images from an engine set",
        description=(
            "Run Ideogram 4 over an engine set (TensorRT plans or ONNX Runtime graphs): the text encoder once per "
            "prompt, the LogitNormal loop with CFG, the VAE. The k-th image of a request starts from the noise of "
            "seed+k (numpy PCG64, the same on every machine). PNGs carry prompt, seed, preset, bucket and the "
            "engine set's id in their metadata."
        ),
    )
    gen.add_argument("prompt", nargs="*", help="prompt(s); Ideogram 4 expects JSON captions")
    ENGINES.add_to(gen)
    gen.add_argument("--prompt-file", type=Path, metavar="FILE", help=PROMPT_FILE_HELP)
    add_options(gen, IMAGE_SIZE)
    gen.add_argument("--bucket", help="a bucket of the engine set, e.g. 1024x1024 (instead of --height/--width)")
    gen.add_argument("--snap", action="store_true", help="use the nearest bucket for a size the set does not have")
    gen.add_argument(
        "--preset", help="V4_QUALITY_48 | V4_DEFAULT_20 (default) | V4_TURBO_12 | V4_FAST_20 | V4_INSTANT_8"
    )
    from ideogram_trt.core.requests import MAX_IMAGES_PER_REQUEST, MAX_STEPS

    gen.add_argument("--steps", type=int, help=f"override the preset's step count (1 to {MAX_STEPS})")
    gen.add_argument(
        "--guidance",
        help="one finite value for every step, or one per step (chronological), comma-separated; a list sets the "
        "step count, and --steps, if given too, must equal its length",
    )
    gen.add_argument("--terminal", choices=["t_max", "zero"], default="t_max",
                     help="last step ends at t_max (official, default) or at 0 noise (diffusers)")  # fmt: skip
    gen.add_argument("--seed", type=int, default=0, help="0 to 2**63 - 1; image k of a request uses seed + k")
    gen.add_argument(
        "-n", "--num-images", type=int, default=1,
        help=f"images per prompt (at most {MAX_IMAGES_PER_REQUEST} images per run, all prompts together)",
    )  # fmt: skip
    gen.add_argument(
        "-o", "--output", type=Path, default=Path("ideogram.png"),
        help="PNG path (-k suffixes for many): a new path or a regular file, never a device, FIFO, folder or link",
    )  # fmt: skip
    gen.add_argument(
        "--lora", action="append", default=[], metavar="FILE[:WEIGHT]",
        help="a LoRA adapter (.safetensors, diffusers or kohya layout) and its weight (default 1); repeatable; "
        "needs an engine set built with --lora-rank",
    )  # fmt: skip
    gen.add_argument("--lora-dir", type=Path, metavar="DIR", help="a folder of adapters --lora may name (NAME[:W])")
    add_options(gen, (BACKEND, ALLOW_OTHER_GPU))
    gen.set_defaults(handler=_generate)

    merge = sub.add_parser(
        "merge-lora",
        help="fold LoRA adapters into a checkpoint (requantized to FP8 per row), for one fixed adapter",
        description=(
            "Write a new release-layout checkpoint whose conditional DiT has the adapters merged into its weights: "
            "each updated FP8 linear is dequantized, updated and requantized to E4M3 with fresh per-row scales "
            "(docs/LORA.md §4). Engines built from it need no side path; adapters switched per request need "
            "`build-engines --lora-rank` instead."
        ),
    )
    CHECKPOINT.add_to(merge)
    merge.add_argument("--lora", action="append", required=True, metavar="FILE[:WEIGHT]",
                       help="adapter (.safetensors) and weight (default 1); repeatable")  # fmt: skip
    merge.add_argument("--out", type=Path, required=True, metavar="DIR", help="the merged checkpoint (a new folder)")
    merge.add_argument("--overwrite", action="store_true", help="replace DIR if it exists")
    merge.set_defaults(handler=_merge_lora)

    ver = sub.add_parser(
        "verify",
        help="prove an engine set right and fast on this machine, against the PyTorch reference",
        description=(
            "Check an engine set on the machine it serves from: what `inspect` checks, the checkpoint, calibration "
            "and tokenizer it was built from, every plan's profiles, every engine on seeded inputs at each bucket "
            "and two text lengths against the fp32 PyTorch reference, whole requests against the PyTorch "
            "pipeline (same noise and schedule), and the time per stage next to the modeled one. Bounds per "
            "recipe and dtype: docs/VERIFY.md. Exit 1 when any check fails."
        ),
    )
    ver.add_argument("engines", type=Path, metavar="ENGINES")
    CHECKPOINT.add_to(ver, help="the checkpoint the engine set was built from (the reference)")
    ver.add_argument("--bucket", action="append", default=[], metavar="HxW",
                     help="buckets to verify, repeatable or comma-separated; 'all' (default: the first)")  # fmt: skip
    ver.add_argument("--preset", help="sampling preset of the end-to-end check (default: the set's default)")
    ver.add_argument("--steps", type=int, help="steps of the end-to-end check (default: the preset's)")
    ver.add_argument("--prompt", action="append", default=[], help="an end-to-end prompt, repeatable (default: two)")
    CALIBRATION.add_to(ver, help="the calibration file the set's activation scales came from (fp8 recipe)")
    ver.add_argument("--recipe-bounds", type=Path, metavar="FILE", help="JSON bounds replacing the built-in ones")
    ver.add_argument("--device", help="torch device of the reference (default: cuda where visible, else cpu)")
    ver.add_argument("--repeats", type=int, default=3, help="timed requests after the warm-up (default 3)")
    ver.add_argument("--card", help="the card whose model the times are compared with (default: this GPU's)")
    ver.add_argument("--max-slowdown", type=float, default=2.0,
                     help="measured / modeled time a stage may reach (default 2)")  # fmt: skip
    ver.add_argument("--json", type=Path, metavar="FILE", help="write the report as JSON")
    ver.add_argument("--images", type=Path, metavar="DIR",
                     help="a new or empty folder: engine | reference | difference PNGs, end to end")  # fmt: skip
    ver.add_argument(
        "--markdown", type=Path, metavar="FILE", help="write the report as Markdown (attach it to an issue)"
    )
    add_options(ver, (BACKEND, ALLOW_OTHER_GPU))
    ver.set_defaults(handler=_verify)

    repo = sub.add_parser(
        "triton-repo",
        help="write a Triton model repository over an engine set",
        description=(
            "Write a model repository Triton Inference Server loads as-is: a Python-backend model running the "
            "ideogram-trt runtime over the engine set (TensorRT plans on GPU instances, ONNX Runtime graphs on "
            "CPU), one instance group per GPU listed, and a README with the server and client commands."
        ),
    )
    ENGINES.add_to(repo)
    repo.add_argument("--out", type=Path, required=True, metavar="REPO", help="model repository folder")
    repo.add_argument("--model-name", default="ideogram4")
    repo.add_argument("--instances", type=int, default=1, help="model instances per GPU (or on the CPU)")
    repo.add_argument("--gpus", help="GPU indices, e.g. 0,1 (default: 0 for TensorRT sets, CPU for ONNX Runtime)")
    repo.add_argument("--max-batch", type=int, help="most images per request (default: the engine set's max batch)")
    repo.add_argument("--decoupled", action="store_true", help="stream per-step progress before the image (gRPC)")
    repo.add_argument("--copy", action="store_true", help="copy the engine set into the repository")
    repo.add_argument("--preset", help="default preset for requests that name none")
    repo.add_argument("--adapters", type=Path, metavar="DIR",
                      help="LoRA adapters (*.safetensors) requests may name in their `lora` input")  # fmt: skip
    repo.set_defaults(handler=_triton_repo)

    client = sub.add_parser(
        "triton-client", help="ask a Triton server for an image", description="tritonclient, gRPC or HTTP"
    )
    client.add_argument("prompt")
    client.add_argument("--url", default="localhost:8001", help="host:port (8001 gRPC, 8000 HTTP by default)")
    client.add_argument("--protocol", choices=["grpc", "http"], default="grpc")
    client.add_argument("--model", default="ideogram4")
    add_options(client, IMAGE_SIZE)
    client.add_argument("--preset")
    client.add_argument("--seed", type=int, default=0)
    client.add_argument("-n", "--num-images", type=int, default=1)
    client.add_argument("--stream", action="store_true", help="a decoupled model: show per-step progress (gRPC)")
    client.add_argument("--timeout", type=float, default=600.0, help="seconds")
    client.add_argument("--lora", action="append", default=[], metavar="NAME[:WEIGHT]",
                        help="an adapter of the server's adapters folder, repeatable")  # fmt: skip
    client.add_argument("-o", "--output", type=Path, default=Path("ideogram.png"))
    client.set_defaults(handler=_triton_client)

    from ideogram_trt.core.cards import CARDS

    bench = sub.add_parser(
        "bench",
        help="time an engine set (per stage, per step, end to end), or print a request's FLOP floor",
        description=(
            "With --engines: load, warm up, then time --runs requests where the engine set's backend runs, and "
            "print per-stage and per-step times, end-to-end p50/p95 and peak memory (JSON with --json). With "
            "--flops: the release model's FLOPs per stage (docs/MODEL.md §9) and the time floor at a card's FP8 "
            "and bf16 GEMM rates."
        ),
    )
    ENGINES.add_to(bench, required=False, help=None)  # optional: --flops needs no engine set
    bench.add_argument("--bucket", help="HxW (default: the engine set's first bucket)")
    bench.add_argument("--preset", default="V4_DEFAULT_20")
    bench.add_argument("--runs", type=int, default=5)
    BACKEND.add_to(bench)
    bench.add_argument("--flops", action="store_true", help="FLOPs and time floor instead of timing")
    bench.add_argument(
        "--model", action="store_true", help="modeled time per stage from the plans' anatomy (nothing runs)"
    )
    bench.add_argument(
        "--card",
        default="h100",
        help=f"card for --flops and --model: {', '.join(CARDS)}",
    )
    bench.add_argument("--datasheet", action="store_true", help="--model at datasheet peaks, not measured ceilings")
    bench.add_argument(
        "--text-tokens",
        type=int,
        help="prompt length for --flops/--model (default 512, or the set's longest if shorter)",
    )
    bench.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON")
    bench.set_defaults(handler=_bench)

    lint = sub.add_parser("lint", help="check ONNX graphs against our FP8 rules", description=_lint_doc())
    lint.add_argument("graphs", type=Path, nargs="+", metavar="GRAPH")
    lint.set_defaults(handler=_lint)
    return parser


def _lint_doc() -> str:
    return (
        "Check ONNX graphs: opset >= 21, standard ops only (no TensorRT custom ops), no Cast to FP8, zero FP8 zero "
        "points, scale dtypes matching, per-channel weight scales along output channels. Exit 1 on a violation."
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = [str(a) for a in (sys.argv[1:] if argv is None else argv)]  # the exact command, for reports
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return handler(args)
    except IdeogramTrtError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # unreadable input, unwritable output, full disk: the OS message names the path
        if os.environ.get(DEBUG_ENV):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except ModuleNotFoundError as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        print(
            f"error: {args.command} needs the '{exc.name}' package: pip install 'ideogram-trt[model]'",
            file=sys.stderr,
        )
        return 2
    except Exception as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        print(
            f"error: internal error in {args.command}: {type(exc).__name__}: {exc} "
            f"(set {DEBUG_ENV}=1 for the traceback, and please report it)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
