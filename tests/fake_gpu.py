"""A FAKE GPU for testing the TensorRT backend where no GPU exists.

What cannot exist here — a GPU executing a TensorRT plan — is replaced, and only that: "device memory" is host
bytes, a "stream" runs work in order, "stream capture" records work into a replayable list, and "executing a
plan" runs the plan's own ONNX graph (the export it was built from) in ONNX Runtime, reading and writing the
bound device buffers. Everything else in the backend — buffer sizing and binding, the shared scratch pool,
graph capture and replay, the per-step scalar uploads, the sampler engine, synchronization — runs as written,
and the counters below record what it did.

What TensorRT and CUDA enforce, the fake enforces: an execution context is always on one optimization profile
(profile 0 until ``set_optimization_profile_async`` picks another, which drops the input shapes set so far);
``set_input_shape`` refuses (returns False, keeping no shape) a shape outside the selected profile's [min, max]
for that input — the ranges the plan was built with, as ``get_tensor_profile_shape`` reports them — and
``execute_async_v3`` refuses to enqueue until every input has a legal shape and every tensor an address. Every
device allocation (``malloc``) and every page-locked host allocation (``host``) is counted.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

ORT_TYPES = {"tensor(float)": np.float32, "tensor(int32)": np.int32, "tensor(float16)": np.float16}
# One optimization profile as the plan holds it: input name → (min, opt, max) shapes.
FakeProfile = dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]


@dataclass
class FakeGraph:
    work: list[Callable[[], None]]


@dataclass
class FakeCuda:
    memory: dict[int, bytearray] = field(default_factory=dict)
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("malloc", "free", "host", "sync", "capture", "launch", "destroy", "event"), 0
        )
    )
    _capturing: list[Callable[[], None]] | None = None
    _pointers: Any = field(default_factory=lambda: itertools.count(0x1000, 0x1000))
    _clock: Any = field(default_factory=lambda: itertools.count())

    def submit(self, work: Callable[[], None]) -> None:
        """Run now, or record into the graph being captured (as a real stream capture does)."""
        if self._capturing is not None:
            self._capturing.append(work)
        else:
            work()

    def malloc(self, nbytes: int) -> int:
        self.counts["malloc"] += 1
        pointer = next(self._pointers)
        self.memory[pointer] = bytearray(max(nbytes, 1))
        return pointer

    def free(self, pointer: int) -> None:
        self.counts["free"] += 1
        del self.memory[pointer]

    def host_array(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """A page-locked host allocation (cudaMallocHost): counted like a device one."""
        self.counts["host"] += 1
        return np.zeros(shape, dtype=dtype)

    def stream(self) -> int:
        return 1

    def upload(self, pointer: int, array: np.ndarray, stream: int) -> None:
        data = array.tobytes()  # a page-locked copy would be read at execution time; the fake reads now
        self.submit(lambda: self.memory[pointer].__setitem__(slice(0, len(data)), data))

    def download(self, array: np.ndarray, pointer: int, stream: int) -> None:
        def work() -> None:
            array.reshape(-1).view(np.uint8)[:] = np.frombuffer(bytes(self.memory[pointer][: array.nbytes]), np.uint8)

        self.submit(work)

    def copy(self, destination: int, source: int, nbytes: int, stream: int) -> None:
        self.submit(lambda: self.memory[destination].__setitem__(slice(0, nbytes), self.memory[source][:nbytes]))

    def synchronize(self, stream: int) -> None:
        self.counts["sync"] += 1

    def begin_capture(self, stream: int) -> None:
        assert self._capturing is None, "nested capture"
        self._capturing = []

    def end_capture(self, stream: int) -> FakeGraph:
        assert self._capturing is not None
        graph, self._capturing = FakeGraph(self._capturing), None
        self.counts["capture"] += 1
        return graph

    def launch(self, graph: FakeGraph, stream: int) -> None:
        self.counts["launch"] += 1
        for work in graph.work:
            work()

    def destroy_graph(self, graph: FakeGraph) -> None:
        self.counts["destroy"] += 1
        graph.work.clear()  # replaying a destroyed graph would now do nothing: tests would see it

    def event(self) -> list[int]:
        self.counts["event"] += 1
        return [0]

    def record(self, event: list[int], stream: int) -> None:
        self.submit(lambda: event.__setitem__(0, next(self._clock)))

    def elapsed_ms(self, start: list[int], end: list[int]) -> float:
        return float(end[0] - start[0])


def _within(shape: tuple[int, ...], low: tuple[int, ...], high: tuple[int, ...]) -> bool:
    return len(shape) == len(low) == len(high) and all(
        lo <= d <= hi for lo, d, hi in zip(low, shape, high, strict=True)
    )


class FakeContext:
    def __init__(self, engine: FakeEngine) -> None:
        self.engine, self.cuda = engine, engine.cuda
        self.addresses: dict[str, int] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.scratch: int | None = None
        self.scratch_size = 0
        self.profile = 0  # TensorRT: profile 0 is selected by default
        self.refused: list[tuple[int, str, tuple[int, ...]]] = []  # (profile, input, shape) set_input_shape refused

    @property
    def active_optimization_profile(self) -> int:
        return self.profile

    def set_device_memory(self, pointer: int, size: int) -> None:
        self.scratch, self.scratch_size = pointer, size

    def set_tensor_address(self, name: str, pointer: int) -> bool:
        if name not in self.engine.tensors:
            return False
        self.addresses[name] = pointer
        return True

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        """TensorRT's rule: an input's shape must lie within the selected profile's [min, max], axis by axis."""
        shape = tuple(int(d) for d in shape)
        ranges = self.engine.profiles[self.profile].get(name)
        if ranges is None or not _within(shape, ranges[0], ranges[2]):
            self.refused.append((self.profile, name, shape))
            return False
        self.shapes[name] = shape
        return True

    def set_optimization_profile_async(self, index: int, stream: int) -> bool:
        if not 0 <= index < self.engine.num_optimization_profiles:
            return False
        self.profile = index
        self.shapes.clear()  # switching profiles invalidates the input shapes: they must be set again
        return True

    def execute_async_v3(self, stream: int) -> bool:
        assert self.scratch is not None, "the backend must lend the context its scratch memory"
        if self.scratch_size < self.engine.get_device_memory_size_for_profile_v2(self.profile):
            return False
        if set(self.engine.inputs) - set(self.shapes) or set(self.engine.tensors) - set(self.addresses):
            return False  # TensorRT refuses to enqueue with an input shape or a tensor address unset
        shapes, profile = dict(self.shapes), self.profile  # captured now: TensorRT bakes them into the work
        self.cuda.submit(lambda: self.engine.run(self.addresses, shapes, profile))
        return True


