"""One thin adapter over both TensorRT flavors: datacenter ``tensorrt`` and ``tensorrt_rtx``.

Both parse ONNX into a strongly typed network (precision comes from the graph's types and Q/DQ, not from
builder flags) and build a serialized plan with one optimization profile per shape range. TensorRT-RTX also
builds ahead of time for named compute capabilities — how plans are built on machines without a GPU; neither
flavor can run a plan here. The code is typed against the datacenter API (``tensorrt-stubs``, checked by mypy
in ``make test``); TensorRT-RTX mirrors it, and its extra calls go through ``Any``.
"""

from __future__ import annotations

import importlib
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ideogram_trt.core.errors import IdeogramTrtError
from ideogram_trt.core.files import atomic_write
from ideogram_trt.core.manifest import Flavor
from ideogram_trt.engines.anatomy import layer_reports

if TYPE_CHECKING:
    import tensorrt as trt


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
    peak_host_memory_bytes: int
    warnings: list[str] = field(default_factory=list)
    # With ``detailed``: the builder's "Layers:" reports (engines.anatomy parses them); the plan then also embeds
    # per-layer information (profiling verbosity DETAILED), so it is not the plan a default build writes.
    layer_reports: list[str] = field(default_factory=list)


INSTALL_HINTS = {
    Flavor.TENSORRT_RTX: "pip install tensorrt-rtx-cu13",
    Flavor.TENSORRT: "install TensorRT from NVIDIA's package index (pip install tensorrt)",
}


def load_tensorrt(flavor: Flavor) -> ModuleType:
    """Import the flavor's module, refusing stubs-only or broken installs with the install hint."""
    if not flavor.is_tensorrt:
        raise EngineBuildError(f"{flavor.value} builds no TensorRT plans")
    try:
        module = importlib.import_module(flavor.module_name)
    except Exception as exc:
        raise EngineBuildError(f"{flavor.value} is not importable ({exc}): {INSTALL_HINTS[flavor]}") from exc
    if not hasattr(module, "Builder"):  # e.g. a type-stub package's bare directory, importable as a namespace
        raise EngineBuildError(f"{flavor.value} is not importable (no Builder in it): {INSTALL_HINTS[flavor]}")
    return module


class _PeakMemory:
    """Samples this process's resident memory while a build runs (TensorRT allocates outside Python)."""

    def __init__(self, interval: float = 0.05) -> None:
        self.peak = 0
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def resident_bytes() -> int:
        try:
            with open(f"/proc/{os.getpid()}/statm") as handle:
                return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.resident_bytes())
            self._stop.wait(self._interval)

    def __enter__(self) -> _PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.resident_bytes())


def _compute_capability(module: Any, text: str) -> Any:
    value = getattr(module.ComputeCapability, "SM" + text.replace(".", ""), None)
    if value is None:
        known = ", ".join(n[2:-1] + "." + n[-1] for n in dir(module.ComputeCapability) if n.startswith("SM"))
        raise EngineBuildError(
            f"compute capability {text} is not a {Flavor.TENSORRT_RTX.value} target (known: {known})"
        )
    return value


def _collecting_logger(module: Any, sink: list[tuple[Any, str]]) -> trt.ILogger:
    class Collecting(module.ILogger):  # type: ignore[misc]
        def __init__(self) -> None:
            module.ILogger.__init__(self)

        def log(self, severity: Any, msg: str) -> None:
            sink.append((severity, msg))

    logger: trt.ILogger = Collecting()
    return logger


def build_engine(onnx_path: Path, profiles: list[Profile], target: BuildTarget, detailed: bool = False) -> BuildResult:
    """Parse ``onnx_path`` (external data resolved next to it) and build a plan with ``profiles``."""
    module: Any = load_tensorrt(target.flavor)
    messages: list[tuple[Any, str]] = []
    logger = _collecting_logger(module, messages)
    start = time.perf_counter()
    with _PeakMemory() as memory:
        builder: trt.Builder = module.Builder(logger)
        flag = 1 << int(module.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        network: trt.INetworkDefinition = builder.create_network(flag)
        parser: trt.OnnxParser = module.OnnxParser(network, logger)
        if not parser.parse_from_file(str(onnx_path)):
            errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            detail = "; ".join(errors) or _errors(messages, module)
            raise EngineBuildError(f"{onnx_path}: TensorRT cannot parse the graph: {detail}")
        config: trt.IBuilderConfig = builder.create_builder_config()
        if detailed:
            config.profiling_verbosity = module.ProfilingVerbosity.DETAILED
        if target.compute_capabilities:
            if target.flavor is not Flavor.TENSORRT_RTX:
                raise EngineBuildError("compute-capability targets need --flavor tensorrt-rtx")
            rtx_config: Any = config
            rtx_config.num_compute_capabilities = len(target.compute_capabilities)
            for index, cc in enumerate(target.compute_capabilities):
                rtx_config.set_compute_capability(_compute_capability(module, cc), index)
        if target.optimization_level is not None:
            config.builder_optimization_level = target.optimization_level
        cache: trt.ITimingCache | None = None
        if target.timing_cache is not None:
            blob = target.timing_cache.read_bytes() if target.timing_cache.is_file() else b""
            cache = config.create_timing_cache(blob)
            config.set_timing_cache(cache, ignore_mismatch=False)
        inputs = {network.get_input(i).name for i in range(network.num_inputs)}
        for profile_shapes in profiles:
            missing = inputs - set(profile_shapes)
            if missing:
                raise EngineBuildError(f"{onnx_path}: the profile has no shape range for {sorted(missing)}")
            profile: trt.IOptimizationProfile = builder.create_optimization_profile()
            for name, shape in profile_shapes.items():
                # The stubs type the shapes as Dims; the bindings take tuples too.
                profile.set_shape(name, shape.min, shape.opt, shape.max)  # type: ignore[arg-type]
            config.add_optimization_profile(profile)
        plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineBuildError(f"{onnx_path}: TensorRT could not build the engine: {_errors(messages, module)}")
    if cache is not None and target.timing_cache is not None:
        atomic_write(target.timing_cache, bytes(cache.serialize()), "timing cache")
    warnings = [m for s, m in messages if s == module.ILogger.Severity.WARNING]
    reports = layer_reports([m for _, m in messages]) if detailed else []
    return BuildResult(
        bytes(plan), time.perf_counter() - start, str(module.__version__), memory.peak, warnings, reports
    )


def _errors(messages: list[tuple[Any, str]], module: Any) -> str:
    bad = {module.ILogger.Severity.ERROR, module.ILogger.Severity.INTERNAL_ERROR}
    # TensorRT-RTX appends "cudaError 35: CUDA driver version is insufficient" to every error on a GPU-less
    # machine (feasibility.md §3); it says nothing about the graph.
    found = [m for s, m in messages if s in bad and "cudaError 35" not in m]
    return "; ".join(found[-5:]) or "no error message"
