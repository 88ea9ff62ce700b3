"""LogitNormal flow-matching schedule and the Ideogram 4 presets (docs/MODEL.md §5).

Model time t runs from 0 (noise) to 1 (clean). The schedule is computed in float64 on the host and handed to
the loop as float32, as every reference does; guidance weights are stored in chronological order (index 0 is
the first, noisiest step), the diffusers convention (docs/MODEL.md §5.3; the official tables are in loop-index order).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from statistics import NormalDist

import numpy as np

from ideogram_trt.core.errors import InputError

# docs/MODEL.md §5.1: the schedule is clamped to the log-SNR range [-15, 18].
LOGSNR_MIN = -15.0
LOGSNR_MAX = 18.0
T_MIN = 1.0 / (1.0 + math.exp(0.5 * LOGSNR_MAX))  # 1.2339458e-4, the noise end
T_MAX = 1.0 / (1.0 + math.exp(0.5 * LOGSNR_MIN))  # 0.99944722, the clean end

# docs/MODEL.md §5.1: the mean shifts by half the log pixel ratio against this resolution.
KNOWN_RESOLUTION = (512, 512)


class Terminal(str, Enum):
    """Where the last Euler step lands (docs/MODEL.md §5.2, §10 difference 4)."""

    T_MAX = "t_max"  # official code, sglang, mflux: the clamped schedule end, t = 0.99944722
    ZERO = "zero"  # diffusers and ComfyUI: integrate to t = 1 (sigma = 0); the last step is 5.53e-4 longer


DEFAULT_TERMINAL = Terminal.T_MAX


class PresetName(str, Enum):
    V4_QUALITY_48 = "V4_QUALITY_48"
    V4_DEFAULT_20 = "V4_DEFAULT_20"
    V4_TURBO_12 = "V4_TURBO_12"
    V4_FAST_20 = "V4_FAST_20"
    V4_INSTANT_8 = "V4_INSTANT_8"


@dataclass(frozen=True)
class Preset:
    """A named sampling recipe: steps, chronological guidance, and the LogitNormal mean and spread."""

    name: PresetName
    steps: int
    guidance: tuple[float, ...]
    mu: float
    std: float

    def __post_init__(self) -> None:
        if len(self.guidance) != self.steps:
            raise ValueError(f"{self.name.value}: {len(self.guidance)} guidance values for {self.steps} steps")

    @property
    def needs_unconditional(self) -> bool:
        """Guidance 1 everywhere means v = v_cond: the CFG-distilled checkpoints have no unconditional DiT."""
        return any(g != 1.0 for g in self.guidance)


def _guidance(main: int, polish: int) -> tuple[float, ...]:
    # docs/MODEL.md §5.4: gw 7 for the main steps, 3 for the final polish steps (chronological order).
    return (7.0,) * main + (3.0,) * polish


PRESETS: dict[PresetName, Preset] = {
    p.name: p
    for p in (
        Preset(PresetName.V4_QUALITY_48, 48, _guidance(45, 3), mu=0.0, std=1.5),
        Preset(PresetName.V4_DEFAULT_20, 20, _guidance(18, 2), mu=0.0, std=1.75),
        Preset(PresetName.V4_TURBO_12, 12, _guidance(11, 1), mu=0.5, std=1.75),
        Preset(PresetName.V4_FAST_20, 20, (1.0,) * 20, mu=0.0, std=1.75),
        Preset(PresetName.V4_INSTANT_8, 8, (1.0,) * 8, mu=0.0, std=1.75),
    )
}

DEFAULT_PRESET = PresetName.V4_DEFAULT_20


def get_preset(name: str | PresetName) -> Preset:
    """Look a preset up by name (case-insensitive), with a clear error listing the known ones."""
    key = name.value if isinstance(name, PresetName) else str(name).strip().upper()
    for preset_name, preset in PRESETS.items():
        if preset_name.value == key:
            return preset
    known = ", ".join(p.value for p in PresetName)
    raise InputError(f"unknown preset {name!r}: use one of {known}")


def resolution_mean(mu: float, height: int, width: int) -> float:
    """docs/MODEL.md §5.1 get_schedule_for_resolution: mean = mu + 0.5·ln(H·W / 512²)."""
    return mu + 0.5 * math.log((height * width) / (KNOWN_RESOLUTION[0] * KNOWN_RESOLUTION[1]))


def _schedule_value(u: float, mean: float, std: float) -> float:
    """sched(u) = clamp(1 − expit(mean + std·Φ⁻¹(u)), t_min, t_max) in float64; sched(0)=t_max, sched(1)=t_min."""
    if u <= 0.0:
        return T_MAX
    if u >= 1.0:
        return T_MIN
    y = mean + std * NormalDist().inv_cdf(u)
    t = 1.0 - 1.0 / (1.0 + math.exp(-y))
    return min(max(t, T_MIN), T_MAX)


@dataclass(frozen=True)
class Schedule:
    """Per chronological step j: the time fed to the DiTs, the time stepped to, the Euler step and the guidance.

    All float32 arrays of length ``steps``; the loop is ``z += v · dt[j]`` with ``v = g·v_cond + (1−g)·v_uncond``.
    ``t`` is fed to every DiT as float32: a bf16 DiT rounds it to bf16 itself, inside the graph, as every reference
    does (docs/MODEL.md §5.2; test_tensorrt_build.py checks the exported graphs against docs/MODEL.md §5.5's bf16
    column).
    """

    t: np.ndarray
    t_next: np.ndarray
    dt: np.ndarray
    guidance: np.ndarray
    terminal: Terminal

    @property
    def steps(self) -> int:
        return int(self.t.shape[0])


def logit_normal_schedule(
    steps: int,
    mu: float,
    std: float,
    height: int,
    width: int,
    guidance: tuple[float, ...] | list[float],
    terminal: Terminal = DEFAULT_TERMINAL,
) -> Schedule:
    """The resolution-aware LogitNormal schedule of docs/MODEL.md §5.1–5.2 for one image size."""
    if steps < 1:
        raise InputError(f"steps must be at least 1, got {steps}")
    if len(guidance) != steps:
        raise InputError(f"guidance schedule has {len(guidance)} values for {steps} steps: give one per step")
    mean = resolution_mean(mu, height, width)
    # The official sampler's step grid is a float32 linspace (docs/MODEL.md §5.1, make_step_intervals); the golden
    # table of docs/MODEL.md §5.5 is reproduced exactly with it, while diffusers' float64 grid moves t by up to 6e-8.
    grid = np.linspace(0.0, 1.0, steps + 1, dtype=np.float32).astype(np.float64)
    # values[k] decreases in k, so chronological step j runs from values[S-j] to values[S-1-j].
    values = np.array([_schedule_value(float(u), mean, std) for u in grid], dtype=np.float64)
    t64 = values[::-1][:-1].copy()
    s64 = values[::-1][1:].copy()
    if terminal is Terminal.ZERO:
        s64[-1] = 1.0
    t = t64.astype(np.float32)
    s = s64.astype(np.float32)
    # The official loop forms the step from the float32 schedule ("schedule_deltas[i] = sched[i] - sched[i+1]").
    dt = (s - t).astype(np.float32)
    return Schedule(t=t, t_next=s, dt=dt, guidance=np.asarray(guidance, dtype=np.float32), terminal=Terminal(terminal))


def preset_schedule(
    preset: str | PresetName | Preset, height: int, width: int, terminal: Terminal = DEFAULT_TERMINAL
) -> Schedule:
    p = preset if isinstance(preset, Preset) else get_preset(preset)
    return logit_normal_schedule(p.steps, p.mu, p.std, height, width, p.guidance, terminal)
