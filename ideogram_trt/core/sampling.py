"""The LogitNormal Euler loop with asymmetric CFG (spec §5.2–5.3), written once for every backend.

Latents, velocities, the guidance blend and the update stay float32 (sglang: "wrapping the full loop in bf16
autocast collapses latent variance"). The velocity functions are the engines (or PyTorch modules); they may take
any array type that supports ``+``, ``*`` and ``-`` (numpy arrays, torch tensors).
"""

from __future__ import annotations

from collections.abc import Callable
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


def guided_velocity(v_cond: A, v_uncond: A | None, guidance: float) -> A:
    """v = g·v_cond + (1 − g)·v_uncond; with g = 1 (or no unconditional DiT) v = v_cond."""
    if v_uncond is None or guidance == 1.0:
        return v_cond
    return guidance * v_cond + (1.0 - guidance) * v_uncond  # type: ignore[return-value]


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
    for j in range(schedule.steps):
        t, g, dt = float(schedule.t[j]), float(schedule.guidance[j]), float(schedule.dt[j])
        v_cond = cond(z, t)
        v_uncond = uncond(z, t) if (uncond is not None and g != 1.0) else None
        z = z + guided_velocity(v_cond, v_uncond, g) * dt  # type: ignore[assignment]
        if on_step is not None:
            on_step(j, z)
    return z
