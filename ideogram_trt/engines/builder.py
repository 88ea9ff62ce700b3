"""``build-engines``: export what is missing, build what changed, and commit the engine set atomically.

Layout of an engine set::

    manifest.json              written last, atomically: it names every file below
    plans/<engine>.<key>.plan  TensorRT plans, content-addressed by their build key
    plans/<engine>.<key>.anatomy.json  what each plan holds, per profile (engines/anatomy.py)
    graphs/<engine>.<key>.onnx ONNX Runtime flavor: the graphs themselves (+ .data)
    tokenizer.<hash>/          the checkpoint's tokenizer (the runtime tokenizes with it)
    onnx/                      the export the plans were built from (a cache: delete it to save space)
    timing-cache/              one TensorRT timing cache per flavor and GPU target

A plan's file name carries its key, so a new build never overwrites a file the current manifest names: an
interrupted build leaves the previous engine set intact, and its partial files are unreferenced temporaries
(removed by the next run). Entries whose key did not change are reused, not rebuilt.

A build holds ``.ideogram-trt.lock`` in the set for its whole run (a second build into the same folder is refused,
naming the holder). Clean-up deletes only what this module writes: regular files named like our plans and graphs
inside the set's own ``plans/`` and ``graphs/`` (never through a link), tokenizer folders named by their hash, and
our own temporaries of writers that are gone. Subfolders of the set that are links are refused.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ideogram_trt import __version__
from ideogram_trt.core import contracts as io
from ideogram_trt.core.buckets import Bucket
from ideogram_trt.core.components import DEFAULT_COMPONENTS, EXPORTED_COMPONENTS, Component
from ideogram_trt.core.digest import file_digest, json_digest
from ideogram_trt.core.errors import InputError
from ideogram_trt.core.files import (
    LOCK_FILE,
    FolderLock,
    atomic_copy,
    atomic_path,
    atomic_write,
    check_source_file,
    check_tree,
    copy_tree,
    owned_subdir,
    remove_stale,
    staged_dir,
)
from ideogram_trt.core.lora import check_engine_rank
from ideogram_trt.core.manifest import (
    MANIFEST_FILE,
    MAX_BATCH_LIMIT,
    BuildReport,
    EngineEntry,
    EngineSetError,
    FileRecord,
    Flavor,
    Manifest,
    ModelFacts,
    ProfileEntry,
    RuntimeEnv,
    ShapeRangeEntry,
)
from ideogram_trt.core.progress import StepBar, console
from ideogram_trt.core.sidecar import INDEX_FILE, TOKENIZER_DIR, ExportIndex, ExportSidecar, graph_path, sidecar_path
from ideogram_trt.core.tokenization import MAX_TEXT_TOKENS
from ideogram_trt.engines.anatomy import ANATOMY_SUFFIX, AnatomySource, EngineAnatomy, ProfileInfo, parse_layer_report
from ideogram_trt.engines.layer_cost import onnx_layer_costs
from ideogram_trt.engines.profiles import AxisRange, ProfileRanges, profile_for
from ideogram_trt.engines.sampler import write_sampler
from ideogram_trt.engines.targets import Target, resolve_flavor, resolve_target
from ideogram_trt.engines.tensorrt_adapter import BuildResult, BuildTarget, Profile, build_engine

# Bump when the way plans are built changes, so every key changes. 2: detailed profiling verbosity (the anatomy).
PLAN_FORMAT = 2
DEFAULT_DTYPE = {Flavor.TENSORRT: "bf16", Flavor.TENSORRT_RTX: "bf16", Flavor.ONNXRUNTIME: "fp32"}
TYPICAL_PROMPT_TOKENS = 512  # JSON captions run a few hundred tokens: the profiles' optimum
OWN_FOLDERS = ("plans", "graphs", "onnx", Component.SAMPLER.value, "timing-cache")
# What clean-up may delete: the names _build_one and _install_tokenizer give (engine names are graph[@HxW]).
_PLAN_NAME = re.compile(r"^[a-z_]+(@\d+x\d+)?\.[0-9a-f]{16}\.(plan|anatomy\.json)$")
_GRAPH_NAME = re.compile(r"^[a-z_]+(@\d+x\d+)?\.[0-9a-f]{16}\.onnx(\.data)?$")
_TOKENIZER_NAME = re.compile(r"^tokenizer\.[0-9a-f]{16}$")


@dataclass(frozen=True)
class BuildRequest:
    out: Path
    recipe: str
    buckets: list[Bucket]
    model: Path | None = None
    onnx: Path | None = None
    flavor: str = "auto"
    dtype: str | None = None
    calibration: Path | None = None
    compute_capabilities: tuple[str, ...] = ()
    per_bucket: bool = False
    max_batch: int = 4
    max_text_tokens: int = 2048
    timing_cache: Path | None = None
    optimization_level: int | None = None
    components: tuple[Component, ...] = DEFAULT_COMPONENTS
    quantize_attention: bool = False
    quantize_text_encoder: bool = False
    # What shapes the files of the export made from ``model`` (export.exporter.ExportOptions; unused with ``onnx``).
    excluded: tuple[str, ...] = ()
    opset: int = 21  # core.recipes.DEFAULT_OPSET
    external_data: str = "auto"
    # LoRA-ready conditional DiTs (docs/LORA.md §2): adapters of total rank up to this, as engine inputs.
    lora_rank: int | None = None

    def __post_init__(self) -> None:
        # Callers of the Python API may name components as strings; every stage after this one reads the enum.
        try:
            components = tuple(Component(c) for c in self.components)
        except ValueError:
            known = ", ".join(c.value for c in EXPORTED_COMPONENTS)
            raise InputError(f"unknown component(s) in {list(self.components)}: use {known}") from None
        object.__setattr__(self, "components", components)


@dataclass
class EngineSpec:
    """One engine to build: a graph and the buckets its profiles cover."""

    name: str
    graph: Component
    buckets: list[Bucket]  # empty: bucket-independent (text encoder)
    sidecar: ExportSidecar
    onnx: Path = Path()
    profiles: list[tuple[Bucket | None, Profile]] = field(default_factory=list)
    key: str = ""


@dataclass
class BuildOutcome:
    manifest: Manifest
    built: list[str]
    reused: list[str]


def _validate(request: BuildRequest) -> None:
    if (request.model is None) == (request.onnx is None):
        raise InputError("give exactly one of --model DIR (a checkpoint) or --onnx DIR (an export)")
    if not 1 <= request.max_batch <= MAX_BATCH_LIMIT:
        raise InputError(f"--max-batch {request.max_batch}: must be in [1, {MAX_BATCH_LIMIT}]")
    if not 1 <= request.max_text_tokens <= MAX_TEXT_TOKENS:
        raise InputError(
            f"--max-text-tokens {request.max_text_tokens}: must be in [1, {MAX_TEXT_TOKENS}] (the model's prompt limit)"
        )
    unknown = [c for c in request.components if c not in EXPORTED_COMPONENTS]
    if unknown:
        names = [c.value for c in unknown]
        raise InputError(f"unknown component(s) {names}: use {', '.join(c.value for c in EXPORTED_COMPONENTS)}")
    if not request.buckets:
        raise InputError("no buckets: pass --buckets, e.g. 1024x1024,768x1344")
    if request.lora_rank is not None:
        check_engine_rank(request.lora_rank)
        if not any(c.spec.serves is Component.DIT_COND for c in request.components):
            raise InputError("--lora-rank adds the LoRA side path to the conditional DiT: build dit_cond too")


def _existing_manifest(out: Path) -> Manifest | None:
    if not (out / MANIFEST_FILE).is_file():
        ours = (*OWN_FOLDERS, LOCK_FILE)  # what a failed first build may leave: its export cache, the lock
        if out.exists() and any(p for p in out.iterdir() if not p.name.startswith(".") and p.name not in ours):
            raise InputError(f"{out}: exists and is not an engine set (no {MANIFEST_FILE}); choose a new directory")
        return None
    try:
        return Manifest.load(out)
    except EngineSetError:
        return None  # an unreadable old manifest: everything gets rebuilt


def _prepare_export(request: BuildRequest, dtype: str) -> Path:
    """The export to build from: the given one, or ``OUT/onnx`` brought up to date with the checkpoint."""
    needed = list(request.components)
    if request.onnx is not None:
        index = ExportIndex.load(request.onnx)
        if (index.recipe, index.dtype) != (request.recipe, dtype):
            raise InputError(
                f"{request.onnx} holds a {index.recipe}/{index.dtype} export; this build needs "
                f"{request.recipe}/{dtype} (pass --recipe/--dtype to match, or --model to export)"
            )
        missing = [g.value for g in needed if not sidecar_path(request.onnx, g).is_file()]
        if missing:
            raise InputError(f"{request.onnx}: no {', '.join(missing)} graph; export it, or build with --model")
        for graph in needed:
            sidecar = ExportSidecar.load(request.onnx, graph)
            _verify_export(request.onnx, sidecar)
            made = None if sidecar.lora is None else sidecar.lora.max_rank
            wanted = request.lora_rank if graph.spec.serves is Component.DIT_COND else None
            if request.lora_rank is not None and made != wanted:  # else: the export's side path, as it is
                has = "no LoRA side path" if made is None else f"the LoRA side path of rank {made}"
                raise InputError(
                    f"{request.onnx}: its {graph.value} graph has {has}; this build asks for "
                    f"{'none' if wanted is None else f'--lora-rank {wanted}'} (export with the same --lora-rank, "
                    "or build with --model)"
                )
        return request.onnx

    from ideogram_trt.export.exporter import ExportOptions, ExternalData, export
    from ideogram_trt.export.recipes import GraphDType, Recipe, parse_enum
    from ideogram_trt.model.checkpoint import open_checkpoint

    assert request.model is not None
    export_dir = request.out / "onnx"
    if (export_dir / INDEX_FILE).is_file():
        index = ExportIndex.load(export_dir)
        if (index.recipe, index.dtype) != (request.recipe, dtype):
            shutil.rmtree(export_dir)  # our own cache (a real folder: owned_subdir), for another recipe or dtype
    options = ExportOptions(
        recipe=parse_enum(Recipe, request.recipe, "recipe"),
        dtype=parse_enum(GraphDType, dtype, "dtype"),
        graphs=tuple(needed),
        calibration=request.calibration,
        quantize_attention=request.quantize_attention,
        quantize_text_encoder=request.quantize_text_encoder,
        excluded=request.excluded,
        opset=request.opset,
        external_data=parse_enum(ExternalData, request.external_data, "--external-data mode"),
        lora_rank=request.lora_rank,
    )
    checkpoint = open_checkpoint(request.model)
    stale = [g for g in options.graphs if not _export_is_current(export_dir, g, checkpoint, options)]
    if stale:
        export(request.model, export_dir, replace(options, graphs=tuple(stale)))
    else:
        console.print(f"ONNX graphs in {export_dir} are up to date")
    return export_dir


def _export_is_current(export_dir: Path, graph: Component, checkpoint: Any, options: Any) -> bool:
    from ideogram_trt.export.calibration import Calibration

    if not sidecar_path(export_dir, graph).is_file() or not graph_path(export_dir, graph).is_file():
        return False
    try:
        sidecar = ExportSidecar.load(export_dir, graph)
        _verify_export(export_dir, sidecar)
    except InputError:
        return False  # our own cache, from another version or changed: export again
    plan = options.plan(graph)
    calibration = None
    if plan.needs_calibration and options.calibration is not None:
        calibration = Calibration.load(options.calibration).sha256
    made = sidecar.provenance
    return (
        made is not None
        and made.checkpoint.fingerprint == checkpoint.fingerprint(graph.spec.part_names)
        and (None if made.calibration is None else made.calibration.sha256) == calibration
        and made.options.quantize_attention == plan.quantize_attention
        and made.options.quantize_text_encoder == options.quantize_text_encoder
        and made.options.excluded == list(options.excluded)
        and sidecar.opset == options.opset
        and (sidecar.external_data is not None) == options.stores_external(sidecar.weights_bytes)
        and sidecar.lora == options.lora_slots(graph, checkpoint)
    )


def _verify_export(folder: Path, sidecar: ExportSidecar) -> None:
    """The graph and its external data are the bytes the export recorded (an edited .onnx.data is refused)."""
    files: list[tuple[Path, str | None]] = [(graph_path(folder, sidecar.graph), sidecar.file_sha256)]
    if sidecar.external_data:
        files.append((folder / sidecar.external_data, sidecar.external_data_sha256))
    for path, expected in files:
        check_source_file(path, folder)
        if not path.is_file():
            raise InputError(f"{path}: missing from the export; export again")
        if file_digest(path) != expected:
            raise InputError(f"{path}: changed since it was exported (sha256 differs from its sidecar); export again")


def engine_graphs(request: BuildRequest, export_dir: Path, out: Path, target: Target) -> dict[Component, Path]:
    """graph → its folder: the export's graphs, plus the sampler for TensorRT sets that denoise."""
    graphs = {g: export_dir for g in request.components}
    if target.flavor.is_tensorrt and Component.DIT_COND in graphs:
        channels = ExportSidecar.load(export_dir, Component.DIT_COND).tensor(io.LATENTS).shape[-1]
        folder = owned_subdir(out, Component.SAMPLER.value)
        write_sampler(folder, int(channels))
        graphs[Component.SAMPLER] = folder
    return graphs


