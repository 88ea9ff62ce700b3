"""The Python-backend model ``ideogram-trt triton-repo`` installs (as ``<model>/1/model.py``).

It runs ``ideogram_trt.runtime.Pipeline`` in-process over one engine set — TensorRT plans on GPU instances, ONNX
Runtime graphs on CPU ones — one pipeline per model instance. Scaling past one GPU means more instances (one per
GPU listed) or more Triton replicas, not a scheduler of ours.

Requests: ``prompt`` BYTES [1]; optional ``height``, ``width`` INT32 [1], ``preset`` BYTES [1], ``seed`` INT64 [1],
``num_images`` INT32 [1]. Responses: ``image`` UINT8 [n, H, W, 3] and ``png`` BYTES [n]. Decoupled models first
send one response per denoising step (``step`` INT32 [1], ``steps`` INT32 [1]), then the images.
A bad request gets a Triton error carrying the runtime's own one-line message; the model keeps serving.

The environment the Python backend runs this in needs ``ideogram-trt[runtime]`` and numpy < 2 (the stub reads
numpy-1 array layouts; research/triton.md §7).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

try:  # provided by the Python backend inside Triton
    import triton_python_backend_utils as pb_utils
except ImportError:  # imported outside Triton (tests, tooling)
    pb_utils = None


def _scalar(request: Any, name: str, default: Any) -> Any:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return default
    value = tensor.as_numpy().reshape(-1)
    if value.size != 1:
        raise ValueError(f"input {name!r} must hold one value, got {value.size}")
    item = value[0]
    return item.decode("utf-8") if isinstance(item, bytes) else item.item()


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

    def _run(self, request: Any, on_step: Any = None) -> tuple[Any, list[bytes]]:
        from ideogram_trt.runtime.images import png_bytes

        prompt = _scalar(request, "prompt", None)
        if prompt is None:
            raise ValueError("input 'prompt' is required")
        height, width = _scalar(request, "height", None), _scalar(request, "width", None)
        size = {"height": height, "width": width} if height is not None or width is not None else {}
        num_images = int(_scalar(request, "num_images", 1))
        if self.max_images is not None and num_images > self.max_images:
            raise ValueError(f"num_images {num_images} is above this model's limit of {self.max_images}")
        result = self.pipe(
            str(prompt),
            preset=_scalar(request, "preset", self.defaults.get("preset")),
            seed=int(_scalar(request, "seed", 0)),
            num_images=num_images,
            on_step=on_step,
            **size,
        )
        pngs = []
        for image, seed in zip(result.images, result.seeds, strict=True):
            metadata = {"prompt": str(prompt), "seed": str(seed), "preset": result.preset,
                        "bucket": result.bucket.name, "engine_set": result.engine_set}  # fmt: skip
            pngs.append(png_bytes(image, metadata))
        return result, pngs

    def _images(self, result: Any, pngs: list[bytes]) -> list[Any]:
        return [
            pb_utils.Tensor("image", result.images),
            pb_utils.Tensor("png", np.array(pngs, dtype=np.object_)),
        ]

    def execute(self, requests: list[Any]) -> list[Any] | None:
        from ideogram_trt.core.errors import IdeogramTrtError

        if self.decoupled:
            for request in requests:
                self._stream(request)
            return None
        responses = []
        for request in requests:
            try:
                result, pngs = self._run(request)
                responses.append(pb_utils.InferenceResponse(output_tensors=self._images(result, pngs)))
            except (IdeogramTrtError, ValueError) as exc:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))))
        return responses

    def _stream(self, request: Any) -> None:
        from ideogram_trt.core.errors import IdeogramTrtError

        sender = request.get_response_sender()
        total = [0]

        def progress(_prompt: int, step: int, _seconds: float) -> None:
            total[0] += 1
            outputs = [
                pb_utils.Tensor("step", np.array([total[0]], dtype=np.int32)),
                pb_utils.Tensor("steps", np.array([self._steps], dtype=np.int32)),
            ]
            sender.send(pb_utils.InferenceResponse(output_tensors=outputs))

        try:
            self._steps = self._planned_steps(request)
            result, pngs = self._run(request, progress)
            final = pb_utils.InferenceResponse(output_tensors=self._images(result, pngs))
            sender.send(final, flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        except (IdeogramTrtError, ValueError) as exc:
            error = pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc)))
            sender.send(error, flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)

    def _planned_steps(self, request: Any) -> int:
        height, width = _scalar(request, "height", None), _scalar(request, "width", None)
        bucket = self.pipe.resolve_bucket(height, width)
        plan = self.pipe.sampling_plan(bucket, _scalar(request, "preset", self.defaults.get("preset")))
        return self.pipe.step_reports(plan, 1, int(_scalar(request, "num_images", 1)))

    def finalize(self) -> None:
        self.pipe = None
