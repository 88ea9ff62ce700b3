"""Issue 14: one table of the Triton model's tensors (``ideogram_trt.triton.schema``), read by all three users —
the repository's config.pbtxt, the model's request parser and response builder, and the client. Each user is
checked against the table, and the client's requests are parsed by the model back into the same request. (The
served PNGs' metadata against ``ideogram-trt generate``'s is checked with the live server in test_triton.py.)"""

from __future__ import annotations

import dataclasses
import io
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc
import tritonclient.http
from google.protobuf import text_format
from PIL import Image
from test_triton_reliability import EnginesMustNotRun, FakePbUtils, FakeRequest
from triton_server import TRITON_VENV
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.utils import np_to_triton_dtype, triton_to_np_dtype

from ideogram_trt.cli import main
from ideogram_trt.triton import client, schema
from ideogram_trt.triton.schema import HEIGHT, INPUTS, OUTPUTS, WIDTH, ImageRequest, Response, outputs

MODULES = {"grpc": tritonclient.grpc, "http": tritonclient.http}
FULL = ImageRequest('{"subject":"a fox"}', 256, 384, "V4_TURBO_12", 2**63 - 2, 2, "style:0.5")  # every input set


def test_the_table_is_consistent_with_tritonclient() -> None:
    """Each datatype's wire name and numpy dtype are tritonclient's own pair; names are unique; inputs are one value
    each (the model reads them as scalars)."""
    for spec in (*INPUTS, *OUTPUTS):
        assert triton_to_np_dtype(spec.datatype.wire) is spec.datatype.numpy, spec.name
        assert np_to_triton_dtype(spec.datatype.numpy) == spec.datatype.wire, spec.name
        assert mc.DataType.Value(spec.datatype.config) != mc.TYPE_INVALID, spec.name
        assert len(spec.labels) == spec.dims.count(-1), spec.name
    assert len({s.name for s in (*INPUTS, *OUTPUTS)}) == len(INPUTS) + len(OUTPUTS)
    assert all(s.dims == (1,) for s in INPUTS)
    assert [s.name for s in INPUTS if not s.optional] == ["prompt"]
    assert all(s.default is None for s in INPUTS if not s.optional)


def test_the_request_record_is_the_tables_inputs() -> None:
    fields = dataclasses.fields(ImageRequest)
    assert [f.name for f in fields] == [s.name for s in INPUTS]
    for field, spec in zip(fields, INPUTS, strict=True):
        assert field.default == (spec.default if spec.optional else dataclasses.MISSING), spec.name
    assert client.ImageRequest is ImageRequest  # cli.py builds requests through the client module