def plan_specs(request: BuildRequest, graphs: dict[Component, Path], target: Target) -> list[EngineSpec]:
    """The engines this request asks for, with their profiles and build keys."""
    text = AxisRange(1, min(TYPICAL_PROMPT_TOKENS, request.max_text_tokens), request.max_text_tokens)
    ranges = ProfileRanges(batch=AxisRange(1, 1, request.max_batch), text=text)
    specs: list[EngineSpec] = []
    for graph, export_dir in graphs.items():
        sidecar = ExportSidecar.load(export_dir, graph)
        if not graph.spec.per_bucket:
            groups: list[tuple[str, list[Bucket]]] = [(graph.value, [])]
        elif request.per_bucket and target.flavor.is_tensorrt:
            groups = [(f"{graph.value}@{b.name}", [b]) for b in request.buckets]
        else:
            groups = [(graph.value, list(request.buckets))]
        # A LoRA-ready DiT's rank axis: ranks 1 … max, tuned for the max (docs/LORA.md §2).
        rank = None if sidecar.lora is None else AxisRange(1, sidecar.lora.max_rank, sidecar.lora.max_rank)
        graph_ranges = replace(ranges, lora_rank=rank)
        for name, buckets in groups:
            spec = EngineSpec(name, graph, buckets, sidecar, graph_path(export_dir, graph))
            if buckets:
                spec.profiles = [(b, profile_for(sidecar.inputs, b, graph_ranges)) for b in buckets]
            else:
                spec.profiles = [(None, profile_for(sidecar.inputs, None, graph_ranges))]
            # The graph's bytes (and provenance) stand for its recipe and dtype: a graph no recipe changes (the
            # VAE; the text encoder, weight-only under fp8 and fp8-wo alike) keeps its plan when the recipe changes.
            spec.key = json_digest(
                {
                    "format": PLAN_FORMAT,
                    "graph": sidecar.key_parts(),
                    "profiles": [(b.name if b else None, _shapes(p)) for b, p in spec.profiles],
                    "flavor": target.flavor.value,
                    "version": target.version,
                    "targets": list(target.compute_capabilities),
                    "gpu": target.gpu,
                    "optimization_level": request.optimization_level,
                }
            )
            specs.append(spec)
    return specs


