"""The Python-backend model ``ideogram-trt triton-repo`` installs (as ``<model>/1/model.py``).

It runs ``ideogram_trt.runtime.Pipeline`` in-process over one engine set — TensorRT plans on GPU instances, ONNX
Runtime graphs on CPU ones — one pipeline per model instance. Scaling past one GPU means more instances (one per
GPU listed) or more Triton replicas, not a scheduler of ours.

Requests: ``prompt`` BYTES [1]; optional ``height``, ``width`` INT32 [1], ``preset`` BYTES [1], ``seed`` INT64 [1],
``num_images`` INT32 [1]. Responses: ``image`` UINT8 [n, H, W, 3] and ``png`` BYTES [n]. Decoupled models first
send one response per denoising step (``step`` INT32 [1], ``steps`` INT32 [1]), then the images.
A bad request gets a Triton error carrying the runtime's own one-line message, is counted as failed in Triton's
statistics and metrics (``RequestError``), and the model keeps serving. Every input is checked (prompt size first,
UTF-8, ranges, size pair, bucket, preset) before any engine runs.

The environment the Python backend runs this in needs ``ideogram-trt[runtime]`` and numpy < 2 (the stub reads
numpy-1 array layouts; research/triton.md §7).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

try:  # provided by the Python backend inside Triton
    import triton_python_backend_utils as pb_utils
except ImportError:  # imported outside Triton (tests, tooling)
    pb_utils = None


class RequestError(Exception):
    """A request this model refuses. ``execute`` raises it (instead of returning an error response, which the
    Python backend of Triton 2.51 counts as a success) so that Triton's own counters — the statistics API's
    ``fail`` count and ``nv_inference_request_failure`` — count the request as failed. Triton prefixes the
    message; ``ideogram_trt.triton.client`` strips that prefix again."""


def _scalar(request: Any, name: str, default: Any) -> Any:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return default
    value = tensor.as_numpy().reshape(-1)
    if value.size != 1:
        raise RequestError(f"input {name!r} must hold one value, got {value.size}")
    item = value[0]
    return item if isinstance(item, bytes) else item.item()


def _text(request: Any, name: str, default: str | None, check_size: Callable[[int], None] | None = None) -> str | None:
    """A BYTES input as UTF-8 text; ``check_size(n_bytes)`` refuses it by its size before it is decoded."""
    value = _scalar(request, name, None)
    if value is None:
        return default
    if not isinstance(value, bytes):
        raise RequestError(f"input {name!r} must be BYTES (UTF-8 text), got {type(value).__name__}")
    if check_size is not None:
        check_size(len(value))
    try:
        return str(value.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise RequestError(f"input {name!r} is not UTF-8 text (bad byte at offset {exc.start}): send UTF-8") from None


@dataclass(frozen=True)
class _Parsed:
    prompt: str
    height: int | None
    width: int | None
    preset: str | None
    seed: int
    num_images: int
    steps: int  # progress messages a decoupled request gets


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        from ideogram_trt.core.errors import IdeogramTrtError
        from ideogram_trt.runtime import Pipeline

        config = json.loads(args["model_config"])
        parameters = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        engines = Path(parameters["engine_set"])
        if not engines.is_absolute():
            engines = Path(args["model_repository"]) / args["model_version"] / engines
        self.decoupled = pb_utils.using_decoupled_model_transaction_policy(config)
        self.defaults = json.loads(parameters.get("defaults", "{}"))
        if args.get("model_instance_kind") == "GPU":
            import os

            os.environ.setdefault("CUDA_VISIBLE_DEVICES", str(args["model_instance_device_id"]))
        try:
            self.pipe = Pipeline.from_engines(engines, backend=parameters.get("backend") or None)
        except IdeogramTrtError as exc:
            # Triton reports this as the model's load error: the engine set cannot run here, and why.
            raise RuntimeError(f"{config['name']}: {exc}") from None
        self.max_images = int(parameters.get("max_images", "0")) or None

    def _parse(self, request: Any) -> _Parsed:
        """Every input read and checked — sizes, ranges, UTF-8, bucket, preset — before any engine runs."""
        from ideogram_trt.core.requests import check_images, check_seed

        prompt = _text(request, "prompt", None, check_size=self._check_prompt_size)
        if prompt is None:
            raise RequestError("input 'prompt' is required: send it as BYTES [1] (UTF-8 text)")
        height, width = _scalar(request, "height", None), _scalar(request, "width", None)
        if (height is None) != (width is None):
            given, missing = ("height", "width") if width is None else ("width", "height")
            raise RequestError(f"input {given!r} was sent without {missing!r}: send both, or neither for the default")
        num_images = check_images(_scalar(request, "num_images", 1), 1)
        if self.max_images is not None and num_images > self.max_images:
            raise RequestError(f"num_images {num_images} is above this model's limit of {self.max_images}")
        seed = check_seed(_scalar(request, "seed", 0), num_images)
        preset = _text(request, "preset", self.defaults.get("preset"))
        bucket = self.pipe.resolve_bucket(height, width)  # refuses a size that is no bucket of this engine set
        plan = self.pipe.sampling_plan(bucket, preset)  # refuses an unknown preset
        return _Parsed(prompt, height, width, preset, seed, num_images, self.pipe.step_reports(plan, 1, num_images))

    def _check_prompt_size(self, size: int) -> None:
        self.pipe.tokenizer.check_size(size, self.pipe.manifest.max_text_tokens)

    def _run(self, parsed: _Parsed, on_step: Any = None) -> tuple[Any, list[bytes]]:
        from ideogram_trt.runtime.images import png_bytes

        result = self.pipe(
            parsed.prompt,
            preset=parsed.preset,
            seed=parsed.seed,
            num_images=parsed.num_images,
            on_step=on_step,
            height=parsed.height,
            width=parsed.width,
        )
        pngs = []
        for image, seed in zip(result.images, result.seeds, strict=True):
            metadata = {"prompt": parsed.prompt, "seed": str(seed), "preset": result.preset,
                        "bucket": result.bucket.name, "engine_set": result.engine_set}  # fmt: skip
            pngs.append(png_bytes(image, metadata))
        return result, pngs

    def _images(self, result: Any, pngs: list[bytes]) -> list[Any]:
        return [
            pb_utils.Tensor("image", result.images),
            pb_utils.Tensor("png", np.array(pngs, dtype=np.object_)),
        ]

    def execute(self, requests: list[Any]) -> list[Any] | None:
        """Triton hands this model one request per call (no batching is configured). A refused request raises
        ``RequestError`` so Triton counts it as failed; should a call ever hold several requests, refused ones get
        error responses instead, so the others are still served (Triton then counts those as successes)."""
        from ideogram_trt.core.errors import IdeogramTrtError

        if self.decoupled:
            for request in requests:
                self._stream(request, alone=len(requests) == 1)
            return None
        responses = []
        for request in requests:
            try:
                result, pngs = self._run(self._parse(request))
                responses.append(pb_utils.InferenceResponse(output_tensors=self._images(result, pngs)))
            except (IdeogramTrtError, RequestError, ValueError) as exc:
                if len(requests) == 1:
                    raise RequestError(str(exc)) from None
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))))
        return responses

    def _stream(self, request: Any, alone: bool) -> None:
        from ideogram_trt.core.errors import IdeogramTrtError

        sender = request.get_response_sender()
        try:
            parsed = self._parse(request)
            total = [0]

            def progress(_prompt: int, step: int, _seconds: float) -> None:
                total[0] += 1
                outputs = [
                    pb_utils.Tensor("step", np.array([total[0]], dtype=np.int32)),
                    pb_utils.Tensor("steps", np.array([parsed.steps], dtype=np.int32)),
                ]
                sender.send(pb_utils.InferenceResponse(output_tensors=outputs))

            result, pngs = self._run(parsed, progress)
            final = pb_utils.InferenceResponse(output_tensors=self._images(result, pngs))
            sender.send(final, flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        except (IdeogramTrtError, RequestError, ValueError) as exc:
            if alone:  # Triton closes the stream with this error and counts the request as failed
                raise RequestError(str(exc)) from None
            error = pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc)))
            sender.send(error, flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)

    def finalize(self) -> None:
        self.pipe = None
