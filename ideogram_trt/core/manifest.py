"""The engine-set manifest (docs/ARCHITECTURE.md §7): what was built, from what, for which GPU, runtime and sizes —
and the check that refuses to run a plan anywhere else.

An engine set is a directory: ``manifest.json``, the plans (or, for ONNX Runtime, the graphs) it names, and the
checkpoint's tokenizer. Everything a runtime needs to run it without the checkpoint or PyTorch is here: engine
I/O, buckets and profiles, the model facts the host side computes with (RoPE frequencies, latent channels).
"""

from __future__ import annotations

import importlib
import json
import math
from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from pathlib import Path
from typing import Any

from ideogram_trt.core.buckets import Bucket, nearest
from ideogram_trt.core.components import Component
from ideogram_trt.core.digest import file_digest
from ideogram_trt.core.errors import IdeogramTrtError
from ideogram_trt.core.files import atomic_write, resolve_inside
from ideogram_trt.core.gpu import GpuInfo, visible_gpus
from ideogram_trt.core.lora import INPUT_PREFIX as LORA_INPUT_PREFIX
from ideogram_trt.core.lora import LoraSlots
from ideogram_trt.core.records import Fields, TensorEntry, find_tensor
from ideogram_trt.core.sidecar import Rope
from ideogram_trt.core.tokenization import MAX_TEXT_TOKENS

# 2: external data files and tokenizer files are hashed, every field is validated on load.
# 3: TensorRT engines name their anatomy file (engines/anatomy.py). A schema-2 set still loads, without anatomy.
SCHEMA_VERSION = 3
READABLE_SCHEMAS = (2, 3)
MANIFEST_FILE = "manifest.json"
MAX_BATCH_LIMIT = 64  # engine profiles above this are not a deployment we can test; the loader refuses them


class Flavor(str, Enum):
    TENSORRT = "tensorrt"  # datacenter TensorRT: plans for the GPU they were built on
    TENSORRT_RTX = "tensorrt-rtx"  # TensorRT for RTX: plans built ahead of time for named compute capabilities
    ONNXRUNTIME = "onnxruntime"  # the ONNX graphs themselves (CPU, or CUDA where onnxruntime-gpu is installed)

    @property
    def module_name(self) -> str:
        return {"tensorrt": "tensorrt", "tensorrt-rtx": "tensorrt_rtx", "onnxruntime": "onnxruntime"}[self.value]

    @property
    def is_tensorrt(self) -> bool:
        return self is not Flavor.ONNXRUNTIME


class EngineSetError(IdeogramTrtError):
    """An engine set that cannot run here, or not for this request; the message says what to rebuild."""


@dataclass(frozen=True)
class ShapeRangeEntry:
    min: list[int]
    opt: list[int]
    max: list[int]


@dataclass(frozen=True)
class ProfileEntry:
    index: int
    bucket: str | None  # None: the profile serves every bucket (the text encoder)
    shapes: dict[str, ShapeRangeEntry]


@dataclass(frozen=True)
class BuildReport:
    seconds: float
    peak_host_memory_bytes: int
    plan_bytes: int
    weights_bytes: int


@dataclass(frozen=True)
class FileRecord:
    """A file of the engine set other than a plan: its path relative to the set (or to the tokenizer folder), its
    sha256 and size."""

    file: str
    sha256: str
    bytes: int


@dataclass(frozen=True)
class EngineEntry:
    name: str  # the component's name, or NAME@HxW for one plan per bucket
    graph: Component
    file: str  # relative to the engine set
    sha256: str
    bytes: int
    key: str  # hash of everything the plan depends on: graph, profiles, runtime, targets, builder settings
    buckets: list[str]  # the buckets this entry serves; empty = all (the text encoder)
    profiles: list[ProfileEntry]
    inputs: list[TensorEntry]
    outputs: list[TensorEntry]
    onnx_sha256: str
    build: BuildReport | None = None
    external_data: FileRecord | None = None  # an ONNX Runtime graph's weights file, read with the graph
    anatomy: FileRecord | None = None  # a TensorRT plan's layers as built (schema 3; `inspect --anatomy`)

    @property
    def runtime_files(self) -> list[FileRecord]:
        """What running this engine reads: the plan or graph, and its external data."""
        own = FileRecord(self.file, self.sha256, self.bytes)
        return [own] if self.external_data is None else [own, self.external_data]

    @property
    def files(self) -> list[FileRecord]:
        """Every file of this engine in the set: what it runs from, and its anatomy (which no runtime reads, so a
        missing anatomy file does not stop a set from running; ``inspect --anatomy`` refuses it)."""
        return self.runtime_files + ([self.anatomy] if self.anatomy is not None else [])

    def input(self, name: str) -> TensorEntry:
        return find_tensor(self.inputs, name)

    def output(self, name: str) -> TensorEntry:
        return find_tensor(self.outputs, name)

    def profile_for(self, bucket: str) -> ProfileEntry:
        for profile in self.profiles:
            if profile.bucket in (None, bucket):
                return profile
        raise EngineSetError(f"engine {self.name} has no profile for bucket {bucket}")


