"""``ideogram-trt triton-client``: ask a Triton server for images (tritonclient, gRPC or HTTP)."""

from __future__ import annotations

import queue
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ideogram_trt.core.errors import IdeogramTrtError


@dataclass(frozen=True)
class ImageRequest:
    prompt: str
    height: int | None = None
    width: int | None = None
    preset: str | None = None
    seed: int = 0
    num_images: int = 1


def _inputs(module: Any, request: ImageRequest) -> list[Any]:
    values: list[tuple[str, np.ndarray, str]] = [
        ("prompt", np.array([request.prompt.encode()], dtype=np.object_), "BYTES")
    ]
    if request.height is not None:
        values.append(("height", np.array([request.height], dtype=np.int32), "INT32"))
    if request.width is not None:
        values.append(("width", np.array([request.width], dtype=np.int32), "INT32"))
    if request.preset is not None:
        values.append(("preset", np.array([request.preset.encode()], dtype=np.object_), "BYTES"))
    values.append(("seed", np.array([request.seed], dtype=np.int64), "INT64"))
    values.append(("num_images", np.array([request.num_images], dtype=np.int32), "INT32"))
    inputs = []
    for name, array, kind in values:
        tensor = module.InferInput(name, list(array.shape), kind)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


def request_images(
    url: str, request: ImageRequest, model: str = "ideogram4", protocol: str = "grpc", timeout: float = 600.0
) -> tuple[np.ndarray, list[bytes]]:
    """(image uint8 [n, H, W, 3], PNG bytes per image)."""
    from tritonclient.utils import InferenceServerException

    if protocol == "grpc":
        import tritonclient.grpc as module
    elif protocol == "http":
        import tritonclient.http as module  # type: ignore[no-redef]
    else:
        raise IdeogramTrtError(f"unknown protocol {protocol!r}: use grpc or http")
    kwargs = {"network_timeout": timeout} if protocol == "http" else {}
    client = module.InferenceServerClient(url, **kwargs)
    try:
        outputs = [module.InferRequestedOutput("image"), module.InferRequestedOutput("png")]
        extra = {"client_timeout": timeout} if protocol == "grpc" else {}
        result = client.infer(model, _inputs(module, request), outputs=outputs, **extra)
    except InferenceServerException as exc:
        raise IdeogramTrtError(f"{url}: {exc.message()}") from None
    finally:
        client.close()
    return result.as_numpy("image"), [bytes(p) for p in result.as_numpy("png")]


def stream_images(
    url: str, request: ImageRequest, model: str, on_step: Callable[[int, int], None], timeout: float = 600.0
) -> tuple[np.ndarray, list[bytes]]:
    """A decoupled model over a gRPC stream: ``on_step(step, steps)`` per progress message, then the images."""
    import tritonclient.grpc as grpc
    from tritonclient.utils import InferenceServerException

    responses: queue.Queue[Any] = queue.Queue()
    client = grpc.InferenceServerClient(url)
    try:
        client.start_stream(callback=lambda result, error: responses.put((result, error)))
        client.async_stream_infer(model, _inputs(grpc, request), enable_empty_final_response=True)
        while True:
            result, error = responses.get(timeout=timeout)
            if error is not None:
                message = error.message() if isinstance(error, InferenceServerException) else str(error)
                raise IdeogramTrtError(f"{url}: {message}")
            response = result.get_response()
            if result.as_numpy("step") is not None:
                on_step(int(result.as_numpy("step")[0]), int(result.as_numpy("steps")[0]))
            elif result.as_numpy("image") is not None:
                image, pngs = result.as_numpy("image"), [bytes(p) for p in result.as_numpy("png")]
            if (
                response.parameters.get("triton_final_response", None)
                and response.parameters["triton_final_response"].bool_param
            ):
                return image, pngs
    finally:
        client.stop_stream()
        client.close()
