"""Every way of running an engine set, by name, and one typed description of each.

A backend is a name (what ``Pipeline.from_engines(backend=...)``, the CLI's ``--backend`` and the Triton model's
``backend`` parameter take), a factory, the manifest flavors it runs and a one-line description.
``Pipeline.from_engines`` runs the backend of the manifest's flavor unless told otherwise, and refuses a name not
listed here or a flavor the named backend cannot run (``choose_backend``). A new backend is its own module plus
one entry here. Factories import their module when called, so a backend's dependencies (ONNX Runtime; TensorRT and
cuda-python) load only where that backend runs, and need not be installed elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from ideogram_trt.core.errors import InputError
from ideogram_trt.core.manifest import Flavor, Manifest
from ideogram_trt.runtime.backend import Backend

# (engine set folder, its manifest) → a backend ready to run it.
BackendFactory = Callable[[Path, Manifest], Backend]


@dataclass(frozen=True)
class BackendSpec:
    name: str
    factory: BackendFactory
    # The manifest flavors it runs; the first is the one to build for it (the refusal of another flavor says so).
    flavors: tuple[Flavor, ...]
    description: str  # one line


def _onnxruntime(root: Path, manifest: Manifest) -> Backend:
    from ideogram_trt.runtime.onnxruntime_backend import OnnxRuntimeBackend

    return OnnxRuntimeBackend(root, manifest)


def _tensorrt(root: Path, manifest: Manifest) -> Backend:
    from ideogram_trt.runtime.tensorrt_backend import TensorRTBackend

    return TensorRTBackend(root, manifest)


BACKENDS: Mapping[str, BackendSpec] = MappingProxyType(
    {
        spec.name: spec
        for spec in (
            BackendSpec(
                "onnxruntime",
                _onnxruntime,
                (Flavor.ONNXRUNTIME,),
                "ONNX Runtime sessions over the ONNX graphs (CPU, or CUDA with onnxruntime-gpu); the loop on the host",
            ),
            BackendSpec(
                "tensorrt",
                _tensorrt,
                (Flavor.TENSORRT_RTX, Flavor.TENSORRT),
                "TensorRT-RTX or datacenter TensorRT plans on an NVIDIA GPU (cuda-python); the loop in CUDA graphs",
            ),
        )
    }
)


def backend_names() -> list[str]:
    return list(BACKENDS)


def backend_for(flavor: Flavor) -> BackendSpec:
    """The backend that runs engine sets of ``flavor``."""
    for spec in BACKENDS.values():
        if flavor in spec.flavors:
            return spec
    raise InputError(f"no backend runs {flavor.value} engines")


def get_backend(name: str) -> BackendSpec:
    spec = BACKENDS.get(name)
    if spec is None:
        raise InputError(f"unknown backend {name!r}: use one of {', '.join(BACKENDS)}")
    return spec


def choose_backend(root: Path, manifest: Manifest, name: str | None = None) -> BackendSpec:
    """The backend ``name`` (default: the one of the manifest's flavor), refused if it cannot run this set."""
    spec = get_backend(name) if name else backend_for(manifest.flavor)
    if manifest.flavor not in spec.flavors:
        raise InputError(
            f"{root} holds {manifest.flavor.value} engines, which the {spec.name} backend cannot run; build an "
            f"engine set with --flavor {spec.flavors[0].value}"
        )
    return spec