@dataclass(frozen=True)
class ModelFacts:
    """What the host side computes with, taken from the export: RoPE tables, latent and text widths."""

    has_unconditional: bool
    latent_channels: int | None = None
    rope: Rope | None = None
    hidden_size: int | None = None
    opset: int | None = None  # of the exported graphs
    lora: LoraSlots | None = None  # the conditional DiT's LoRA side path, in LoRA-ready sets (docs/LORA.md §2)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"has_unconditional": self.has_unconditional}
        if self.latent_channels is not None:
            body["latent_channels"] = self.latent_channels
        if self.rope is not None:
            body["rope"] = {"inv_freq": self.rope.inv_freq, "mrope_section": self.rope.mrope_section}
        if self.hidden_size is not None:
            body["hidden_size"] = self.hidden_size
        body["opset"] = self.opset
        if self.lora is not None:  # absent otherwise: sets built without --lora-rank read as before
            body["lora"] = self.lora.to_json()
        return body


@dataclass(frozen=True)
class Manifest:
    flavor: Flavor
    runtime_version: str
    compute_capabilities: list[str]  # targets; for datacenter TensorRT the build GPU's
    gpu: str | None  # the GPU name a datacenter TensorRT set was built on
    recipe: str
    dtype: str
    checkpoint: dict[str, Any]  # fingerprint, parts → digests
    calibration: str | None  # sha256 of the calibration file (fp8 recipe)
    buckets: list[str]
    max_batch: int
    max_text_tokens: int
    model: ModelFacts
    tokenizer: str
    engines: dict[str, EngineEntry]
    tokenizer_files: list[FileRecord] = field(default_factory=list)  # paths relative to the tokenizer folder
    builder: dict[str, Any] = field(default_factory=dict)
    created_by: str = ""
    schema: int = SCHEMA_VERSION

    @property
    def bucket_objects(self) -> list[Bucket]:
        return [Bucket.parse(b) for b in self.buckets]

    def engine_for(self, graph: Component, bucket: str | None = None) -> EngineEntry:
        for entry in self.engines.values():
            if entry.graph is graph and (not entry.buckets or bucket is None or bucket in entry.buckets):
                return entry
        raise EngineSetError(f"this engine set has no {graph.value} engine" + (f" for {bucket}" if bucket else ""))

    def has(self, graph: Component) -> bool:
        return any(entry.graph is graph for entry in self.engines.values())

    # --- JSON ---------------------------------------------------------------------------------------------------

    def to_json(self) -> str:
        body = asdict(self)
        body["flavor"] = self.flavor.value
        body["model"] = self.model.to_json()
        return json.dumps(body, indent=1) + "\n"

    def save(self, root: Path) -> None:
        """Atomic: a reader sees the old manifest or the new one, never half of one."""
        atomic_write(root / MANIFEST_FILE, self.to_json(), what="manifest")

    def files(self) -> list[tuple[FileRecord, str]]:
        """Every file of the set a runtime reads, with what reads it: plans or graphs (with their data), then the
        tokenizer's files; paths relative to the set."""
        records = [(r, f"engine {entry.name}") for entry in self.engines.values() for r in entry.runtime_files]
        for r in self.tokenizer_files:
            records.append((FileRecord(f"{self.tokenizer}/{r.file}", r.sha256, r.bytes), "tokenizer"))
        return records

    @classmethod
    def load(cls, root: Path) -> Manifest:
        """Read and validate ``root/manifest.json``: every field's type and range, and every path in it relative
        and inside ``root``. The message of a refusal names the field."""
        path = root / MANIFEST_FILE
        if not path.is_file():
            raise EngineSetError(f"{root}: no {MANIFEST_FILE}; build an engine set with `ideogram-trt build-engines`")
        try:
            body = json.loads(path.read_bytes())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise EngineSetError(f"{path}: not valid JSON ({exc}); rebuild the engine set") from exc
        if not isinstance(body, dict):
            raise EngineSetError(f"{path}: not a manifest (a JSON object); rebuild the engine set")
        if body.get("schema") not in READABLE_SCHEMAS:
            raise EngineSetError(
                f"{path}: manifest schema {body.get('schema')!r}, this ideogram-trt reads "
                f"{' and '.join(map(str, READABLE_SCHEMAS))}: rebuild the engine set with this version"
            )
        manifest = _parse_manifest(body, _fields(path))
        _check_paths(root, manifest, path)
        return manifest