@pytest.mark.parametrize("python", ["this", "serving"])
def test_the_schema_imports_without_tritonclient_or_the_backend_utils(python: str) -> None:
    """The model imports it inside the server (numpy < 2, no tritonclient there need be)."""
    executable = sys.executable if python == "this" else str(TRITON_VENV / "bin" / "python")
    if python == "serving" and not Path(executable).exists():
        pytest.skip(f"{TRITON_VENV} is missing: `make test` creates it")
    code = (
        "import sys\n"
        "for name in ('tritonclient', 'triton_python_backend_utils', 'google.protobuf'):\n"
        "    sys.modules[name] = None  # importing it now raises ImportError\n"
        "import numpy\n"
        "from ideogram_trt.triton import model, schema\n"
        "print(numpy.__version__, model.pb_utils, len(schema.INPUTS))\n"
    )
    result = subprocess.run([executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    version, pb_utils, count = result.stdout.split()
    assert pb_utils == "None" and int(count) == len(INPUTS)
    if python == "serving":
        assert int(version.split(".")[0]) < 2


# --- config.pbtxt ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engines(one_graph_engines: Path) -> Path:
    """triton-repo reads only the set's manifest (and --copy its files): one graph at one bucket is enough."""
    return one_graph_engines


@pytest.mark.parametrize("decoupled", [False, True])
def test_the_config_declares_the_tables_inputs_and_outputs(engines: Path, tmp_path: Path, decoupled: bool) -> None:
    repo = tmp_path / "repo"
    assert main(["triton-repo", "--engines", str(engines), "--out", str(repo), *(["--decoupled"] * decoupled)]) == 0
    config = text_format.Parse((repo / "ideogram4" / "config.pbtxt").read_text(), mc.ModelConfig())
    declared = [(i.name, mc.DataType.Name(i.data_type), tuple(i.dims), i.optional) for i in config.input]
    assert declared == [(s.name, s.datatype.config, s.dims, s.optional) for s in INPUTS]
    declared = [(o.name, mc.DataType.Name(o.data_type), tuple(o.dims)) for o in config.output]
    assert declared == [(s.name, s.datatype.config, s.dims) for s in outputs(decoupled)]
    assert {s.response for s in outputs(decoupled)} == ({Response.IMAGES, Response.PROGRESS} if decoupled else
                                                        {Response.IMAGES})  # fmt: skip
    assert config.model_transaction_policy.decoupled is decoupled


# --- the client -------------------------------------------------------------------------------------------------


def recording(module: Any) -> SimpleNamespace:
    """``module`` (tritonclient.grpc or .http) whose InferInput keeps the array it is given: the real class, so its
    own check of the array's dtype against the datatype still runs."""

    class InferInput(module.InferInput):  # type: ignore[misc, name-defined]
        def set_data_from_numpy(self, array: np.ndarray, *args: Any, **kwargs: Any) -> Any:
            self.array = array
            return super().set_data_from_numpy(array, *args, **kwargs)

    return SimpleNamespace(InferInput=InferInput)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_the_client_sends_the_tables_inputs(protocol: str) -> None:
    sent = client._inputs(recording(MODULES[protocol]), FULL)
    assert [(t.name(), t.datatype(), tuple(t.shape()), t.array.dtype) for t in sent] == [
        (s.name, s.datatype.wire, s.dims, np.dtype(s.datatype.numpy)) for s in INPUTS
    ]
    # Inputs left at None are left out (the model's defaults); the rest always travel.
    sent = client._inputs(recording(MODULES[protocol]), ImageRequest("a fox"))
    assert [t.name() for t in sent] == [s.name for s in INPUTS if getattr(ImageRequest("a fox"), s.name) is not None]
    assert [t.name() for t in sent] == ["prompt", "seed", "num_images"]


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_the_client_asks_for_the_tables_outputs(protocol: str, monkeypatch: pytest.MonkeyPatch) -> None:
    module = MODULES[protocol]
    image = np.zeros((1, 8, 8, 3), dtype=np.uint8)
    asked: list[list[str]] = []

    class Client:
        def __init__(self, *_args: Any, **_kwargs: Any) -> None:
            pass

        def is_server_live(self, **_kwargs: Any) -> bool:
            return True

        def infer(self, model: str, inputs: list[Any], outputs: list[Any], **_kwargs: Any) -> Any:
            asked.append([o.name() for o in outputs])
            arrays = {schema.IMAGE.name: image, schema.PNG.name: np.array([b"png"], dtype=np.object_)}
            return SimpleNamespace(as_numpy=arrays.get)

        def close(self) -> None:
            pass

    monkeypatch.setattr(module, "InferenceServerClient", Client)
    images, pngs = client.request_images("localhost:1", FULL, protocol=protocol)
    assert asked == [[s.name for s in outputs(decoupled=False)]]
    assert images is image and pngs == [b"png"]


# --- the model --------------------------------------------------------------------------------------------------


@pytest.fixture
def model(monkeypatch: pytest.MonkeyPatch) -> Any:
    from ideogram_trt.triton import model as triton_model

    monkeypatch.setattr(triton_model, "pb_utils", FakePbUtils)
    instance = triton_model.TritonPythonModel()
    instance.pipe, instance.defaults, instance.max_images, instance.decoupled = EnginesMustNotRun(), {}, 2, False
    return instance


def sent_by_client(request: ImageRequest) -> FakeRequest:
    """The request as the client sends it, as the model receives it."""
    tensors = client._inputs(recording(tritonclient.grpc), request)
    return FakeRequest({t.name(): FakePbUtils.Tensor(t.name(), t.array) for t in tensors})


def test_the_model_parses_what_the_client_sends(model: Any) -> None:
    for request in (FULL, ImageRequest("a fox"), ImageRequest("a fox", 256, 256, seed=7)):
        assert model._parse(sent_by_client(request)).request == request


def test_the_model_refuses_an_input_not_in_the_table(model: Any) -> None:
    from ideogram_trt.triton.model import RequestError

    request = sent_by_client(FULL)
    request.inputs().append(FakePbUtils.Tensor("guidance", np.array([3.0], dtype=np.float32)))
    with pytest.raises(RequestError, match=r"^input 'guidance' is not an input of this model; its inputs: prompt, h"):
        model._parse(request)


def test_the_model_refuses_a_required_input_absent(model: Any) -> None:
    from ideogram_trt.triton.model import RequestError

    for spec in (s for s in INPUTS if not s.optional):
        request = sent_by_client(FULL)
        request.inputs().remove(next(t for t in request.inputs() if t.name() == spec.name))
        with pytest.raises(RequestError, match=rf"^input '{spec.name}' is required: send it as "):
            model._parse(request)


# Height and width go together (one without the other is refused: test_triton_reliability.py).
ABSENT = [[s] for s in INPUTS if s.optional and s not in (HEIGHT, WIDTH)] + [[HEIGHT, WIDTH]]


@pytest.mark.parametrize("absent", ABSENT, ids=lambda specs: "+".join(s.name for s in specs))
def test_the_model_accepts_each_optional_input_absent_and_uses_the_tables_default(model: Any, absent: list) -> None:
    request = sent_by_client(FULL)
    for spec in absent:
        request.inputs().remove(next(t for t in request.inputs() if t.name() == spec.name))
    parsed = model._parse(request).request
    assert parsed == dataclasses.replace(FULL, **{s.name: s.default for s in absent})


class Runs(EnginesMustNotRun):
    """A pipeline whose engines "run": black images, one progress call per step."""

    steps = 3

    def step_reports(self, plan: object, prompts: int, num_images: int) -> int:
        return self.steps

    def __call__(self, prompt: str, **kwargs: Any) -> Any:  # type: ignore[override]
        from ideogram_trt.core.schedule import preset_schedule

        for step in range(self.steps):
            if kwargs["on_step"] is not None:
                kwargs["on_step"](0, step, 0.0)
        count, seed = kwargs["num_images"], kwargs["seed"]
        return SimpleNamespace(
            images=np.zeros((count, 16, 16, 3), dtype=np.uint8), prompts=[prompt] * count,
            seeds=[seed + k for k in range(count)], preset="V4_INSTANT_8", bucket=self.Bucket(256, 256),
            engine_set="0" * 64, schedule=preset_schedule("V4_INSTANT_8", 256, 256), loras=[],
        )  # fmt: skip


def assert_as_declared(tensors: list, declared: tuple) -> None:
    assert [t.name() for t in tensors] == [s.name for s in declared]
    for t, spec in zip(tensors, declared, strict=True):
        array = t.as_numpy()
        assert array.dtype == spec.datatype.numpy and array.ndim == len(spec.dims), spec.name
        assert all(d in (-1, n) for d, n in zip(spec.dims, array.shape, strict=True)), (spec.name, array.shape)


@pytest.mark.parametrize("decoupled", [False, True])
def test_the_model_responds_with_the_tables_outputs(
    model: Any, decoupled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    model.pipe, model.decoupled = Runs(), decoupled
    request = sent_by_client(FULL)
    sent: list[tuple[Any, int]] = []
    request.sender = SimpleNamespace(send=lambda response, flags=0: sent.append((response, flags)))
    monkeypatch.setattr(FakePbUtils, "TRITONSERVER_RESPONSE_COMPLETE_FINAL", 1, raising=False)
    returned = model.execute([request])
    if decoupled:
        assert returned is None and [flags for _, flags in sent] == [0] * Runs.steps + [1]
        responses = [response for response, _ in sent]
        progress = tuple(s for s in outputs(decoupled=True) if s.response is Response.PROGRESS)
        for k, response in enumerate(responses[:-1], 1):
            assert_as_declared(response.output_tensors, progress)
            assert [int(t.as_numpy()[0]) for t in response.output_tensors] == [k, Runs.steps]
    else:
        responses = returned
    assert_as_declared(responses[-1].output_tensors, outputs(decoupled=False))
    pngs = responses[-1].output_tensors[1].as_numpy()
    assert [Image.open(io.BytesIO(p)).text["seed"] for p in pngs] == [str(FULL.seed), str(FULL.seed + 1)]
