"""``ideogram-trt triton-repo``: write a Triton model repository over an engine set.

The model's ``config.pbtxt`` is built as a ``ModelConfig`` protobuf and printed with protobuf's own text format,
so Triton parses exactly what was built.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from ideogram_trt.core.errors import InputError
from ideogram_trt.core.manifest import Flavor, Manifest

MODEL_VERSION = "1"
ENGINES_IN_REPO = "engines"


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


def _io(name: str, kind: int, dims: list[int], optional: bool = False) -> mc.ModelInput:
    return mc.ModelInput(name=name, data_type=kind, dims=dims, optional=optional)


def model_config(request: RepoRequest, manifest: Manifest, engine_path: str) -> mc.ModelConfig:
    config = mc.ModelConfig(name=request.model_name, backend="python", max_batch_size=0)
    config.input.extend(
        [
            _io("prompt", mc.TYPE_STRING, [1]),
            _io("height", mc.TYPE_INT32, [1], optional=True),
            _io("width", mc.TYPE_INT32, [1], optional=True),
            _io("preset", mc.TYPE_STRING, [1], optional=True),
            _io("seed", mc.TYPE_INT64, [1], optional=True),
            _io("num_images", mc.TYPE_INT32, [1], optional=True),
        ]
    )
    outputs = [
        mc.ModelOutput(name="image", data_type=mc.TYPE_UINT8, dims=[-1, -1, -1, 3]),
        mc.ModelOutput(name="png", data_type=mc.TYPE_STRING, dims=[-1]),
    ]
    if request.decoupled:
        outputs += [
            mc.ModelOutput(name="step", data_type=mc.TYPE_INT32, dims=[1]),
            mc.ModelOutput(name="steps", data_type=mc.TYPE_INT32, dims=[1]),
        ]
        config.model_transaction_policy.decoupled = True
    config.output.extend(outputs)
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
        "backend": "onnxruntime" if manifest.flavor is Flavor.ONNXRUNTIME else "tensorrt",
        "defaults": json.dumps({"preset": request.preset} if request.preset else {}),
        "max_images": str(request.max_images or manifest.max_batch),
    }
    for key, value in parameters.items():
        config.parameters[key].string_value = value
    return config


def write_repository(request: RepoRequest) -> Path:
    if request.instances < 1:
        raise InputError("--instances must be at least 1")
    manifest = Manifest.load(request.engines)  # refuses a missing or malformed engine set now, not at load time
    model_dir = request.out / request.model_name
    if model_dir.exists():
        raise InputError(f"{model_dir}: exists; write the repository elsewhere or remove that model first")
    request.out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{request.model_name}.", dir=request.out))
    try:
        version = staging / MODEL_VERSION
        version.mkdir()
        shutil.copyfile(resources.files("ideogram_trt.triton").joinpath("model.py"), version / "model.py")  # type: ignore[arg-type]
        if request.copy:
            shutil.copytree(request.engines, version / ENGINES_IN_REPO, ignore=shutil.ignore_patterns("onnx"))
            engine_path = ENGINES_IN_REPO
        else:
            engine_path = str(request.engines.resolve())
        config = model_config(request, manifest, engine_path)
        (staging / "config.pbtxt").write_text(text_format.MessageToString(config))
        staging.rename(model_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _write_readme(request, manifest)
    return model_dir


def _write_readme(request: RepoRequest, manifest: Manifest) -> None:
    models = sorted(p.name for p in request.out.iterdir() if (p / "config.pbtxt").is_file())
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

Wait for `curl -sf localhost:8000/v2/health/ready`.

## Ask

```bash
ideogram-trt triton-client --url localhost:8001 '{{"subject":"a red fox in snow"}}' -o fox.png
ideogram-trt triton-client --url localhost:8000 --protocol http --height {first.height} --width {first.width} \\
  --seed 7 'a cat' -o cat.png
```

Inputs: `prompt` BYTES [1]; optional `height`, `width` INT32 [1], `preset` BYTES [1], `seed` INT64 [1],
`num_images` INT32 [1]. Outputs: `image` UINT8 [n, H, W, 3] and `png` BYTES [n] (PNG files with prompt, seed,
preset, bucket and engine set in their metadata). Decoupled models stream `step`/`steps` INT32 [1] per
denoising step first (gRPC streaming: `--stream`). Metrics: `curl localhost:8002/metrics`.
"""
    (request.out / "README.md").write_text(text)