# --- validation of a loaded manifest ------------------------------------------------------------------------------


def _fields(path: Path) -> Fields:
    return Fields(path, EngineSetError, "rebuild the engine set")


def _record(f: Fields, raw: object, where: str) -> FileRecord:
    return FileRecord(f.get(raw, "file", str, where), f.get(raw, "sha256", str, where),
                      f.count(raw, "bytes", where, 0, 1 << 50))  # fmt: skip


def _parse_manifest(body: dict[str, Any], f: Fields) -> Manifest:
    for key in sorted(set(body) - {x.name for x in fields(Manifest)}):
        raise f.fail(key, "is not a manifest field (a newer ideogram-trt wrote this set?)")
    try:
        flavor = Flavor(f.get(body, "flavor", str, ""))
    except ValueError:
        raise f.fail("flavor", f"must be one of {', '.join(x.value for x in Flavor)}") from None
    buckets = f.strings(body, "buckets", "")
    if not buckets:
        raise f.fail("buckets", "must name at least one bucket")
    for name in buckets:
        try:
            Bucket.parse(name)
        except IdeogramTrtError as exc:
            raise f.fail("buckets", f"holds {name!r}, not a bucket ({exc})") from None
    engines_raw = f.get(body, "engines", dict, "")
    if not engines_raw:
        raise f.fail("engines", "must name at least one engine")
    tokenizer_files = f.get(body, "tokenizer_files", list, "")
    return Manifest(
        flavor=flavor,
        runtime_version=f.get(body, "runtime_version", str, ""),
        compute_capabilities=f.strings(body, "compute_capabilities", ""),
        gpu=f.get(body, "gpu", str, "", optional=True),
        recipe=f.get(body, "recipe", str, ""),
        dtype=f.get(body, "dtype", str, ""),
        checkpoint=f.get(body, "checkpoint", dict, ""),
        calibration=f.get(body, "calibration", str, "", optional=True),
        buckets=buckets,
        max_batch=f.count(body, "max_batch", "", 1, MAX_BATCH_LIMIT),
        max_text_tokens=f.count(body, "max_text_tokens", "", 1, MAX_TEXT_TOKENS),
        model=_parse_model(f.get(body, "model", dict, ""), f),
        tokenizer=f.get(body, "tokenizer", str, ""),
        engines={name: _parse_engine(raw, f"engines.{name}", f, buckets) for name, raw in engines_raw.items()},
        tokenizer_files=[_record(f, r, f"tokenizer_files.{i}") for i, r in enumerate(tokenizer_files)],
        builder=f.get(body, "builder", dict, ""),
        created_by=f.get(body, "created_by", str, ""),
        schema=f.get(body, "schema", int, ""),
    )