def _shapes(profile: Profile) -> dict[str, dict[str, list[int]]]:
    return {n: {"min": list(r.min), "opt": list(r.opt), "max": list(r.max)} for n, r in profile.items()}


def _reusable(out: Path, previous: Manifest | None, spec: EngineSpec) -> EngineEntry | None:
    if previous is None:
        return None
    entry = previous.engines.get(spec.name)
    if entry is None or entry.key != spec.key:
        return None
    for record in entry.files:
        path = out / record.file
        if not path.is_file() or path.stat().st_size != record.bytes or file_digest(path) != record.sha256:
            return None
    return entry


def _anatomy(spec: EngineSpec, result: BuildResult, flavor: Flavor) -> EngineAnatomy:
    """The plan's layers: from the TensorRT-RTX builder's report, else (datacenter TensorRT, on its GPU) from the
    engine inspector; each with its cost from the graph it was built from."""
    if result.layer_reports:
        source = AnatomySource.BUILD_REPORT
        layers = [layer for report in result.layer_reports for layer in parse_layer_report(report, result.version)]
    else:
        from ideogram_trt.engines.inspector import inspect_plan, parse_inspector_json

        source = AnatomySource.ENGINE_INSPECTOR
        layers = parse_inspector_json(inspect_plan(result.plan, flavor))
    return EngineAnatomy(
        engine=spec.name,
        graph=spec.graph.value,
        source=source,
        version=result.version,
        profiles=tuple(ProfileInfo(i, b.name if b else None) for i, (b, _) in enumerate(spec.profiles)),
        layers=tuple(layers),
        costs=tuple(onnx_layer_costs(spec.onnx, layers)),
    )


