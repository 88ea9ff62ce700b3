"""The backend registry (ideogram_trt.runtime.backends): exactly these backends and flavors, the default per
flavor, backends imported only when chosen, and Pipeline.from_engines's refusals word for word."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from ideogram_trt.core.errors import InputError
from ideogram_trt.core.manifest import Flavor, Manifest
from ideogram_trt.runtime import Pipeline
from ideogram_trt.runtime.backends import BACKENDS, backend_for, backend_names


def test_registry_lists_exactly_the_backends_and_their_flavors() -> None:
    assert backend_names() == ["onnxruntime", "tensorrt"]
    assert {name: spec.flavors for name, spec in BACKENDS.items()} == {
        "onnxruntime": (Flavor.ONNXRUNTIME,),
        "tensorrt": (Flavor.TENSORRT_RTX, Flavor.TENSORRT),
    }
    assert all(spec.name == name and spec.description.strip() for name, spec in BACKENDS.items())
    assert not any("\n" in spec.description for spec in BACKENDS.values())
    # The default backend of each flavor: every flavor has exactly one.
    assert {flavor.value: backend_for(flavor).name for flavor in Flavor} == {
        "tensorrt": "tensorrt",
        "tensorrt-rtx": "tensorrt",
        "onnxruntime": "onnxruntime",
    }


def test_backends_are_imported_only_when_chosen() -> None:
    check = (
        "import sys, ideogram_trt.runtime.backends, ideogram_trt.runtime.pipeline\n"
        "print(','.join(m for m in ('onnxruntime', 'tensorrt', 'tensorrt_rtx', 'ideogram_trt.runtime.tensorrt_backend',"
        " 'ideogram_trt.runtime.onnxruntime_backend') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


@pytest.fixture
def engine_set_of(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """An engine set folder whose manifest has only a flavor: the backend is chosen before anything else is read."""

    def make(flavor: Flavor) -> Path:
        monkeypatch.setattr(Manifest, "load", staticmethod(lambda root: SimpleNamespace(flavor=flavor)))
        return tmp_path

    return make


def test_unknown_backend_is_refused_with_the_names(engine_set_of) -> None:
    root = engine_set_of(Flavor.ONNXRUNTIME)
    with pytest.raises(InputError) as refused:
        Pipeline.from_engines(root, backend="cuda")
    assert str(refused.value) == "unknown backend 'cuda': use one of onnxruntime, tensorrt"


@pytest.mark.parametrize(
    ("flavor", "backend", "message"),
    [
        (
            Flavor.ONNXRUNTIME,
            "tensorrt",
            "holds onnxruntime engines, which the tensorrt backend cannot run; build an engine set with "
            "--flavor tensorrt-rtx",
        ),
        (
            Flavor.TENSORRT,
            "onnxruntime",
            "holds tensorrt engines, which the onnxruntime backend cannot run; build an engine set with "
            "--flavor onnxruntime",
        ),
        (
            Flavor.TENSORRT_RTX,
            "onnxruntime",
            "holds tensorrt-rtx engines, which the onnxruntime backend cannot run; build an engine set with "
            "--flavor onnxruntime",
        ),
    ],
)
def test_backend_that_cannot_run_the_flavor_is_refused(engine_set_of, flavor, backend, message) -> None:
    root = engine_set_of(flavor)
    with pytest.raises(InputError) as refused:
        Pipeline.from_engines(root, backend=backend)
    assert str(refused.value) == f"{root} {message}"
