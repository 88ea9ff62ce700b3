"""``ideogram-trt triton-repo``: write a Triton model repository over an engine set.

The model's ``config.pbtxt`` is built as a ``ModelConfig`` protobuf and printed with protobuf's own text format,
so Triton parses exactly what was built.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from ideogram_trt.core.errors import InputError
from ideogram_trt.core.files import LOCK_FILE, PARTIAL_MARK, TMP_MARK, atomic_write, copy_tree, remove_stale, staged_dir
from ideogram_trt.core.manifest import Manifest
from ideogram_trt.runtime.backends import backend_for
from ideogram_trt.triton.schema import INPUTS, PRESET, InputSpec, OutputSpec, Response, TensorSpec, outputs

MODEL_VERSION = "1"
ENGINES_IN_REPO = "engines"
ADAPTERS_IN_REPO = "adapters"
# A model name is a folder name in the repository, never a path: letters, digits, '_', '.', '-', not starting with
# '.' (hidden names are our temporaries), at most 128 characters.
_MODEL_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}")
MAX_INSTANCES = 64  # per GPU (or on the CPU): each instance is a process holding a whole pipeline


def check_model_name(name: str) -> str:
    if not _MODEL_NAME.fullmatch(name):
        raise InputError(
            f"--model-name {name!r}: a model name is a folder name, not a path; use letters, digits, '_', '.' and "
            "'-' (not starting with '.', at most 128 characters), e.g. ideogram4"
        )
    return name


def parse_gpus(text: str) -> tuple[int, ...]:
    """``--gpus 0,1``: distinct non-negative GPU indices, comma-separated."""
    gpus: list[int] = []
    for part in text.split(","):
        item = part.strip()
        if not item.isdigit() or not item.isascii():
            shown = repr(item) if item else "an empty entry"
            raise InputError(
                f"--gpus {text!r}: {shown} is not a GPU index; give indices 0, 1, … separated by commas, e.g. 0,1"
            )
        if int(item) in gpus:
            raise InputError(
                f"--gpus {text!r}: GPU {int(item)} is listed twice; list each GPU once (--instances sets the "
                "instances per GPU)"
            )
        gpus.append(int(item))
    return tuple(gpus)


@dataclass(frozen=True)
class RepoRequest:
    engines: Path
    out: Path
    model_name: str = "ideogram4"
    instances: int = 1
    gpus: tuple[int, ...] = ()
    max_images: int | None = None
    decoupled: bool = False
    copy: bool = False
    preset: str | None = None
    adapters: Path | None = None  # LoRA adapters (*.safetensors) copied into <model>/adapters, named per request


def _input(spec: InputSpec[Any]) -> mc.ModelInput:
    return mc.ModelInput(
        name=spec.name, data_type=mc.DataType.Value(spec.datatype.config), dims=spec.dims, optional=spec.optional
    )


def _output(spec: OutputSpec) -> mc.ModelOutput:
    return mc.ModelOutput(name=spec.name, data_type=mc.DataType.Value(spec.datatype.config), dims=spec.dims)


def model_config(request: RepoRequest, manifest: Manifest, engine_path: str) -> mc.ModelConfig:
    config = mc.ModelConfig(name=request.model_name, backend="python", max_batch_size=0)
    config.input.extend(_input(spec) for spec in INPUTS)
    config.output.extend(_output(spec) for spec in outputs(request.decoupled))
    if request.decoupled:
        config.model_transaction_policy.decoupled = True
    gpus = request.gpus or ((0,) if manifest.flavor.is_tensorrt else ())
    if gpus:
        # One group per GPU: data-parallel replicas, each instance pinned to its GPU.
        for gpu in gpus:
            group = config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_GPU, count=request.instances)
            group.gpus.append(gpu)
    else:
        config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=request.instances)
    parameters = {
        "engine_set": engine_path,
        "backend": backend_for(manifest.flavor).name,
        "defaults": json.dumps({PRESET.name: request.preset} if request.preset else {}),
        "max_images": str(request.max_images or manifest.max_batch),
    }
    if request.adapters is not None:
        parameters["adapters"] = ADAPTERS_IN_REPO  # relative to the model's folder
    for key, value in parameters.items():
        config.parameters[key].string_value = value
    return config


def check_request(request: RepoRequest) -> None:
    """Refuse bad values before anything is read or written."""
    from ideogram_trt.core.requests import MAX_IMAGES_PER_REQUEST
    from ideogram_trt.core.schedule import get_preset

    check_model_name(request.model_name)
    if not 1 <= request.instances <= MAX_INSTANCES:
        raise InputError(
            f"--instances {request.instances}: give 1 to {MAX_INSTANCES} model instances per GPU (or on the CPU)"
        )
    for gpu in request.gpus:
        if gpu < 0:
            raise InputError(f"--gpus: {gpu} is not a GPU index; give indices 0, 1, … separated by commas")
    if request.max_images is not None and not 1 <= request.max_images <= MAX_IMAGES_PER_REQUEST:
        raise InputError(
            f"--max-batch {request.max_images}: give 1 to {MAX_IMAGES_PER_REQUEST} images per request (or leave it "
            "out for the engine set's max batch)"
        )
    if request.preset is not None:
        get_preset(request.preset)


def _ours(name: str) -> bool:
    return name == LOCK_FILE or TMP_MARK in name or PARTIAL_MARK in name


def write_repository(request: RepoRequest) -> Path:
    """Write ``out/<model>/`` and ``out/README.md``. The model folder is staged beside its final name and renamed
    into place complete, and the README replaced atomically: a failure or a kill at any point leaves the previous
    repository as it was (a later run removes the partial folder of a killed one)."""
    check_request(request)
    manifest = Manifest.load(request.engines)  # refuses a missing or malformed engine set now, not at load time
    model_dir = request.out / request.model_name
    if model_dir.exists() or model_dir.is_symlink():
        raise InputError(f"{model_dir}: exists; write the repository elsewhere or remove that model first")
    if request.out.is_dir():
        remove_stale(request.out)  # partial folders and temporaries of killed runs of ours, nothing else
    created, committed = _missing_folders(request.out), False
    try:
        _commit_model(request, manifest, model_dir)
        committed = True
        _write_readme(request, manifest)
    except BaseException:
        if committed:
            shutil.rmtree(model_dir, ignore_errors=True)  # all or nothing: the repository stays as it was
        for folder in created:  # the folders this run made for --out, innermost first, if still empty
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    return model_dir


def _missing_folders(path: Path) -> list[Path]:
    """``path`` and its ancestors that do not exist yet, innermost first."""
    missing = []
    while not path.exists() and not path.is_symlink() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


def _commit_model(request: RepoRequest, manifest: Manifest, model_dir: Path) -> None:
    with staged_dir(model_dir) as staging:
        version = staging / MODEL_VERSION
        version.mkdir()
        shutil.copyfile(resources.files("ideogram_trt.triton").joinpath("model.py"), version / "model.py")  # type: ignore[arg-type]
        if request.copy:
            # Links leaving the engine set are refused (one line naming the link): only its own files are copied.
            copy_tree(
                request.engines, version / ENGINES_IN_REPO, skip=lambda rel: rel.name == "onnx" or _ours(rel.name)
            )
            engine_path = ENGINES_IN_REPO
        else:
            engine_path = str(request.engines.resolve())
        if request.adapters is not None:
            _copy_adapters(request.adapters, manifest, staging / ADAPTERS_IN_REPO)
        config = model_config(request, manifest, engine_path)
        atomic_write(staging / "config.pbtxt", text_format.MessageToString(config))


def _copy_adapters(source: Path, manifest: Manifest, destination: Path) -> None:
    """Every ``*.safetensors`` of ``source``, each checked against the engine set's LoRA-ready DiT first."""
    from ideogram_trt.core.lora import read_adapter

    if manifest.model.lora is None:
        raise InputError(
            f"--adapters {source}: the engine set has no LoRA side path; build it with `build-engines --lora-rank R`"
        )
    if not source.is_dir():
        raise InputError(f"--adapters {source}: not a folder; give a folder of .safetensors adapters")
    files = sorted(p for p in source.iterdir() if p.name.endswith(".safetensors"))
    if not files:
        raise InputError(f"--adapters {source}: holds no .safetensors adapters")
    for path in files:
        read_adapter(path, manifest.model.lora.shape)  # a bad file is refused now, naming the file and tensor
    copy_tree(source, destination, skip=lambda rel: not rel.name.endswith(".safetensors") or len(rel.parts) > 1)