def _parse_model(raw: dict[str, Any], f: Fields) -> ModelFacts:
    for key in sorted(set(raw) - {x.name for x in fields(ModelFacts)}):
        raise f.fail(f"model.{key}", "is not a model fact (a newer ideogram-trt wrote this set?)")
    sizes = {key: f.count(raw, key, "model", 1, 1 << 16) if key in raw else None
             for key in ("latent_channels", "hidden_size")}  # fmt: skip
    rope = f.get(raw, "rope", dict, "model", optional=True)
    facts = None
    if rope is not None:
        inv_freq = f.get(rope, "inv_freq", list, "model.rope")
        if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in inv_freq):
            raise f.fail("model.rope.inv_freq", "must be a list of finite numbers")
        section = f.ints(f.get(rope, "mrope_section", list, "model.rope"), "model.rope.mrope_section")
        if len(section) != 3 or 3 * max(section[1:]) > len(inv_freq):
            raise f.fail("model.rope.mrope_section", f"{section} does not fit {len(inv_freq)} frequencies")
        facts = Rope(inv_freq, section)
    lora = None
    if (lora_raw := f.get(raw, "lora", dict, "model", optional=True)) is not None:
        keys = ("max_rank", "layers", "hidden", "intermediate", "adaln")
        lora = LoraSlots.from_json({k: f.count(lora_raw, k, "model.lora", 1, 1 << 20) for k in keys})
    return ModelFacts(f.get(raw, "has_unconditional", bool, "model"), sizes["latent_channels"], facts,
                      sizes["hidden_size"], f.get(raw, "opset", int, "model", optional=True), lora)  # fmt: skip


def _parse_engine(raw: object, where: str, f: Fields, buckets: list[str]) -> EngineEntry:
    profiles = []
    for i, p in enumerate(f.get(raw, "profiles", list, where)):
        at = f"{where}.profiles.{i}"
        shapes = {}
        for name, r in f.get(p, "shapes", dict, at).items():
            lo, mid, hi = (f.ints(f.get(r, k, list, f"{at}.shapes.{name}"), f"{at}.shapes.{name}.{k}")
                           for k in ("min", "opt", "max"))  # fmt: skip
            if not len(lo) == len(mid) == len(hi) or any(not a <= b <= c for a, b, c in zip(lo, mid, hi, strict=True)):
                raise f.fail(f"{at}.shapes.{name}", "must hold min <= opt <= max of one rank")
            shapes[name] = ShapeRangeEntry(lo, mid, hi)
        bucket = f.get(p, "bucket", str, at, optional=True)
        if bucket is not None and bucket not in buckets:
            raise f.fail(f"{at}.bucket", f"names {bucket!r}, which is not in the set's buckets")
        profiles.append(ProfileEntry(f.count(p, "index", at, 0, 1 << 10), bucket, shapes))
    if not profiles:
        raise f.fail(f"{where}.profiles", "must hold at least one profile")
    build = f.get(raw, "build", dict, where, optional=True)
    data = f.get(raw, "external_data", dict, where, optional=True)
    anatomy = f.get(raw, "anatomy", dict, where, optional=True)
    entry_buckets = f.strings(raw, "buckets", where)
    if unknown := sorted(set(entry_buckets) - set(buckets)):
        raise f.fail(f"{where}.buckets", f"names {', '.join(unknown)}, not in the set's buckets")
    try:
        graph = Component(f.get(raw, "graph", str, where))
    except ValueError:
        raise f.fail(f"{where}.graph", f"must be one of {', '.join(c.value for c in Component)}") from None
    return EngineEntry(
        name=f.get(raw, "name", str, where),
        graph=graph,
        file=f.get(raw, "file", str, where),
        sha256=f.get(raw, "sha256", str, where),
        bytes=f.count(raw, "bytes", where, 0, 1 << 50),
        key=f.get(raw, "key", str, where),
        buckets=entry_buckets,
        profiles=profiles,
        inputs=f.tensors(raw, "inputs", where),
        outputs=f.tensors(raw, "outputs", where),
        onnx_sha256=f.get(raw, "onnx_sha256", str, where),
        build=None
        if build is None
        else BuildReport(
            float(f.get(build, "seconds", (int, float), f"{where}.build")),
            f.count(build, "peak_host_memory_bytes", f"{where}.build", 0, 1 << 60),
            f.count(build, "plan_bytes", f"{where}.build", 0, 1 << 60),
            f.count(build, "weights_bytes", f"{where}.build", 0, 1 << 60),
        ),
        external_data=None if data is None else _record(f, data, f"{where}.external_data"),
        anatomy=None if anatomy is None else _record(f, anatomy, f"{where}.anatomy"),
    )


