"""``ideogram-trt triton-client``: ask a Triton server for images (tritonclient, gRPC or HTTP)."""

from __future__ import annotations

import math
import queue
import re
from collections.abc import Callable
from typing import Any

import numpy as np

from ideogram_trt.core.errors import IdeogramTrtError, InputError
from ideogram_trt.triton.schema import HEIGHT, IMAGE, INPUTS, PNG, STEP, STEPS, WIDTH, max_value, outputs
from ideogram_trt.triton.schema import ImageRequest as ImageRequest  # re-exported: cli.py builds requests with it

PROTOCOLS = ("grpc", "http")
MAX_SIDE = min(max_value(HEIGHT), max_value(WIDTH))  # the largest side the inputs' type carries
PROBE_SECONDS = 10.0  # the most the liveness check before a request waits
# What Triton's Python backend makes of an exception raised by execute (ideogram_trt.triton.model.RequestError):
# a prefix naming the instance, the exception's type, and its Python traceback after "At:".
_RAISED = re.compile(r"Failed to process the request\(s\) for model '[^']*', message: (?:RequestError: )?(.*)", re.S)
_ADDRESS = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>[0-9]{1,5})")


def server_address(url: str, protocol: str) -> str:
    """``host:port`` for tritonclient: a ``grpc://`` or ``http://`` prefix matching ``protocol`` is dropped, any
    other scheme, a path or a missing port is refused (one line naming the URL and the fix)."""
    if protocol not in PROTOCOLS:
        raise InputError(f"unknown protocol {protocol!r}: use grpc or http")
    default = 8001 if protocol == "grpc" else 8000
    example = f"e.g. --url localhost:{default}"
    address = url
    scheme, separator, rest = url.partition("://")
    if separator:
        if scheme.lower() != protocol:
            hint = " (TLS is not supported here)" if scheme.lower() in ("https", "grpcs") else ""
            raise InputError(
                f"--url {url!r}: a {scheme}:// URL with --protocol {protocol}{hint}; give host:port ({example}), or "
                f"{protocol}://host:port"
            )
        address = rest.rstrip("/")
    match = _ADDRESS.fullmatch(address)
    if match is None or not 1 <= int(match["port"]) <= 65535:
        raise InputError(f"--url {url!r}: not host:port; give the server's address and port ({example})")
    return address


def check_image_request(request: ImageRequest) -> ImageRequest:
    """Refuse values the server would refuse, or that cannot travel as its input types, before connecting."""
    from ideogram_trt.core.prompts import check_prompt
    from ideogram_trt.core.requests import check_images, check_seed

    check_prompt(request.prompt, "the prompt")
    if (request.height is None) != (request.width is None):
        raise InputError("give both --height and --width, or neither (the model's first bucket)")
    for side, value in (("height", request.height), ("width", request.width)):
        if value is not None and not 1 <= value <= MAX_SIDE:
            raise InputError(f"--{side} {value}: give a positive number of pixels (e.g. 1024)")
    check_images(request.num_images, 1)
    check_seed(request.seed, request.num_images)
    return request


def check_timeout(timeout: float) -> float:
    if not (math.isfinite(timeout) and timeout > 0):
        raise InputError(f"--timeout {timeout}: give a positive number of seconds (e.g. 600)")
    return timeout


def server_message(message: str) -> str:
    """The model's one-line message out of a Triton error (without the backend's prefix and Python traceback)."""
    match = _RAISED.search(message)
    text = match.group(1) if match else message
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else "the server gave no reason"


def _probe(module: Any, client: Any, url: str, protocol: str, timeout: float) -> None:
    """Fail fast, with one line, when nothing answers at ``url``."""
    try:
        kwargs = {"client_timeout": min(timeout, PROBE_SECONDS)} if protocol == "grpc" else {}
        live = client.is_server_live(**kwargs)
    except Exception as exc:
        reason = server_message(exc.message()) if hasattr(exc, "message") else f"{type(exc).__name__}: {exc}"
        if isinstance(exc, TimeoutError) or "deadline exceeded" in reason.lower() or "timed out" in reason:
            raise _timed_out(url, timeout) from None  # something listens, but not within --timeout
        raise IdeogramTrtError(
            f"no Triton server answers at {url} over {protocol} ({reason}); start it, or fix --url/--protocol "
            "(gRPC listens on 8001 and HTTP on 8000 by default)"
        ) from None
    if not live:
        raise IdeogramTrtError(f"the Triton server at {url} is not live yet; wait for it, then ask again")