def _write_readme(request: RepoRequest, manifest: Manifest) -> None:
    models = sorted(
        p.name for p in request.out.iterdir() if not p.name.startswith(".") and (p / "config.pbtxt").is_file()
    )
    repo = request.out.resolve()
    gpu = manifest.flavor.is_tensorrt
    first = manifest.bucket_objects[0]
    text = f"""# Ideogram 4 on Triton Inference Server

Models: {", ".join(models)}. Engine set: `{request.engines.resolve()}` ({manifest.flavor.value}
{manifest.runtime_version}, {manifest.recipe}/{manifest.dtype}, buckets {", ".join(manifest.buckets)}).

The models use Triton's Python backend. Its environment needs `pip install 'ideogram-trt[runtime]' 'numpy<2'`
(the backend stub reads numpy-1 arrays){" plus TensorRT and cuda-python" if gpu else ""}: put that environment's
`bin/` first on `PATH` when starting the server, or point the model parameter `EXECUTION_ENV_PATH` at it.

## Start

```bash
tritonserver --model-repository={repo} \\
  --http-port=8000 --grpc-port=8001 --metrics-port=8002
```

Wait for `curl -sf localhost:8000/v2/health/ready`. Triton loads every folder in the repository, hidden ones
too: a `.<model>.ideogram-partial-*` folder left by an interrupted `triton-repo` stops it from starting, and the
next `triton-repo` run over this repository removes it.

## Ask

```bash
ideogram-trt triton-client --url localhost:8001 '{{"subject":"a red fox in snow"}}' -o fox.png
ideogram-trt triton-client --url localhost:8000 --protocol http --height {first.height} --width {first.width} \\
  --seed 7 'a cat' -o cat.png
```

{_tensors_paragraph()}
"""
    atomic_write(request.out / "README.md", text)