def _check_paths(root: Path, manifest: Manifest, path: Path) -> None:
    """Every path the manifest names is relative, without '..', and stays inside ``root`` (links followed)."""
    fix = "an engine set names only files inside its own folder; rebuild it"
    for name, entry in manifest.engines.items():
        for record in entry.files:
            resolve_inside(root, record.file, f"{path}: engines.{name}", EngineSetError, fix)
    if manifest.tokenizer:
        folder = resolve_inside(root, manifest.tokenizer, f"{path}: tokenizer", EngineSetError, fix)
        for record in manifest.tokenizer_files:
            resolve_inside(folder, record.file, f"{path}: tokenizer_files", EngineSetError, fix)


# --- the check ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuntimeEnv:
    """What this machine offers: the version of each flavor's runtime (None: not importable) and its GPUs."""

    versions: dict[Flavor, str | None]
    gpus: list[GpuInfo]

    @classmethod
    def detect(cls) -> RuntimeEnv:
        return cls({flavor: runtime_version(flavor) for flavor in Flavor}, visible_gpus())

    def available_flavors(self) -> list[Flavor]:
        return [f for f, v in self.versions.items() if v is not None]


def runtime_version(flavor: Flavor) -> str | None:
    """The installed runtime's version, or None when it is missing (a stub-only package counts as missing)."""
    try:
        module = importlib.import_module(flavor.module_name)
    except Exception:  # a broken install (missing shared library) is as good as none
        return None
    version = getattr(module, "__version__", None)
    return str(version) if version else None


@dataclass(frozen=True)
class EngineSetProblems:
    """Why an engine set cannot run here, by kind, each line with its fix: ``machine`` (the runtime and GPUs
    against what the plans were built for, and the bucket asked for), ``files`` (every file's bytes against the
    manifest's hashes) and ``structure`` (what loading would refuse; ``structure_problems``)."""

    machine: list[str]
    files: list[str]
    structure: list[str]

    @property
    def all(self) -> list[str]:
        return self.machine + self.files + self.structure


def engine_set_problems(
    root: Path,
    manifest: Manifest,
    env: RuntimeEnv,
    bucket: Bucket | None = None,
    verify_files: bool = True,
    allow_other_gpu: bool = False,
) -> EngineSetProblems:
    """Every reason this engine set cannot run here (for ``bucket``, if given), by kind. ``allow_other_gpu``
    accepts a datacenter TensorRT set built on another GPU model."""
    machine: list[str] = []
    rebuild = f"rebuild with `ideogram-trt build-engines --out {root}`"
    installed = env.versions.get(manifest.flavor)
    if installed is None:
        others = ", ".join(f.value for f in env.available_flavors()) or "none"
        machine.append(
            f"built for {manifest.flavor.value}, which is not installed here (available: {others}): install "
            f"{manifest.flavor.value} {manifest.runtime_version}, or {rebuild} --flavor <one of those>"
        )
    elif manifest.flavor.is_tensorrt and installed != manifest.runtime_version:
        machine.append(
            f"built with {manifest.flavor.value} {manifest.runtime_version}, but {installed} is installed: plans "
            f"only load in the exact version that built them (patch and build number included); {rebuild}"
        )
    if manifest.flavor.is_tensorrt:
        machine += _gpu_problems(manifest, env, rebuild, allow_other_gpu)
    if bucket is not None and bucket.name not in manifest.buckets:
        machine.append(bucket_refusal(manifest, bucket))
    files: list[str] = []
    if verify_files:
        for record, owner in manifest.files():
            path = root / record.file
            if not path.is_file():
                files.append(f"{path}: missing ({owner}); {rebuild}")
            elif path.stat().st_size != record.bytes or file_digest(path) != record.sha256:
                files.append(f"{path}: changed since it was built (sha256 differs from the manifest); {rebuild}")
    return EngineSetProblems(machine, files, structure_problems(root, manifest))


def check_engine_set(
    root: Path,
    manifest: Manifest,
    env: RuntimeEnv,
    bucket: Bucket | None = None,
    verify_files: bool = True,
    allow_other_gpu: bool = False,
) -> list[str]:
    """Every reason this engine set cannot run here (``engine_set_problems``), as one list."""
    return engine_set_problems(root, manifest, env, bucket, verify_files, allow_other_gpu).all