def _build_one(request: BuildRequest, out: Path, spec: EngineSpec, target: Target) -> EngineEntry:
    weights = spec.sidecar.weights_bytes
    data: FileRecord | None = None
    anatomy: FileRecord | None = None
    if target.flavor is Flavor.ONNXRUNTIME:
        # The engine is the graph itself (ONNX Runtime compiles it at session creation).
        relative = f"graphs/{spec.name}.{spec.key[:16]}.onnx"
        destination = out / relative
        if spec.sidecar.external_data:
            data_path = destination.with_name(f"{destination.name}.data")
            atomic_copy(spec.onnx.with_name(spec.sidecar.external_data), data_path, "graph data")
            data = FileRecord(f"{relative}.data", file_digest(data_path), data_path.stat().st_size)
            # The graph names its data file: keep it next to the graph under the name the graph was saved with.
            _rewrite_external_location(spec.onnx, destination, data_path.name)
        else:
            atomic_copy(spec.onnx, destination, "graph")
        report = BuildReport(0.0, 0, destination.stat().st_size, weights)
    else:
        cache = request.timing_cache or out / "timing-cache" / f"{target.flavor.value}-{_target_tag(target)}.cache"
        build_target = BuildTarget(
            target.flavor,
            target.compute_capabilities if target.flavor is Flavor.TENSORRT_RTX else (),
            request.optimization_level,
            cache,
        )
        result = build_engine(spec.onnx, [p for _, p in spec.profiles], build_target, detailed=True)
        relative = f"plans/{spec.name}.{spec.key[:16]}.plan"
        destination = out / relative
        try:
            anatomy_text = _anatomy(spec, result, target.flavor).to_json()
        except Exception as exc:  # a diagnostic: the plan is good without it (`inspect --anatomy` says so)
            console.print(f"  {spec.name}: warning: no anatomy recorded ({type(exc).__name__}: {exc})")
        else:
            anatomy_path = out / f"plans/{spec.name}.{spec.key[:16]}{ANATOMY_SUFFIX}"
            atomic_write(anatomy_path, anatomy_text, "engine anatomy")
            size = len(anatomy_text.encode())
            anatomy = FileRecord(anatomy_path.relative_to(out).as_posix(), file_digest(anatomy_path), size)
        atomic_write(destination, result.plan, "plan")
        report = BuildReport(round(result.seconds, 2), result.peak_host_memory_bytes, len(result.plan), weights)
    return EngineEntry(
        name=spec.name,
        graph=spec.graph,
        file=relative,
        sha256=file_digest(destination),
        bytes=destination.stat().st_size,
        key=spec.key,
        buckets=[b.name for b in spec.buckets],
        profiles=[
            ProfileEntry(
                i,
                b.name if b else None,
                {n: ShapeRangeEntry(list(r.min), list(r.opt), list(r.max)) for n, r in p.items()},
            )
            for i, (b, p) in enumerate(spec.profiles)
        ],
        inputs=spec.sidecar.inputs,
        outputs=spec.sidecar.outputs,
        onnx_sha256=spec.sidecar.file_sha256,
        build=report,
        external_data=data,
        anatomy=anatomy,
    )


