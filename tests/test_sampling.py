"""One sampling step, three implementations: the host loop (``core.sampling.euler_update``, numpy and torch), the
sampler ONNX graph the TensorRT sets run (``engines.sampler``, here in ONNX Runtime), and the TensorRT backend's
loop over it (tests/test_tensorrt_backend.py, ``test_random_guidance_loop_equals_the_host_loop``). They must
give the same float32 update bit for bit, or a change to the guidance blend or the solver made in one place
would silently fork the backends."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from ideogram_trt.core import contracts as io
from ideogram_trt.core.components import Component
from ideogram_trt.core.sampling import euler_update, steps
from ideogram_trt.core.schedule import get_preset, preset_schedule
from ideogram_trt.engines.sampler import sampler_model

CHANNELS = 16


def random_step(seed: int, guidance: float) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    shape = (2, 12, CHANNELS)
    return {
        io.LATENTS: rng.standard_normal(shape, dtype=np.float32),
        io.VELOCITY_COND: rng.standard_normal(shape, dtype=np.float32),
        io.VELOCITY_UNCOND: rng.standard_normal(shape, dtype=np.float32),
        io.GUIDANCE: np.array([guidance], dtype=np.float32),
        io.STEP: np.array([rng.uniform(0.001, 0.2)], dtype=np.float32),
    }


@pytest.fixture(scope="module")
def sampler_session() -> ort.InferenceSession:
    return ort.InferenceSession(sampler_model(CHANNELS).SerializeToString())


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("guidance", [1.0, 3.0, 7.0, None], ids=["g1", "g3", "g7", "random"])
def test_host_update_equals_the_sampler_graph(sampler_session, seed: int, guidance: float | None) -> None:
    g = float(np.float32(np.random.default_rng(100 + seed).uniform(-2.0, 12.0))) if guidance is None else guidance
    feeds = random_step(seed, g)
    (graph,) = sampler_session.run(None, feeds)
    z, v_c, v_u = feeds[io.LATENTS], feeds[io.VELOCITY_COND], feeds[io.VELOCITY_UNCOND]
    dt = float(feeds[io.STEP][0])
    # With g = 1 the host skips the unconditional DiT (v_uncond None); the graph multiplies its buffer by 0.
    host = euler_update(z, v_c, None if g == 1.0 else v_u, g, dt)
    assert host.dtype == np.float32
    np.testing.assert_array_equal(host, graph)
    as_torch = euler_update(
        *(torch.from_numpy(a) for a in (z, v_c)), None if g == 1.0 else torch.from_numpy(v_u), g, dt
    )
    np.testing.assert_array_equal(as_torch.numpy(), graph)
    # And the arithmetic itself, written out here: v = g·v_c + (1 − g)·v_u, then z + v·dt, in float32.
    g32, dt32 = np.float32(g), np.float32(dt)
    expected = z + (g32 * v_c + (np.float32(1) - g32) * v_u) * dt32
    np.testing.assert_allclose(graph, expected, rtol=0, atol=1e-5)


def test_the_sampler_graph_has_the_sampler_contract() -> None:
    model = sampler_model(CHANNELS)
    contract = Component.SAMPLER.spec.contract

    def shape(value) -> list:
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    assert [i.name for i in model.graph.input] == list(contract.input_names)
    assert [o.name for o in model.graph.output] == list(contract.output_names)
    assert [shape(i) for i in model.graph.input] == [["B", "N", 16]] * 3 + [[1], [1]]


def test_steps_walk_the_schedule() -> None:
    schedule = preset_schedule(get_preset("V4_TURBO_12"), 256, 384)
    walked = list(steps(schedule))
    assert [s.index for s in walked] == list(range(12))
    assert [s.guidance for s in walked] == [7.0] * 11 + [3.0]
    assert [s.needs_uncond for s in walked] == [True] * 12
    assert [s.t for s in walked] == schedule.t.tolist() and [s.dt for s in walked] == schedule.dt.tolist()
    fast = preset_schedule(get_preset("V4_FAST_20"), 256, 384)
    assert not any(s.needs_uncond for s in steps(fast))
