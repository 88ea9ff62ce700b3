"""A FAKE TensorRT over a FAKE GPU: the test double for ``TensorRTBackend`` where no GPU exists.

This is not a GPU, and no TensorRT plan ever runs here. What cannot exist on a machine without a GPU — a GPU
executing a TensorRT plan — is replaced, and only that; everything the backend does around it (buffer sizing and
binding, the shared scratch pool, graph capture and replay, the per-step scalar uploads, the sampler engine,
synchronization) runs as written against these objects, and their counters record what it did. The tests use it
to check the backend's results and bookkeeping; ``tools/bench_host_overhead.py`` uses it to time the backend's
host work with engines that do none.

``FakeCuda`` implements the runtime's ``Cuda`` protocol on the host: "device memory" is one numpy byte array per
pointer; the one "stream" runs work in order, at once; "stream capture" records that work into a graph that every
launch replays; events read the host clock when the work they mark runs. A copy reads its source when it runs (at
once, or at each replay of a captured graph), as an asynchronous copy from page-locked memory does, and a freed
pointer can no longer be read or written. ``device_seconds`` adds up the host time spent doing the device's work
(copies, plans' executions), which a GPU would do while the host moved on.

``FakeTensorRT`` stands in for the ``tensorrt`` module. A plan resolves, by the sha256 of its bytes, to the
``FakePlan`` it was given for: the optimization profiles the plan was built with and, usually, the ONNX graph it
was built from. Executing a plan with a graph runs that graph in ONNX Runtime (imported only then), reading its
inputs from the bound fake device buffers and writing its outputs to them, at the point in the stream where the
work runs; a plan without a graph computes and enqueues nothing (a stand-in that does no work).

What TensorRT and CUDA enforce, the fake enforces:

* Profiles. An execution context is always on one optimization profile: profile 0 until
  ``set_optimization_profile_async`` selects another (an index out of range is refused), which drops the input
  shapes set so far. ``set_input_shape`` refuses — returns False, keeps no shape and notes the refusal in
  ``FakeContext.refused`` — a shape outside the selected profile's [min, max] for that input, axis by axis: the
  ranges the plan was built with, as ``get_tensor_profile_shape`` reports them. So the profile index matters: a
  shape legal on one profile is refused on another, and every execution notes its profile in
  ``FakeEngine.ran_on``.
* Enqueueing. ``execute_async_v3`` refuses (returns False) until the context has been lent scratch memory of at
  least the size the plan asks for, every input has a legal shape and every tensor an address.
* Memory. Every device allocation (``malloc``) and every page-locked host allocation (``host``) is counted in
  ``FakeCuda.counts``, with frees, synchronizations, captures, launches, destroyed graphs and events.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ideogram_trt.runtime.cuda import Cuda, CudaError

ORT_TYPES = {"tensor(float)": np.float32, "tensor(int32)": np.int32, "tensor(float16)": np.float16}
SCRATCH_BYTES = 1 << 20  # the activation memory every fake plan asks for, on every profile
COUNTED = ("malloc", "free", "host", "sync", "capture", "launch", "destroy", "event")
# One optimization profile as the plan holds it: input name → (min, opt, max) shapes.
FakeProfile = dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]
Work = Callable[[], None]


@dataclass
class FakeGraph:
    work: list[Work]


class FakeCuda:
    """The ``Cuda`` protocol on host memory; see the module docstring."""

    def __init__(self) -> None:
        self.memory: dict[int, np.ndarray] = {}  # pointer → its bytes (uint8)
        self.counts: dict[str, int] = dict.fromkeys(COUNTED, 0)
        self.device_seconds = 0.0
        self._next = 0x1000
        self._capturing: list[Work] | None = None

    def submit(self, work: Work) -> None:
        """Run ``work`` now, or record it into the graph being captured (as a real stream capture does)."""
        if self._capturing is not None:
            self._capturing.append(work)
        else:
            self._device(work)

    def _device(self, work: Work) -> None:
        start = time.perf_counter()
        work()
        self.device_seconds += time.perf_counter() - start

    def malloc(self, nbytes: int) -> int:
        self.counts["malloc"] += 1
        pointer = self._next
        self._next += (max(nbytes, 1) + 0xFFF) & ~0xFFF  # allocations never overlap, as on a device
        self.memory[pointer] = np.zeros(max(nbytes, 1), dtype=np.uint8)
        return pointer

    def free(self, pointer: int) -> None:
        self.counts["free"] += 1
        del self.memory[pointer]

    def host_array(self, shape: tuple[int, ...], dtype: np.dtype[Any] | type) -> np.ndarray:
        """A page-locked host allocation (cudaMallocHost): counted like a device one."""
        self.counts["host"] += 1
        return np.zeros(shape, dtype=dtype)

    def stream(self) -> int:
        return 1

    def upload(self, pointer: int, array: np.ndarray, stream: int) -> None:
        source = array.reshape(-1).view(np.uint8)  # read when the copy runs, as from page-locked memory

        def work() -> None:
            self.memory[pointer][: source.size] = source

        self.submit(work)

    def download(self, array: np.ndarray, pointer: int, stream: int) -> None:
        target = array.reshape(-1).view(np.uint8)

        def work() -> None:
            target[:] = self.memory[pointer][: target.size]

        self.submit(work)

    def copy(self, destination: int, source: int, nbytes: int, stream: int) -> None:
        def work() -> None:
            self.memory[destination][:nbytes] = self.memory[source][:nbytes]

        self.submit(work)

    def synchronize(self, stream: int) -> None:
        self.counts["sync"] += 1  # everything submitted has already run

    def begin_capture(self, stream: int) -> None:
        if self._capturing is not None:
            raise CudaError("FakeCuda: nested stream capture")
        self._capturing = []

    def end_capture(self, stream: int) -> FakeGraph:
        if self._capturing is None:
            raise CudaError("FakeCuda: end_capture without begin_capture")
        graph, self._capturing = FakeGraph(self._capturing), None
        self.counts["capture"] += 1
        return graph

    def launch(self, graph: FakeGraph, stream: int) -> None:
        self.counts["launch"] += 1
        for work in graph.work:
            self._device(work)

    def destroy_graph(self, graph: FakeGraph) -> None:
        self.counts["destroy"] += 1
        graph.work.clear()  # replaying a destroyed graph would now do nothing: tests would see it

    def event(self) -> list[float]:
        self.counts["event"] += 1
        return [0.0]

    def record(self, event: list[float], stream: int) -> None:
        def mark() -> None:
            event[0] = time.perf_counter()

        if self._capturing is not None:
            self._capturing.append(mark)
        else:
            mark()  # not device work: left out of device_seconds

    def elapsed_ms(self, start: list[float], end: list[float]) -> float:
        return (end[0] - start[0]) * 1000.0


class FakePlan(NamedTuple):
    """What the fake knows of one plan. Without a graph, its tensors are known only by the profiles: its inputs
    must have shapes and addresses before an enqueue, and any other tensor address is taken as given."""

    graph: Path | None  # the ONNX graph the plan was built from, run in its place; None: a plan that does nothing
    profiles: list[FakeProfile]  # the optimization profiles it was built with, in index order


def _within(shape: tuple[int, ...], low: tuple[int, ...], high: tuple[int, ...]) -> bool:
    return len(shape) == len(low) == len(high) and all(
        lo <= d <= hi for lo, d, hi in zip(low, shape, high, strict=True)
    )


class FakeContext:
    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine
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
        if self.engine.tensors is not None and name not in self.engine.tensors:
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
        engine = self.engine
        if self.scratch_size < engine.get_device_memory_size_for_profile_v2(self.profile):
            return False
        if set(engine.inputs) - set(self.shapes) or set(engine.tensors or engine.inputs) - set(self.addresses):
            return False  # TensorRT refuses to enqueue with an input shape or a tensor address unset
        engine.enqueues += 1
        if engine.session is not None:
            # Captured now: TensorRT bakes the shapes, addresses and profile into the work it enqueues.
            addresses, shapes, profile = dict(self.addresses), dict(self.shapes), self.profile
            engine.fake_cuda().submit(lambda: engine.run(addresses, shapes, profile))
        if engine.module.on_enqueue is not None:
            engine.module.on_enqueue(stream, self.scratch)
        return True


class FakeEngine:
    """A deserialized plan: its profiles, its tensors and, for a plan with a graph, an ONNX Runtime session."""

    def __init__(self, module: FakeTensorRT, plan: FakePlan) -> None:
        self.module, self.cuda = module, module.cuda
        self.session: Any = None
        self.tensors: list[str] | None = None  # every input and output; None: not known (a plan without a graph)
        if plan.graph is not None:
            import onnxruntime as ort

            from ideogram_trt.runtime.onnxruntime_backend import DISABLED_OPTIMIZERS

            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            self.session = ort.InferenceSession(str(plan.graph), options, disabled_optimizers=DISABLED_OPTIMIZERS)
            self.inputs = [spec.name for spec in self.session.get_inputs()]
            self.tensors = [*self.inputs, *(spec.name for spec in self.session.get_outputs())]
        else:
            self.inputs = list(plan.profiles[0]) if plan.profiles else []
        assert plan.profiles and all(set(p) == set(self.inputs) for p in plan.profiles), "a profile ranges every input"
        self.profiles = plan.profiles
        self.num_optimization_profiles = len(plan.profiles)
        self.enqueues = 0  # accepted execute_async_v3 calls (a captured one counts once, however often replayed)
        self.runs = 0  # executions of the graph, replays included
        self.ran_on: list[int] = []  # the profile of every execution, in order

    def fake_cuda(self) -> FakeCuda:
        if not isinstance(self.cuda, FakeCuda):
            raise CudaError("fake TensorRT: a plan with an ONNX graph runs on FakeCuda's memory only")
        return self.cuda

    def get_device_memory_size_for_profile_v2(self, index: int) -> int:
        assert 0 <= index < self.num_optimization_profiles
        return SCRATCH_BYTES

    def get_tensor_profile_shape(self, name: str, index: int) -> list[tuple[int, ...]]:
        return list(self.profiles[index][name])

    def create_execution_context(self, strategy: Any) -> FakeContext:
        assert strategy == FakeTensorRT.ExecutionContextAllocationStrategy.USER_MANAGED
        return FakeContext(self)

    def run(self, addresses: dict[str, int], shapes: dict[str, tuple[int, ...]], profile: int) -> None:
        self.runs += 1
        self.ran_on.append(profile)
        memory = self.fake_cuda().memory
        feeds = {}
        for spec in self.session.get_inputs():
            dtype, shape = np.dtype(ORT_TYPES[spec.type]), shapes[spec.name]
            raw = memory[addresses[spec.name]][: int(np.prod(shape)) * dtype.itemsize]
            feeds[spec.name] = raw.view(dtype).reshape(shape).copy()
        names = [spec.name for spec in self.session.get_outputs()]
        for name, value in zip(names, self.session.run(names, feeds), strict=True):
            data = np.ascontiguousarray(value).reshape(-1).view(np.uint8)
            memory[addresses[name]][: data.size] = data


class FakeTensorRT:
    """Stands in for the ``tensorrt`` module: plans resolve by their sha256 to ``FakePlan``s (a ``(graph,
    profiles)`` pair will do). ``on_enqueue(stream, scratch pointer)``, if given, is called at every accepted
    enqueue — with a real ``Cuda``, to put one real node into a stream capture of a plan that does nothing."""

    __version__ = "fake"

    class Logger:
        WARNING = 2

        def __init__(self, level: int = 2) -> None:
            self.level = level

    class ExecutionContextAllocationStrategy:
        USER_MANAGED = "user-managed"

    def __init__(
        self,
        cuda: Cuda,
        plans: Mapping[str, FakePlan | tuple[Path | None, list[FakeProfile]]],
        on_enqueue: Callable[[int, int], None] | None = None,
    ) -> None:
        self.cuda = cuda
        self.plans = {digest: FakePlan(*plan) for digest, plan in plans.items()}
        self.on_enqueue = on_enqueue
        self.engines: list[FakeEngine] = []  # every plan deserialized, in order

    def Runtime(self, logger: Any) -> FakeTensorRT:
        return self

    def deserialize_cuda_engine(self, plan: bytes) -> FakeEngine:
        digest = hashlib.sha256(plan).hexdigest()
        known = self.plans.get(digest)
        if known is None:
            raise CudaError(f"fake TensorRT: no plan with sha256 {digest} was given to the fake")
        engine = FakeEngine(self, known)
        self.engines.append(engine)
        return engine