def _target_tag(target: Target) -> str:
    return (target.gpu or "sm" + "-sm".join(target.compute_capabilities)).replace(" ", "_").replace(".", "")


def _rewrite_external_location(source: Path, destination: Path, data_name: str) -> None:
    import onnx

    model = onnx.load(str(source), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = data_name
    with atomic_path(destination, "graph") as tmp:
        onnx.save(model, str(tmp))


def _install_tokenizer(export_dir: Path, out: Path, required: bool) -> tuple[str, list[FileRecord]]:
    """Copy the export's tokenizer into a folder named by its content (links out of it refused); returns the
    name ("" for a set without a text encoder, which cannot generate on its own) and its files' records."""
    source = export_dir / TOKENIZER_DIR
    if not source.is_dir():
        if not required:
            return "", []
        raise InputError(f"{export_dir}: no tokenizer/ (export the text_encoder graph, which carries it)")
    records = _tree_records(source)
    name = f"tokenizer.{json_digest({r.file: r.sha256 for r in records})[:16]}"
    installed = out / name
    if installed.is_symlink() or not installed.is_dir() or _tree_records(installed) != records:
        with staged_dir(installed, replace=True) as staging:
            copy_tree(source, staging)
            if _tree_records(staging) != records:
                raise InputError(f"{source}: changed while it was being copied; run the build again")
    return name, records


def _tree_records(folder: Path) -> list[FileRecord]:
    """(relative path, sha256, size) of every file under ``folder``, sorted; links leaving it are refused."""
    files = sorted(p for p in folder.rglob("*") if not p.is_dir())
    return [
        FileRecord(p.relative_to(folder).as_posix(), file_digest(check_source_file(p, folder)), p.stat().st_size)
        for p in files
    ]


def _model_facts(sidecars: dict[Component, ExportSidecar], opset: int) -> ModelFacts:
    dit = sidecars.get(Component.DIT_COND) or sidecars.get(Component.DIT_UNCOND)
    cond = sidecars.get(Component.DIT_COND)
    return ModelFacts(
        has_unconditional=Component.DIT_UNCOND in sidecars,
        latent_channels=None if dit is None else int(dit.tensor(io.LATENTS).shape[-1]),
        rope=None if dit is None else dit.rope,
        hidden_size=None if cond is None else int(cond.tensor(io.TEXT_HIDDEN).shape[-1]),
        opset=opset,
        lora=None if cond is None else cond.lora,
    )


def _collect_garbage(out: Path, manifest: Manifest) -> None:
    """Remove plans, graphs and tokenizer folders the committed manifest does not name, and our temporaries of
    writers that are gone. Only regular files and real folders named as this module names them, inside the
    set's own real subfolders: never a user's file, never through a link."""
    keep = {record.file for entry in manifest.engines.values() for record in entry.files}
    for folder, pattern in (("plans", _PLAN_NAME), ("graphs", _GRAPH_NAME)):
        path = out / folder
        if path.is_symlink() or not path.is_dir():
            continue
        remove_stale(path)
        for item in path.iterdir():
            if pattern.match(item.name) and f"{folder}/{item.name}" not in keep and _is_regular(item):
                item.unlink()
    remove_stale(out)
    for item in out.iterdir():
        if _TOKENIZER_NAME.match(item.name) and item.name != manifest.tokenizer and _is_folder(item):
            shutil.rmtree(item)


def _is_regular(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()


def _is_folder(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def _prepare_out(out: Path) -> None:
    """``out`` may be new, or an engine set (or an empty folder); its subfolders of ours must be real folders."""
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder; give a new or existing engine-set folder")
    for name in OWN_FOLDERS:
        if (out / name).is_symlink() or ((out / name).exists() and not (out / name).is_dir()):
            owned_subdir(out, name)  # raises, naming the folder


def _remove_if_empty(out: Path) -> None:
    """After a failed first build: remove ``out`` if nothing of value is in it (only our lock, temporaries and
    empty folders). A completed export cache in ``out/onnx`` is kept: the next build reuses it."""
    remove_stale(out)
    for name in OWN_FOLDERS:
        folder = out / name
        if _is_folder(folder):
            remove_stale(folder)
            if not any(folder.iterdir()):
                folder.rmdir()
    if [p.name for p in out.iterdir()] in ([LOCK_FILE], []):
        (out / LOCK_FILE).unlink(missing_ok=True)
        out.rmdir()


def build_engine_set(request: BuildRequest, env: RuntimeEnv | None = None) -> BuildOutcome:
    _validate(request)
    env = env or RuntimeEnv.detect()
    flavor = resolve_flavor(request.flavor, env)
    target = resolve_target(flavor, request.compute_capabilities, env)
    out = request.out
    _prepare_out(out)
    _existing_manifest(out)  # refuses a folder that is not an engine set before anything is written
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with FolderLock(out, "build-engines"):
            return _build_locked(request, target)
    except BaseException:
        if created and out.is_dir():
            _remove_if_empty(out)
        raise


def _build_locked(request: BuildRequest, target: Target) -> BuildOutcome:
    flavor, out = target.flavor, request.out
    dtype = request.dtype or DEFAULT_DTYPE[flavor]
    previous = _existing_manifest(out)  # read under the lock: another build may have committed meanwhile
    for folder in (out, *(out / name for name in OWN_FOLDERS)):
        remove_stale(folder)
    owned_subdir(out, "plans" if flavor.is_tensorrt else "graphs")

    export_dir = _prepare_export(request, dtype)
    if (export_dir / TOKENIZER_DIR).is_dir():
        check_tree(export_dir / TOKENIZER_DIR)  # a link out of it is refused before anything is built
    index = ExportIndex.load(export_dir)
    specs = plan_specs(request, engine_graphs(request, export_dir, out, target), target)
    entries: dict[str, EngineEntry] = {}
    built, reused = [], []
    where = f"{flavor.value} {target.version}" + (
        f" for sm {', '.join(target.compute_capabilities)}" if target.compute_capabilities else ""
    )
    console.print(
        f"engine set {out}: {len(specs)} engines, {where}, buckets {', '.join(b.name for b in request.buckets)}"
    )
    with StepBar("building engines", len(specs)) as bar:
        for spec in specs:
            entry = _reusable(out, previous, spec)
            if entry is not None:
                console.print(f"  {spec.name}: up to date")
                reused.append(spec.name)
            else:
                why = "new" if previous is None or spec.name not in previous.engines else "inputs changed"
                console.print(f"  {spec.name}: building ({why})")
                bar.describe(f"building {spec.name} ({len(spec.profiles)} profile{'s' * (len(spec.profiles) > 1)})")
                entry = _build_one(request, out, spec, target)
                assert entry.build is not None
                if target.flavor.is_tensorrt:
                    console.print(
                        f"  {spec.name}: built in {entry.build.seconds:.1f}s, {entry.bytes / 1e6:.1f} MB, "
                        f"peak host memory {entry.build.peak_host_memory_bytes / 2**30:.2f} GiB"
                    )
                else:
                    console.print(f"  {spec.name}: graph copied, {entry.bytes / 1e6:.1f} MB")
                built.append(spec.name)
            entries[spec.name] = entry
            bar.advance()

    sidecars = {g: ExportSidecar.load(export_dir, g) for g in request.components}
    made = [sidecar.provenance for sidecar in sidecars.values() if sidecar.provenance is not None]
    calibrations = [p.calibration.sha256 for p in made if p.calibration is not None]
    required = Component.TEXT_ENCODER in request.components
    tokenizer, tokenizer_files = _install_tokenizer(export_dir, out, required=required)
    manifest = Manifest(
        flavor=flavor,
        runtime_version=target.version,
        compute_capabilities=list(target.compute_capabilities),
        gpu=target.gpu,
        recipe=index.recipe,
        dtype=index.dtype,
        checkpoint={g.value: p.checkpoint.fingerprint for g, s in sidecars.items() if (p := s.provenance) is not None},
        calibration=next(iter(calibrations), None),
        buckets=[b.name for b in request.buckets],
        max_batch=request.max_batch,
        max_text_tokens=request.max_text_tokens,
        model=_model_facts(sidecars, sidecars[request.components[0]].opset),
        tokenizer=tokenizer,
        engines=entries,
        tokenizer_files=tokenizer_files,
        builder={
            "optimization_level": request.optimization_level,
            "strongly_typed": True,
            "per_bucket": request.per_bucket,
        },
        created_by=f"ideogram-trt {__version__}",
    )
    manifest.save(out)
    _collect_garbage(out, manifest)
    return BuildOutcome(manifest, built, reused)
