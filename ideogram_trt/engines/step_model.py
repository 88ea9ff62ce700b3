"""A modeled — not measured — time per engine, per DiT step and per request, from the plans' anatomy.

Per layer (docs/ARCHITECTURE.md §14; docs/BENCHMARKS.md §6 says what this leaves out)::

    time = max(FLOPs / rate(class, precision), bytes / memory bandwidth) + launch floor

GEMMs and convolutions run at the card's FP8 rate when their inputs are FP8 and at its bf16 rate otherwise; fused
attention at its attention rate; every other kernel is bound by memory alone. FLOPs and bytes are the anatomy's
polynomials (``engines.layer_cost``) bound to a bucket, a prompt length and a batch. No TensorRT engine runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ideogram_trt.core.buckets import Bucket
from ideogram_trt.core.cards import Rates
from ideogram_trt.core.components import Component
from ideogram_trt.core.errors import InputError
from ideogram_trt.core.schedule import Preset
from ideogram_trt.engines.anatomy import EngineAnatomy, LayerClass
from ideogram_trt.engines.layer_cost import UnresolvedSymbol

# The breakdown's groups: what the time of a kernel class is spent on.
GROUPS = {
    LayerClass.GEMM: "gemm", LayerClass.DEQUANT_GEMM: "gemm", LayerClass.CONV: "gemm",
    LayerClass.ATTENTION: "attention", LayerClass.DEQUANT: "dequant",
    LayerClass.ELEMENTWISE: "elementwise", LayerClass.REFORMAT: "elementwise",
}  # fmt: skip
BREAKDOWN = ("gemm", "attention", "elementwise", "dequant", "launch")
UNCOND_STANDIN = f"{Component.DIT_COND.value}@T=0"  # a set without an unconditional plan: the same blocks, no text


@dataclass(frozen=True)
class LayerTime:
    name: str
    kind: LayerClass
    precision: str
    block: int | None
    flops: float
    bytes: float
    seconds: float  # without the launch floor
    bound: str  # "compute" or "memory"


def layer_time(kind: LayerClass, precision: str, flops: float, moved: float, rates: Rates) -> tuple[float, str]:
    """Seconds of one kernel without its launch floor, and what bounds it."""
    fp8 = precision == "FP8"  # every activation input FP8 (a mixed BFloat16+FP8 kernel runs at the bf16 rate)
    if kind is LayerClass.ATTENTION:
        rate = rates.attention_fp8_tflops if fp8 else rates.attention_bf16_tflops
    elif kind in (LayerClass.GEMM, LayerClass.DEQUANT_GEMM, LayerClass.CONV):
        rate = rates.fp8_tflops if fp8 else rates.bf16_tflops
    else:
        rate = 0.0
    compute = flops / (rate * 1e12) if rate and flops else 0.0
    memory = moved / (rates.memory_tbps * 1e12)
    return (compute, "compute") if compute >= memory else (memory, "memory")


@dataclass
class EngineTime:
    """One run of one engine at one set of sizes."""

    engine: str
    layers: list[LayerTime] = field(default_factory=list)
    launch_us: float = 0.0
    unresolved: int = 0  # tensors whose size the graph did not give (counted as zero bytes)

    @property
    def kernels(self) -> int:
        return len(self.layers)

    @property
    def breakdown(self) -> dict[str, float]:
        """Seconds per group, launch floors apart."""
        found = dict.fromkeys(BREAKDOWN, 0.0)
        for layer in self.layers:
            found[GROUPS[layer.kind]] += layer.seconds
        found["launch"] = self.kernels * self.launch_us * 1e-6
        return found

    @property
    def seconds(self) -> float:
        return sum(self.breakdown.values())

    @property
    def flops(self) -> float:
        return sum(layer.flops for layer in self.layers)

    @property
    def gemm_flops(self) -> float:
        return sum(layer.flops for layer in self.layers if GROUPS[layer.kind] == "gemm")

    def ceiling_seconds(self, rates: Rates) -> float:
        """The kernel-ceiling floor: GEMM and attention FLOPs at the card's rates, nothing else."""
        total = 0.0
        for layer in self.layers:
            if GROUPS[layer.kind] in ("gemm", "attention"):
                total += layer_time(layer.kind, layer.precision, layer.flops, 0.0, rates)[0]
        return total

    def non_gemm_bytes(self) -> float:
        return sum(layer.bytes for layer in self.layers if GROUPS[layer.kind] not in ("gemm", "attention"))


def symbol_values(graph: Component, bucket: Bucket | None, text_tokens: int, batch: int = 1) -> dict[str, int]:
    """The shape symbols of ``graph``'s export bound for one run: ``L`` is the DiT's sequence (text + image for
    the conditional passes, image alone for the unconditional one)."""
    values = {"B": batch, "T": text_tokens}
    if bucket is not None:
        gh, gw = bucket.grid
        values |= {"N": gh * gw, "GH": gh, "GW": gw, "H": bucket.height, "W": bucket.width}
        values["L"] = values["N"] if graph is Component.DIT_UNCOND else values["N"] + text_tokens
    return values


