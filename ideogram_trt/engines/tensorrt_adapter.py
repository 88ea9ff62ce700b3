"""One thin adapter over both TensorRT flavors: datacenter ``tensorrt`` and ``tensorrt_rtx``.

Both parse ONNX into a strongly typed network (precision comes from the graph's types and Q/DQ, not from
builder flags) and build a serialized plan with one optimization profile per shape range. TensorRT-RTX also
builds ahead of time for named compute capabilities, which is how the plans are built on GPU-less machines;
neither flavor can *run* a plan here.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from types import ModuleType
from typing import Any

from ideogram_trt.core.errors import IdeogramTrtError


class Flavor(str, Enum):
    TENSORRT = "tensorrt"
    TENSORRT_RTX = "tensorrt-rtx"

    @property
    def module_name(self) -> str:
        return {"tensorrt": "tensorrt", "tensorrt-rtx": "tensorrt_rtx"}[self.value]


class EngineBuildError(IdeogramTrtError):
    """TensorRT refused the graph or the build; the message carries TensorRT's own errors."""


@dataclass(frozen=True)
class ShapeRange:
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]


# One optimization profile: input name → shape range.
Profile = dict[str, ShapeRange]


@dataclass(frozen=True)
class BuildTarget:
    flavor: Flavor
    compute_capabilities: tuple[str, ...] = ()  # TensorRT-RTX ahead-of-time targets, e.g. ("8.9", "12.0")
    optimization_level: int | None = None
    timing_cache: Path | None = None


@dataclass
class BuildResult:
    plan: bytes
    seconds: float
    version: str
    warnings: list[str] = field(default_factory=list)


def load_tensorrt(flavor: Flavor) -> ModuleType:
    try:
        return importlib.import_module(flavor.module_name)
    except ImportError as exc:
        hint = {
            Flavor.TENSORRT_RTX: "pip install tensorrt-rtx-cu13",
            Flavor.TENSORRT: "install TensorRT from NVIDIA's package index (pip install tensorrt)",
        }[flavor]
        raise EngineBuildError(f"{flavor.value} is not importable ({exc}): {hint}") from exc


def _compute_capability(trt: ModuleType, text: str) -> Any:
    name = "SM" + text.replace(".", "")
    value = getattr(trt.ComputeCapability, name, None)
    if value is None:
        known = ", ".join(n[2:-1] + "." + n[-1] for n in dir(trt.ComputeCapability) if n.startswith("SM"))
        raise EngineBuildError(f"compute capability {text} is not a TensorRT-RTX target (known: {known})")
    return value


def _collecting_logger(trt: ModuleType, sink: list[tuple[Any, str]]) -> Any:
    class Collecting(trt.ILogger):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity: Any, msg: str) -> None:
            sink.append((severity, msg))

    return Collecting()


def build_engine(onnx_path: Path, profiles: list[Profile], target: BuildTarget) -> BuildResult:
    """Parse ``onnx_path`` (external data resolved next to it) and build a plan with ``profiles``."""
    trt = load_tensorrt(target.flavor)
    messages: list[tuple[Any, str]] = []
    logger = _collecting_logger(trt, messages)
    start = time.perf_counter()
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EngineBuildError(
            f"{onnx_path}: TensorRT cannot parse the graph: {'; '.join(errors) or _errors(messages, trt)}"
        )
    config = builder.create_builder_config()
    if target.compute_capabilities:
        if target.flavor is not Flavor.TENSORRT_RTX:
            raise EngineBuildError("--compute-capability targets need the tensorrt-rtx flavor")
        config.num_compute_capabilities = len(target.compute_capabilities)
        for index, cc in enumerate(target.compute_capabilities):
            config.set_compute_capability(_compute_capability(trt, cc), index)
    if target.optimization_level is not None:
        config.builder_optimization_level = target.optimization_level
    cache = None
    if target.timing_cache is not None:
        blob = target.timing_cache.read_bytes() if target.timing_cache.is_file() else b""
        cache = config.create_timing_cache(blob)
        config.set_timing_cache(cache, ignore_mismatch=False)
    inputs = {network.get_input(i).name for i in range(network.num_inputs)}
    for profile_shapes in profiles:
        missing = inputs - set(profile_shapes)
        if missing:
            raise EngineBuildError(f"{onnx_path}: the profile has no shape range for {sorted(missing)}")
        profile = builder.create_optimization_profile()
        for name, shape in profile_shapes.items():
            profile.set_shape(name, shape.min, shape.opt, shape.max)
        config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineBuildError(f"{onnx_path}: TensorRT could not build the engine: {_errors(messages, trt)}")
    if cache is not None and target.timing_cache is not None:
        target.timing_cache.write_bytes(bytes(cache.serialize()))
    warnings = [m for s, m in messages if s == trt.ILogger.Severity.WARNING]
    return BuildResult(bytes(plan), time.perf_counter() - start, trt.__version__, warnings)


def _errors(messages: list[tuple[Any, str]], trt: ModuleType) -> str:
    bad = {trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR}
    # TensorRT-RTX appends "cudaError 35: CUDA driver version is insufficient" to every error on a GPU-less
    # machine (feasibility.md §3); it says nothing about the graph.
    found = [m for s, m in messages if s in bad and "cudaError 35" not in m]
    return "; ".join(found[-5:]) or "no error message"
