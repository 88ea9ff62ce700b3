"""The LogitNormal Euler loop with asymmetric CFG (docs/MODEL.md §5.2–5.3): the one definition of a sampling step.

``steps`` says what each step does (its time, guidance, step size, and whether the unconditional DiT runs),
``euler_update`` is the update itself. The host loop (``denoise``: ONNX Runtime and PyTorch) is written with
both; the TensorRT backend walks ``steps`` and runs the update as the sampler engine, whose ONNX graph
(``engines.sampler``) performs ``euler_update``'s operations in the same order — tests/test_sampling.py checks
the three agree on random inputs.

Latents, velocities, the guidance blend and the update stay float32 (sglang: "wrapping the full loop in bf16
autocast collapses latent variance"). The velocity functions are the engines (or PyTorch modules); they may take
any array type that supports ``+``, ``*`` and ``-`` (numpy arrays, torch tensors).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol, TypeVar

from ideogram_trt.core.schedule import Schedule


class ArrayLike(Protocol):
    def __add__(self, other: object, /) -> ArrayLike: ...
    def __mul__(self, other: object, /) -> ArrayLike: ...
    def __rmul__(self, other: object, /) -> ArrayLike: ...


A = TypeVar("A", bound=ArrayLike)

# velocity(latents, t) → v, with t the float32 model time of the step (engines cast it to their dtype).
VelocityFn = Callable[[A, float], A]
StepCallback = Callable[[int, A], None]


@dataclass(frozen=True)
class Step:
    index: int
    t: float  # model time of the step (float32 value)
    guidance: float
    dt: float  # s - t, to the next step's time

    @property
    def needs_uncond(self) -> bool:
        """Guidance 1 blends to v_cond alone: the unconditional DiT is skipped."""
        return self.guidance != 1.0


def steps(schedule: Schedule) -> Iterator[Step]:
    for j in range(schedule.steps):
        yield Step(j, float(schedule.t[j]), float(schedule.guidance[j]), float(schedule.dt[j]))


def guided_velocity(v_cond: A, v_uncond: A | None, guidance: float) -> A:
    """v = g·v_cond + (1 − g)·v_uncond; with g = 1 (or no unconditional DiT) v = v_cond."""
    if v_uncond is None or guidance == 1.0:
        return v_cond
    return guidance * v_cond + (1.0 - guidance) * v_uncond  # type: ignore[return-value]


def euler_update(z: A, v_cond: A, v_uncond: A | None, guidance: float, dt: float) -> A:
    """z + v·dt with v the guided velocity: the order of operations the sampler graph repeats."""
    return z + guided_velocity(v_cond, v_uncond, guidance) * dt  # type: ignore[return-value]


def denoise(
    latents: A,
    schedule: Schedule,
    cond: VelocityFn[A],
    uncond: VelocityFn[A] | None,
    on_step: StepCallback[A] | None = None,
) -> A:
    """Run every step of ``schedule`` from noise: z ← z + v·(s − t)."""
    if uncond is None and any(g != 1.0 for g in schedule.guidance.tolist()):
        raise ValueError("this schedule uses guidance != 1, which needs the unconditional DiT")
    z = latents
    for step in steps(schedule):
        v_cond = cond(z, step.t)
        v_uncond = uncond(z, step.t) if (uncond is not None and step.needs_uncond) else None
        z = euler_update(z, v_cond, v_uncond, step.guidance, step.dt)
        if on_step is not None:
            on_step(step.index, z)
    return z