def _tensors_paragraph() -> str:
    """The README's description of the model's inputs and outputs, from the table."""
    required, optional = ([s for s in INPUTS if s.optional is flag] for flag in (False, True))
    progress = [s for s in outputs(decoupled=True) if s.response is Response.PROGRESS]
    text = (
        f"Inputs: {_listing(required)}; optional {_listing(optional)}. "
        f"Outputs: {_listing(outputs(decoupled=False))} (PNG files with the metadata `ideogram-trt generate` writes: "
        f"prompt, seed, preset, bucket, engine set, sampling parameters). Decoupled models stream {_listing(progress)} "
        "per denoising step first (gRPC streaming: `--stream`)."
    )
    text = textwrap.fill(text, width=115, break_long_words=False, break_on_hyphens=False)
    return f"{text}\nMetrics: `curl localhost:8002/metrics`."


def _listing(specs: Iterable[TensorSpec]) -> str:
    """Names with their type and shape; neighbours of one type and shape share it: `height`, `width` INT32 [1]."""
    groups: list[list[TensorSpec]] = []
    for spec in specs:
        if groups and (groups[-1][0].datatype, groups[-1][0].dims) == (spec.datatype, spec.dims):
            groups[-1].append(spec)
        else:
            groups.append([spec])
    return ", ".join(
        ", ".join(f"`{s.name}`" for s in group) + f" {group[0].datatype.wire} {group[0].shape_text}" for group in groups
    )
