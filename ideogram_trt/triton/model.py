"""The Python-backend model ``ideogram-trt triton-repo`` installs (as ``<model>/1/model.py``).

It runs ``ideogram_trt.runtime.Pipeline`` in-process over one engine set — TensorRT plans on GPU instances, ONNX
Runtime graphs on CPU ones — one pipeline per model instance. Scaling past one GPU means more instances (one per
GPU listed) or more Triton replicas, not a scheduler of ours.

Requests and responses are the tensors of ``ideogram_trt.triton.schema`` (the table ``config.pbtxt`` and the
client are written from too): ``prompt`` and optional size, preset, seed and count in; ``image`` and ``png`` (each
image as a PNG carrying the metadata ``ideogram-trt generate`` writes) out. Decoupled models first send one
response per denoising step (``step``, ``steps``), then the images.
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

from ideogram_trt.triton.schema import (
    HEIGHT,
    IMAGE,
    INPUTS,
    LORA,
    NUM_IMAGES,
    PNG,
    PRESET,
    PROMPT,
    SEED,
    STEP,
    STEPS,
    WIDTH,
    DataType,
    ImageRequest,
    InputSpec,
)

try:  # provided by the Python backend inside Triton
    import triton_python_backend_utils as pb_utils
except ImportError:  # imported outside Triton (tests, tooling)
    pb_utils = None


class RequestError(Exception):
    """A request this model refuses. ``execute`` raises it (instead of returning an error response, which the
    Python backend of Triton 2.51 counts as a success) so that Triton's own counters — the statistics API's
    ``fail`` count and ``nv_inference_request_failure`` — count the request as failed. Triton prefixes the
    message; ``ideogram_trt.triton.client`` strips that prefix again."""


def _check_inputs(request: Any) -> None:
    """Refuse an input the table lacks, and a required one absent. (Triton already refuses inputs its config
    lacks; this keeps the model to the table wherever it runs.)"""
    known = [spec.name for spec in INPUTS]
    for tensor in request.inputs():
        if tensor.name() not in known:
            raise RequestError(f"input {tensor.name()!r} is not an input of this model; its inputs: {', '.join(known)}")
    for spec in INPUTS:
        if not spec.optional and pb_utils.get_input_tensor_by_name(request, spec.name) is None:
            kind = " (UTF-8 text)" if spec.datatype is DataType.BYTES else ""
            raise RequestError(
                f"input {spec.name!r} is required: send it as {spec.datatype.wire} {spec.shape_text}{kind}"
            )


def _scalar(request: Any, spec: InputSpec[Any]) -> Any:
    """The input's one value; the table's default when the request leaves it out."""
    tensor = pb_utils.get_input_tensor_by_name(request, spec.name)
    if tensor is None:
        return spec.default
    value = tensor.as_numpy().reshape(-1)
    if value.size != 1:
        raise RequestError(f"input {spec.name!r} must hold one value, got {value.size}")
    item = value[0]
    return item if isinstance(item, bytes) else item.item()


def _text(
    request: Any, spec: InputSpec[str | None], default: str | None, check_size: Callable[[int], None] | None = None
) -> str | None:
    """A BYTES input as UTF-8 text; ``check_size(n_bytes)`` refuses it by its size before it is decoded."""
    value = _scalar(request, spec)
    if value is None:
        return default
    if not isinstance(value, bytes):
        raise RequestError(f"input {spec.name!r} must be BYTES (UTF-8 text), got {type(value).__name__}")
    if check_size is not None:
        check_size(len(value))
    try:
        return str(value.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise RequestError(
            f"input {spec.name!r} is not UTF-8 text (bad byte at offset {exc.start}): send UTF-8"
        ) from None


def _choices(text: str | None) -> list[tuple[str | Path, float]]:
    from ideogram_trt.core.lora import parse_choices

    return [] if not text else list(parse_choices(text))


@dataclass(frozen=True)
class _Parsed:
    request: ImageRequest  # every input, defaults filled in
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
        adapters = parameters.get("adapters")  # LoRA adapters a request may name (never a path a request sends)
        folder = None if not adapters else Path(args["model_repository"]) / adapters
        try:
            self.pipe = Pipeline.from_engines(
                engines, backend=parameters.get("backend") or None, adapters=folder, allow_adapter_paths=False
            )
        except IdeogramTrtError as exc:
            # Triton reports this as the model's load error: the engine set cannot run here, and why.
            raise RuntimeError(f"{config['name']}: {exc}") from None
        self.max_images = int(parameters.get("max_images", "0")) or None

    def _parse(self, request: Any) -> _Parsed:
        """Every input read and checked — sizes, ranges, UTF-8, bucket, preset — before any engine runs."""
        from ideogram_trt.core.requests import check_images, check_seed

        _check_inputs(request)
        prompt = _text(request, PROMPT, None, check_size=self._check_prompt_size)
        assert prompt is not None  # required: _check_inputs refused a request without it
        height, width = _scalar(request, HEIGHT), _scalar(request, WIDTH)
        if (height is None) != (width is None):
            given, missing = (HEIGHT, WIDTH) if width is None else (WIDTH, HEIGHT)
            raise RequestError(
                f"input {given.name!r} was sent without {missing.name!r}: send both, or neither for the default"
            )
        num_images = check_images(_scalar(request, NUM_IMAGES), 1)
        if self.max_images is not None and num_images > self.max_images:
            raise RequestError(f"num_images {num_images} is above this model's limit of {self.max_images}")
        seed = check_seed(_scalar(request, SEED), num_images)
        preset = _text(request, PRESET, self.defaults.get(PRESET.name, PRESET.default))
        bucket = self.pipe.resolve_bucket(height, width)  # refuses a size that is no bucket of this engine set
        plan = self.pipe.sampling_plan(bucket, preset)  # refuses an unknown preset
        lora = _text(request, LORA, None)
        self.pipe.lora_feeds(_choices(lora))  # refuses an unknown adapter, or too much rank, before any engine runs
        parsed = ImageRequest(prompt, height, width, preset, seed, num_images, lora)
        return _Parsed(parsed, self.pipe.step_reports(plan, 1, num_images))

    def _check_prompt_size(self, size: int) -> None:
        self.pipe.tokenizer.check_size(size, self.pipe.manifest.max_text_tokens)

    def _run(self, parsed: _Parsed, on_step: Any = None) -> tuple[Any, list[bytes]]:
        from ideogram_trt.runtime.images import png_bytes, png_metadata, schedule_parameters

        request = parsed.request
        result = self.pipe(
            request.prompt,
            preset=request.preset,
            seed=request.seed,
            num_images=request.num_images,
            on_step=on_step,
            height=request.height,
            width=request.width,
            loras=_choices(request.lora),
        )
        # What `ideogram-trt generate` records, so a served PNG and a generated one carry the same fields.
        parameters = schedule_parameters(result.schedule)
        pngs = []
        for image, prompt, seed in zip(result.images, result.prompts, result.seeds, strict=True):
            metadata = png_metadata(
                prompt, seed, result.preset, result.bucket.name, result.engine_set, parameters, result.loras
            )
            pngs.append(png_bytes(image, metadata))
        return result, pngs

    def _images(self, result: Any, pngs: list[bytes]) -> list[Any]:
        return [pb_utils.Tensor(IMAGE.name, IMAGE.array(result.images)), pb_utils.Tensor(PNG.name, PNG.array(pngs))]

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
                    pb_utils.Tensor(STEP.name, STEP.array([total[0]])),
                    pb_utils.Tensor(STEPS.name, STEPS.array([parsed.steps])),
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