def _gpu_problems(manifest: Manifest, env: RuntimeEnv, rebuild: str, allow_other_gpu: bool) -> list[str]:
    """Datacenter TensorRT plans are tuned for, and may only deserialize on, the GPU model that built them;
    TensorRT-RTX plans run on any GPU of the compute capabilities they were built for (README.md, "Files")."""
    if not env.gpus:
        return [f"no NVIDIA GPU visible: {manifest.flavor.value} plans need one"]
    problems = []
    for gpu in env.gpus:
        if gpu.compute_capability not in manifest.compute_capabilities:
            fix = f"{rebuild} on this GPU" + (
                " --compute-capability " + gpu.compute_capability if manifest.flavor is Flavor.TENSORRT_RTX else ""
            )
            problems.append(
                f"GPU {gpu.index} ({gpu.name}) has compute capability {gpu.compute_capability}; the plans were built "
                f"for {', '.join(manifest.compute_capabilities)}: {fix}"
            )
        elif manifest.flavor is Flavor.TENSORRT and gpu.name != manifest.gpu and not allow_other_gpu:
            problems.append(
                f"GPU {gpu.index} is {gpu.name}, but these datacenter TensorRT plans were built on {manifest.gpu} "
                f"(same compute capability, another model: tactics and memory differ): {rebuild} on this GPU, or "
                "pass --allow-other-gpu to run them anyway"
            )
    return problems


def structure_problems(root: Path, manifest: Manifest) -> list[str]:
    """What loading the set would refuse, found without running an engine: the engines a request needs, a
    profile per bucket, and a tokenizer that loads."""
    from ideogram_trt.core.tokenization import PromptTokenizer

    rebuild = f"rebuild with `ideogram-trt build-engines --out {root}`"
    problems = []
    needed = [Component.TEXT_ENCODER, Component.DIT_COND, Component.VAE_DECODER]
    if manifest.model.has_unconditional:
        needed.append(Component.DIT_UNCOND)
    if manifest.flavor.is_tensorrt:
        needed.append(Component.SAMPLER)
    for graph in needed:
        if not manifest.has(graph):
            problems.append(f"this engine set has no {graph.value} engine, which generating needs; {rebuild}")
    per_bucket = [e for e in manifest.engines.values() if e.graph.spec.per_bucket]
    for name in manifest.buckets:
        for graph in sorted({e.graph for e in per_bucket}, key=lambda g: g.value):
            serving = [e for e in per_bucket if e.graph is graph and (not e.buckets or name in e.buckets)]
            if not serving or not any(p.bucket in (None, name) for p in serving[0].profiles):
                problems.append(f"bucket {name} has no {graph.value} profile in this engine set; {rebuild}")
    slots = manifest.model.lora
    for entry in manifest.engines.values():
        if entry.graph.spec.serves is Component.DIT_COND:
            side = {t.name for t in entry.inputs if t.name.startswith(LORA_INPUT_PREFIX)}
            if side != set(() if slots is None else slots.input_names):
                says = "no LoRA side path" if slots is None else f"a LoRA side path of rank {slots.max_rank}"
                problems.append(f"engine {entry.name}'s LoRA inputs do not match the manifest, which says {says}; "
                                f"{rebuild}")  # fmt: skip
    if manifest.model.latent_channels is None and manifest.has(Component.DIT_COND):
        problems.append(f"the manifest's model facts lack latent_channels; {rebuild}")
    if not manifest.tokenizer:
        problems.append(f"this engine set has no tokenizer; {rebuild} with the text_encoder component")
    else:
        try:
            PromptTokenizer.from_dir(root / manifest.tokenizer)
        except IdeogramTrtError as exc:
            problems.append(f"the tokenizer does not load: {exc}; {rebuild}")
    return problems


def bucket_refusal(manifest: Manifest, bucket: Bucket) -> str:
    close = ", ".join(b.name for b in nearest(manifest.bucket_objects, bucket.height, bucket.width))
    return (
        f"{bucket.name} is not a bucket of this engine set (nearest: {close}); ask for one of those, or rebuild "
        f"with --buckets including {bucket.name}"
    )


def require_runnable(
    root: Path, manifest: Manifest, env: RuntimeEnv, bucket: Bucket | None = None, allow_other_gpu: bool = False
) -> None:
    problems = check_engine_set(root, manifest, env, bucket, allow_other_gpu=allow_other_gpu)
    if problems:
        raise EngineSetError(problems[0] + (f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""))
