"""The few CUDA runtime calls the TensorRT backend makes, behind a small protocol (``cuda-python`` bindings).

Device memory is plain integers (pointers). Host staging buffers are page-locked so asynchronous copies stay
asynchronous. Stream capture turns one engine launch into a CUDA graph, replayed afterwards without TensorRT's
enqueue overhead.
"""

from __future__ import annotations

import ctypes
from typing import Any, Protocol

import numpy as np

from ideogram_trt.core.errors import IdeogramTrtError


class CudaError(IdeogramTrtError):
    pass


class Cuda(Protocol):
    def malloc(self, nbytes: int) -> int: ...
    def free(self, pointer: int) -> None: ...
    def host_array(self, shape: tuple[int, ...], dtype: np.dtype[Any] | type) -> np.ndarray: ...
    def stream(self) -> int: ...
    def upload(self, pointer: int, array: np.ndarray, stream: int) -> None: ...
    def download(self, array: np.ndarray, pointer: int, stream: int) -> None: ...
    def copy(self, destination: int, source: int, nbytes: int, stream: int) -> None: ...
    def synchronize(self, stream: int) -> None: ...
    def begin_capture(self, stream: int) -> None: ...
    def end_capture(self, stream: int) -> Any: ...
    def launch(self, graph: Any, stream: int) -> None: ...
    def destroy_graph(self, graph: Any) -> None: ...
    def event(self) -> Any: ...
    def record(self, event: Any, stream: int) -> None: ...
    def elapsed_ms(self, start: Any, end: Any) -> float: ...


class CudaRuntime:
    """``Cuda`` on NVIDIA's ``cuda-python`` (``pip install cuda-python``)."""

    def __init__(self) -> None:
        try:
            from cuda.bindings import runtime as cudart
        except ImportError as exc:
            raise CudaError(f"the TensorRT backend needs cuda-python ({exc}): pip install cuda-python") from exc
        self._rt = cudart
        count = self._check(cudart.cudaGetDeviceCount())
        if not count:
            raise CudaError("no CUDA device visible")
        self._host: list[int] = []

    def _check(self, result: tuple[Any, ...]) -> Any:
        error, *values = result
        if int(error) != 0:
            name = self._rt.cudaGetErrorName(error)[1]
            raise CudaError(f"CUDA error {int(error)} ({name.decode() if isinstance(name, bytes) else name})")
        return values[0] if len(values) == 1 else tuple(values)

    def malloc(self, nbytes: int) -> int:
        return int(self._check(self._rt.cudaMalloc(max(nbytes, 1))))

    def free(self, pointer: int) -> None:
        self._check(self._rt.cudaFree(pointer))

    def host_array(self, shape: tuple[int, ...], dtype: np.dtype[Any] | type) -> np.ndarray:
        kind = np.dtype(dtype)
        nbytes = max(int(np.prod(shape)) * kind.itemsize, 1)
        pointer = int(self._check(self._rt.cudaMallocHost(nbytes)))
        self._host.append(pointer)
        buffer = memoryview((ctypes.c_byte * nbytes).from_address(pointer)).cast("B")
        array: np.ndarray = np.frombuffer(buffer, dtype=kind, count=int(np.prod(shape))).reshape(shape)
        return array

    def stream(self) -> int:
        return int(self._check(self._rt.cudaStreamCreate()))

    def upload(self, pointer: int, array: np.ndarray, stream: int) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(self._rt.cudaMemcpyAsync(pointer, array.ctypes.data, array.nbytes, kind, stream))

    def download(self, array: np.ndarray, pointer: int, stream: int) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(self._rt.cudaMemcpyAsync(array.ctypes.data, pointer, array.nbytes, kind, stream))

    def copy(self, destination: int, source: int, nbytes: int, stream: int) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice
        self._check(self._rt.cudaMemcpyAsync(destination, source, nbytes, kind, stream))

    def synchronize(self, stream: int) -> None:
        self._check(self._rt.cudaStreamSynchronize(stream))

    def begin_capture(self, stream: int) -> None:
        mode = self._rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        self._check(self._rt.cudaStreamBeginCapture(stream, mode))

    def end_capture(self, stream: int) -> Any:
        graph = self._check(self._rt.cudaStreamEndCapture(stream))
        try:
            return self._check(self._rt.cudaGraphInstantiate(graph, 0))
        finally:  # the executable graph is independent of the captured one
            self._check(self._rt.cudaGraphDestroy(graph))

    def launch(self, graph: Any, stream: int) -> None:
        self._check(self._rt.cudaGraphLaunch(graph, stream))

    def destroy_graph(self, graph: Any) -> None:
        self._check(self._rt.cudaGraphExecDestroy(graph))

    def event(self) -> Any:
        return self._check(self._rt.cudaEventCreate())

    def record(self, event: Any, stream: int) -> None:
        self._check(self._rt.cudaEventRecord(event, stream))

    def elapsed_ms(self, start: Any, end: Any) -> float:
        return float(self._check(self._rt.cudaEventElapsedTime(start, end)))