class FakeEngine:
    def __init__(self, cuda: FakeCuda, graph: Path, profiles: list[FakeProfile]) -> None:
        self.cuda = cuda
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(str(graph), options)
        self.inputs = [spec.name for spec in self.session.get_inputs()]
        self.tensors = [*self.inputs, *(spec.name for spec in self.session.get_outputs())]
        assert profiles and all(set(p) == set(self.inputs) for p in profiles), "a profile ranges every input"
        self.profiles = profiles
        self.num_optimization_profiles = len(profiles)
        self.runs = 0
        self.ran_on: list[int] = []  # the profile of every execution, in order

    def get_device_memory_size_for_profile_v2(self, index: int) -> int:
        assert 0 <= index < self.num_optimization_profiles
        return 1 << 20

    def get_tensor_profile_shape(self, name: str, index: int) -> list[tuple[int, ...]]:
        return list(self.profiles[index][name])

    def create_execution_context(self, strategy: Any) -> FakeContext:
        assert strategy == FakeTensorRT.ExecutionContextAllocationStrategy.USER_MANAGED
        return FakeContext(self)

    def run(self, addresses: dict[str, int], shapes: dict[str, tuple[int, ...]], profile: int) -> None:
        self.runs += 1
        self.ran_on.append(profile)
        feeds = {}
        for spec in self.session.get_inputs():
            dtype = ORT_TYPES[spec.type]
            count = int(np.prod(shapes[spec.name]))
            raw = bytes(self.cuda.memory[addresses[spec.name]][: count * np.dtype(dtype).itemsize])
            feeds[spec.name] = np.frombuffer(raw, dtype=dtype).reshape(shapes[spec.name])
        names = [o.name for o in self.session.get_outputs()]
        for name, value in zip(names, self.session.run(names, feeds), strict=True):
            data = np.ascontiguousarray(value).tobytes()
            self.cuda.memory[addresses[name]][: len(data)] = data


class FakeTensorRT:
    """Stands in for the ``tensorrt`` module: plans resolve (by their sha256) to the ONNX graphs they came from."""

    __version__ = "fake"

    class Logger:
        WARNING = 2

        def __init__(self, level: int = 2) -> None:
            self.level = level

    class ExecutionContextAllocationStrategy:
        USER_MANAGED = "user-managed"

    def __init__(self, cuda: FakeCuda, plans: dict[str, tuple[Path, list[FakeProfile]]]) -> None:
        self.cuda, self.plans = cuda, plans
        self.engines: dict[str, FakeEngine] = {}

    def Runtime(self, logger: Any) -> FakeTensorRT:
        return self

    def deserialize_cuda_engine(self, plan: bytes) -> FakeEngine:
        digest = hashlib.sha256(plan).hexdigest()
        graph, profiles = self.plans[digest]
        engine = FakeEngine(self.cuda, graph, profiles)
        self.engines[graph.stem] = engine
        return engine
