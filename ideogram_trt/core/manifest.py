"""The engine-set manifest (DESIGN.md §7): what was built, from what, for which GPU, runtime and sizes — and the
check that refuses to run a plan anywhere else.

An engine set is a directory: ``manifest.json``, the plans (or, for ONNX Runtime, the graphs) it names, and the
checkpoint's tokenizer. Everything a runtime needs to run it without the checkpoint or PyTorch is here: engine
I/O, buckets and profiles, the model facts the host side computes with (RoPE frequencies, latent channels).
"""

from __future__ import annotations

import importlib
import json
import os
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from ideogram_trt.core.buckets import Bucket, nearest
from ideogram_trt.core.digest import file_digest
from ideogram_trt.core.errors import IdeogramTrtError
from ideogram_trt.core.gpu import GpuInfo, visible_gpus

SCHEMA_VERSION = 1
MANIFEST_FILE = "manifest.json"


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
class EngineEntry:
    name: str  # "dit_cond", or "dit_cond@1024x1024" for one plan per bucket
    graph: str  # the engine contract: text_encoder, dit_cond, dit_cond_masked, dit_uncond, vae_decoder
    file: str  # relative to the engine set
    sha256: str
    bytes: int
    key: str  # hash of everything the plan depends on: graph, profiles, runtime, targets, builder settings
    buckets: list[str]  # the buckets this entry serves; empty = all (the text encoder)
    profiles: list[ProfileEntry]
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    onnx_sha256: str
    build: BuildReport | None = None

    def profile_for(self, bucket: str) -> ProfileEntry:
        for profile in self.profiles:
            if profile.bucket in (None, bucket):
                return profile
        raise EngineSetError(f"engine {self.name} has no profile for bucket {bucket}")


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
    model: dict[str, Any]  # latent_channels, hidden_size, rope {inv_freq, mrope_section}, has_unconditional
    tokenizer: str
    engines: dict[str, EngineEntry]
    builder: dict[str, Any] = field(default_factory=dict)
    created_by: str = ""
    schema: int = SCHEMA_VERSION

    @property
    def bucket_objects(self) -> list[Bucket]:
        return [Bucket.parse(b) for b in self.buckets]

    def engine_for(self, graph: str, bucket: str | None = None) -> EngineEntry:
        for entry in self.engines.values():
            if entry.graph == graph and (not entry.buckets or bucket is None or bucket in entry.buckets):
                return entry
        raise EngineSetError(f"this engine set has no {graph} engine" + (f" for {bucket}" if bucket else ""))

    # --- JSON ---------------------------------------------------------------------------------------------------

    def to_json(self) -> str:
        body = asdict(self)
        body["flavor"] = self.flavor.value
        return json.dumps(body, indent=1) + "\n"

    def save(self, root: Path) -> None:
        """Atomic: a reader sees the old manifest or the new one, never half of one."""
        tmp = root / f".{MANIFEST_FILE}.{os.getpid()}.tmp"
        tmp.write_text(self.to_json())
        os.replace(tmp, root / MANIFEST_FILE)

    @classmethod
    def load(cls, root: Path) -> Manifest:
        path = root / MANIFEST_FILE
        if not path.is_file():
            raise EngineSetError(f"{root}: no {MANIFEST_FILE}; build an engine set with `ideogram-trt build-engines`")
        try:
            body = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise EngineSetError(f"{path}: not valid JSON ({exc.msg}); rebuild the engine set") from exc
        if body.get("schema") != SCHEMA_VERSION:
            raise EngineSetError(
                f"{path}: manifest schema {body.get('schema')!r}, this ideogram-trt reads {SCHEMA_VERSION}: "
                "rebuild the engine set with this version"
            )
        try:
            engines = {name: _engine_from_dict(e) for name, e in body.pop("engines").items()}
            return cls(**{**body, "flavor": Flavor(body["flavor"]), "engines": engines})
        except (KeyError, TypeError, ValueError) as exc:
            raise EngineSetError(f"{path}: malformed manifest ({exc}); rebuild the engine set") from exc


def _engine_from_dict(raw: dict[str, Any]) -> EngineEntry:
    profiles = [
        ProfileEntry(p["index"], p["bucket"], {k: ShapeRangeEntry(**v) for k, v in p["shapes"].items()})
        for p in raw.pop("profiles")
    ]
    build = raw.pop("build", None)
    return EngineEntry(**raw, profiles=profiles, build=BuildReport(**build) if build else None)


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


def check_engine_set(
    root: Path, manifest: Manifest, env: RuntimeEnv, bucket: Bucket | None = None, verify_files: bool = True
) -> list[str]:
    """Every reason this engine set cannot run here (for ``bucket``, if given), each with its fix."""
    problems: list[str] = []
    rebuild = f"rebuild with `ideogram-trt build-engines --out {root}`"
    installed = env.versions.get(manifest.flavor)
    if installed is None:
        others = ", ".join(f.value for f in env.available_flavors()) or "none"
        problems.append(
            f"built for {manifest.flavor.value}, which is not installed here (available: {others}): install "
            f"{manifest.flavor.value} {manifest.runtime_version}, or {rebuild} --flavor <one of those>"
        )
    elif manifest.flavor.is_tensorrt and installed != manifest.runtime_version:
        problems.append(
            f"built with {manifest.flavor.value} {manifest.runtime_version}, but {installed} is installed: plans "
            f"only load in the version that built them; {rebuild}"
        )
    if manifest.flavor.is_tensorrt:
        if not env.gpus:
            problems.append(f"no NVIDIA GPU visible: {manifest.flavor.value} plans need one")
        for gpu in env.gpus:
            if gpu.compute_capability not in manifest.compute_capabilities:
                problems.append(
                    f"GPU {gpu.index} ({gpu.name}) has compute capability {gpu.compute_capability}; the plans "
                    f"were built for {', '.join(manifest.compute_capabilities)}: {rebuild} on this GPU"
                    + (
                        " --compute-capability " + gpu.compute_capability
                        if manifest.flavor is Flavor.TENSORRT_RTX
                        else ""
                    )
                )
    if bucket is not None and bucket.name not in manifest.buckets:
        problems.append(bucket_refusal(manifest, bucket))
    if verify_files:
        for entry in manifest.engines.values():
            path = root / entry.file
            if not path.is_file():
                problems.append(f"{path}: missing (engine {entry.name}); {rebuild}")
            elif path.stat().st_size != entry.bytes or file_digest(path) != entry.sha256:
                problems.append(f"{path}: changed since it was built (sha256 differs from the manifest); {rebuild}")
    return problems


def bucket_refusal(manifest: Manifest, bucket: Bucket) -> str:
    close = ", ".join(b.name for b in nearest(manifest.bucket_objects, bucket.height, bucket.width))
    return (
        f"{bucket.name} is not a bucket of this engine set (nearest: {close}); ask for one of those, or rebuild "
        f"with --buckets including {bucket.name}"
    )


def require_runnable(root: Path, manifest: Manifest, env: RuntimeEnv, bucket: Bucket | None = None) -> None:
    problems = check_engine_set(root, manifest, env, bucket)
    if problems:
        raise EngineSetError(problems[0] + (f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""))