def model_engine(anatomy: EngineAnatomy, values: Mapping[str, int], rates: Rates, bucket: str | None) -> EngineTime:
    """The modeled time of the profile serving ``bucket``, its sizes bound by ``values``."""
    profile = anatomy.profile_for(bucket)
    result = EngineTime(anatomy.engine, launch_us=rates.launch_us)
    for layer, cost in anatomy.profile_layers(profile.index):
        kind = layer.kind
        if not kind.runs_kernel:
            continue
        flops = moved = 0.0
        if cost is None:
            result.unresolved += 1
        else:
            result.unresolved += cost.unresolved
            try:
                flops = cost.flops.evaluate(values)
            except UnresolvedSymbol:
                result.unresolved += 1
            try:
                moved = cost.bytes.evaluate(values)
            except UnresolvedSymbol:
                result.unresolved += 1
        seconds, bound = layer_time(kind, layer.precision, flops, moved, rates)
        result.layers.append(LayerTime(layer.name, kind, layer.precision, layer.block, flops, moved, seconds, bound))
    return result


@dataclass(frozen=True)
class RequestTime:
    """One image of a preset: the text encoder once, the DiT passes of every step, the VAE once."""

    text_encoder: EngineTime | None
    cond: EngineTime
    uncond: EngineTime | None
    vae: EngineTime | None
    steps: int
    uncond_steps: int
    uncond_modeled_as: str = ""  # the plan the unconditional passes were modeled with (UNCOND_STANDIN: none of its own)

    @property
    def runs(self) -> list[tuple[EngineTime, int]]:
        """Each engine of the request with how often it runs."""
        runs = [(self.text_encoder, 1), (self.cond, self.steps), (self.uncond, self.uncond_steps), (self.vae, 1)]
        return [(engine, count) for engine, count in runs if engine is not None]

    @property
    def step_seconds(self) -> float:
        """A step with guidance: the conditional and the unconditional pass."""
        return self.cond.seconds + (self.uncond.seconds if self.uncond is not None else 0.0)

    @property
    def seconds(self) -> float:
        return sum(engine.seconds * count for engine, count in self.runs)

    def breakdown(self) -> dict[str, float]:
        """Seconds per group over the whole request."""
        found = dict.fromkeys(BREAKDOWN, 0.0)
        for engine, count in self.runs:
            for group, seconds in engine.breakdown.items():
                found[group] += seconds * count
        return found

    def ceiling_seconds(self, rates: Rates) -> float:
        return sum(engine.ceiling_seconds(rates) * count for engine, count in self.runs)

    @property
    def flops(self) -> float:
        return sum(engine.flops * count for engine, count in self.runs)


def model_request(
    anatomies: Mapping[Component, EngineAnatomy],
    bucket: Bucket,
    preset: Preset,
    text_tokens: int,
    rates: Rates,
) -> RequestTime:
    """``anatomies``: per component, the plan serving ``bucket``. Without a ``dit_uncond`` plan the unconditional
    passes are modeled with the conditional plan at ``T = 0`` (the same blocks over the image tokens alone)."""
    if Component.DIT_COND not in anatomies:
        raise InputError("the engine set has no dit_cond plan: a request cannot be modeled without it")

    def run(graph: Component, values: dict[str, int]) -> EngineTime | None:
        anatomy = anatomies.get(graph)
        per_bucket = graph.spec.per_bucket
        return None if anatomy is None else model_engine(anatomy, values, rates, bucket.name if per_bucket else None)

    cond = run(Component.DIT_COND, symbol_values(Component.DIT_COND, bucket, text_tokens))
    assert cond is not None
    uncond_steps = sum(1 for g in preset.guidance if g != 1.0)
    modeled_as = Component.DIT_UNCOND.value
    if Component.DIT_UNCOND in anatomies:
        uncond = run(Component.DIT_UNCOND, symbol_values(Component.DIT_UNCOND, bucket, text_tokens))
    else:
        uncond, modeled_as = run(Component.DIT_COND, symbol_values(Component.DIT_COND, bucket, 0)), UNCOND_STANDIN
    return RequestTime(
        text_encoder=run(Component.TEXT_ENCODER, symbol_values(Component.TEXT_ENCODER, None, text_tokens)),
        cond=cond,
        uncond=uncond if uncond_steps else None,
        vae=run(Component.VAE_DECODER, symbol_values(Component.VAE_DECODER, bucket, text_tokens)),
        steps=preset.steps,
        uncond_steps=uncond_steps,
        uncond_modeled_as=modeled_as if uncond_steps else "",
    )
