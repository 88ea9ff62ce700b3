"""Which TensorRT flavor builds, for which GPUs: resolved once, refused with a clear line when impossible."""

from __future__ import annotations

from dataclasses import dataclass

from ideogram_trt.core.errors import InputError
from ideogram_trt.core.manifest import Flavor, RuntimeEnv

AUTO = "auto"


@dataclass(frozen=True)
class Target:
    flavor: Flavor
    version: str
    compute_capabilities: tuple[str, ...]  # for datacenter TensorRT: the build GPU's
    gpu: str | None


def resolve_flavor(requested: str, env: RuntimeEnv) -> Flavor:
    """``auto`` takes datacenter TensorRT where it and a GPU are present, else TensorRT-RTX; never ONNX Runtime
    (that is a different kind of engine set, asked for by name). A named flavor that is missing is an error."""
    available = env.available_flavors()
    if requested == AUTO:
        if Flavor.TENSORRT in available and env.gpus:
            return Flavor.TENSORRT
        if Flavor.TENSORRT_RTX in available:
            return Flavor.TENSORRT_RTX
        raise InputError(
            "no TensorRT is installed: pip install tensorrt-rtx-cu13 (builds here), install TensorRT for your "
            "GPU, or pass --flavor onnxruntime for an ONNX Runtime engine set"
        )
    try:
        flavor = Flavor(requested)
    except ValueError:
        known = ", ".join([AUTO, *(f.value for f in Flavor)])
        raise InputError(f"unknown flavor {requested!r}: use one of {known}") from None
    if flavor not in available:
        others = ", ".join(f.value for f in available) or "none"
        raise InputError(f"--flavor {flavor.value}: {flavor.module_name} is not importable here (available: {others})")
    return flavor


def resolve_target(flavor: Flavor, compute_capabilities: tuple[str, ...], env: RuntimeEnv) -> Target:
    version = env.versions[flavor] or ""
    if flavor is Flavor.ONNXRUNTIME:
        if compute_capabilities:
            raise InputError("--compute-capability applies to TensorRT flavors, not onnxruntime")
        return Target(flavor, version, (), None)
    if flavor is Flavor.TENSORRT:
        if compute_capabilities:
            raise InputError(
                "--compute-capability: datacenter TensorRT builds for the GPU it runs on; use --flavor tensorrt-rtx "
                "to build ahead of time for other GPUs"
            )
        if not env.gpus:
            raise InputError("--flavor tensorrt needs an NVIDIA GPU to build on, and none is visible")
        gpu = env.gpus[0]
        return Target(flavor, version, (gpu.compute_capability,), gpu.name)
    targets = compute_capabilities or tuple(sorted({g.compute_capability for g in env.gpus}))
    if not targets:
        raise InputError(
            "no GPU visible to build for: pass --compute-capability (8.9 for Ada, 12.0 for Blackwell RTX; "
            "FP8 needs 8.9 or later)"
        )
    return Target(flavor, version, targets, None)