def _timed_out(url: str, timeout: float) -> IdeogramTrtError:
    return IdeogramTrtError(
        f"{url}: no answer within --timeout {timeout:g} s; raise --timeout (a request can take minutes)"
    )


def _inputs(module: Any, request: ImageRequest) -> list[Any]:
    """One tensor per input of the table the request sets (None leaves an input out: the model's default)."""
    inputs = []
    for spec in INPUTS:
        value = getattr(request, spec.name)
        if value is None:
            continue
        array = spec.array(value)
        tensor = module.InferInput(spec.name, list(array.shape), spec.datatype.wire)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


def request_images(
    url: str, request: ImageRequest, model: str = "ideogram4", protocol: str = "grpc", timeout: float = 600.0
) -> tuple[np.ndarray, list[bytes]]:
    """(image uint8 [n, H, W, 3], PNG bytes per image)."""
    from tritonclient.utils import InferenceServerException

    url = server_address(url, protocol)
    timeout = check_timeout(timeout)
    if protocol == "grpc":
        import tritonclient.grpc as module
    else:
        import tritonclient.http as module  # type: ignore[no-redef]
    kwargs = (
        {"network_timeout": timeout, "connection_timeout": min(timeout, PROBE_SECONDS)} if protocol == "http" else {}
    )
    client = module.InferenceServerClient(url, **kwargs)
    try:
        _probe(module, client, url, protocol, timeout)
        requested = [module.InferRequestedOutput(spec.name) for spec in outputs(decoupled=False)]
        extra = {"client_timeout": timeout} if protocol == "grpc" else {}
        result = client.infer(model, _inputs(module, request), outputs=requested, **extra)
    except InferenceServerException as exc:
        if "deadline exceeded" in str(exc.message()).lower():
            raise _timed_out(url, timeout) from None
        raise IdeogramTrtError(f"{url}: {server_message(exc.message())}") from None
    except (TimeoutError, OSError) as exc:  # HTTP: the socket timed out or the connection broke
        if isinstance(exc, TimeoutError) or "timed out" in str(exc):
            raise _timed_out(url, timeout) from None
        raise IdeogramTrtError(f"{url}: the connection failed ({exc}); is the server still running?") from None
    finally:
        client.close()
    return result.as_numpy(IMAGE.name), [bytes(p) for p in result.as_numpy(PNG.name)]


def stream_images(
    url: str, request: ImageRequest, model: str, on_step: Callable[[int, int], None], timeout: float = 600.0
) -> tuple[np.ndarray, list[bytes]]:
    """A decoupled model over a gRPC stream: ``on_step(step, steps)`` per progress message, then the images."""
    import tritonclient.grpc as grpc
    from tritonclient.utils import InferenceServerException

    url = server_address(url, "grpc")
    timeout = check_timeout(timeout)
    responses: queue.Queue[Any] = queue.Queue()
    client = grpc.InferenceServerClient(url)
    try:
        _probe(grpc, client, url, "grpc", timeout)
        client.start_stream(callback=lambda result, error: responses.put((result, error)))
        client.async_stream_infer(model, _inputs(grpc, request), enable_empty_final_response=True)
        while True:
            try:
                result, error = responses.get(timeout=timeout)
            except queue.Empty:
                raise _timed_out(url, timeout) from None
            if error is not None:
                message = error.message() if isinstance(error, InferenceServerException) else str(error)
                raise IdeogramTrtError(f"{url}: {server_message(message)}")
            response = result.get_response()
            if result.as_numpy(STEP.name) is not None:
                on_step(int(result.as_numpy(STEP.name)[0]), int(result.as_numpy(STEPS.name)[0]))
            elif result.as_numpy(IMAGE.name) is not None:
                image, pngs = result.as_numpy(IMAGE.name), [bytes(p) for p in result.as_numpy(PNG.name)]
            if (
                response.parameters.get("triton_final_response", None)
                and response.parameters["triton_final_response"].bool_param
            ):
                return image, pngs
    finally:
        client.stop_stream()
        client.close()
