"""The fake TensorRT's own rules (ideogram_trt.testing.fake_tensorrt) on a plan without a graph — what
tools/bench_host_overhead.py runs the backend over — and FakeCuda's copies, counts and captures."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from ideogram_trt.runtime.cuda import CudaError
from ideogram_trt.testing.fake_tensorrt import SCRATCH_BYTES, FakeCuda, FakePlan, FakeTensorRT

PLAN = b"a plan"
# Two buckets' profiles: 256x256 (256 tokens) and 256x384 (384 tokens), batch 1 to 2.
PROFILES = [
    {"latents": ((1, 256, 128), (1, 256, 128), (2, 256, 128))},
    {"latents": ((1, 384, 128), (1, 384, 128), (2, 384, 128))},
]


def test_profiles_decide_which_shapes_are_taken_and_enqueues_need_everything_set() -> None:
    cuda = FakeCuda()
    stream = cuda.stream()
    module = FakeTensorRT(cuda, {hashlib.sha256(PLAN).hexdigest(): FakePlan(None, PROFILES)})
    engine = module.Runtime(module.Logger(module.Logger.WARNING)).deserialize_cuda_engine(PLAN)
    context = engine.create_execution_context(module.ExecutionContextAllocationStrategy.USER_MANAGED)
    assert engine.num_optimization_profiles == 2 and context.active_optimization_profile == 0
    assert engine.get_tensor_profile_shape("latents", 1) == list(PROFILES[1]["latents"])

    assert not context.set_input_shape("latents", (1, 384, 128))  # profile 1's shape, on profile 0
    assert not context.set_input_shape("latents", (3, 256, 128))  # batch beyond the max
    assert context.set_input_shape("latents", (2, 256, 128))
    assert not context.set_optimization_profile_async(2, stream)  # there is no profile 2
    assert context.set_optimization_profile_async(1, stream) and context.shapes == {}  # switching drops shapes
    assert not context.set_input_shape("latents", (1, 256, 128)) and context.set_input_shape("latents", (1, 384, 128))
    assert context.refused == [
        (0, "latents", (1, 384, 128)),
        (0, "latents", (3, 256, 128)),
        (1, "latents", (1, 256, 128)),
    ]

    scratch = cuda.malloc(SCRATCH_BYTES)
    context.set_device_memory(scratch, SCRATCH_BYTES - 1)
    assert not context.execute_async_v3(stream)  # less scratch than the plan asks for
    context.set_device_memory(scratch, SCRATCH_BYTES)
    assert not context.execute_async_v3(stream)  # no address for the input yet
    assert context.set_tensor_address("latents", cuda.malloc(2 * 384 * 128 * 4))
    assert context.set_tensor_address("anything", cuda.malloc(4))  # a plan without a graph knows only its inputs
    enqueued: list[tuple[int, int]] = []
    module.on_enqueue = lambda stream, pointer: enqueued.append((stream, pointer))
    assert context.execute_async_v3(stream) and engine.enqueues == 1 and enqueued == [(stream, scratch)]
    assert engine.runs == 0 and engine.ran_on == []  # nothing to run: it enqueued no work
    assert cuda.counts["malloc"] == 3 and cuda.counts["launch"] == 0

    with pytest.raises(CudaError, match="no plan with sha256"):
        module.deserialize_cuda_engine(b"another plan")


def test_fake_cuda_copies_read_their_source_when_they_run_and_everything_is_counted() -> None:
    cuda = FakeCuda()
    stream = cuda.stream()
    staging, out = cuda.host_array((4,), np.float32), cuda.host_array((4,), np.float32)
    device, other = cuda.malloc(16), cuda.malloc(16)
    cuda.begin_capture(stream)
    with pytest.raises(CudaError, match="nested"):
        cuda.begin_capture(stream)
    cuda.upload(device, staging, stream)
    cuda.copy(other, device, 16, stream)
    cuda.download(out, other, stream)
    graph = cuda.end_capture(stream)
    assert not out.any()  # captured, not run
    for value in (1.0, 5.0):  # each replay reads the page-locked staging as it is then
        staging[:] = value
        cuda.launch(graph, stream)
        cuda.synchronize(stream)
        assert out.tolist() == [value] * 4
    cuda.destroy_graph(graph)
    cuda.free(other)
    assert cuda.counts == {
        "malloc": 2, "free": 1, "host": 2, "sync": 2, "capture": 1, "launch": 2, "destroy": 1, "event": 0,
    }  # fmt: skip
    start, end = cuda.event(), cuda.event()
    cuda.record(start, stream)
    cuda.record(end, stream)
    assert cuda.elapsed_ms(start, end) >= 0.0 and cuda.counts["event"] == 2
