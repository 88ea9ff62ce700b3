"""The graphs an engine set is made of, and one typed description of each (docs/ARCHITECTURE.md §4).

Everything a stage needs to know about a component that is not model code lives here: its engine contract,
whether it is built per resolution bucket, which checkpoint folders feed it, which runtime buffers its tensors
share, and which role it plays in a request. Export (wrappers, example inputs), the builder, profiles and both
backends read these specs; none of them spells a component's name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType

from ideogram_trt.core import contracts as io
from ideogram_trt.core.contracts import EngineContract
from ideogram_trt.core.errors import InputError


class _Name(str, Enum):
    """A name that formats as its value: f"{Component.DIT_COND}" is "dit_cond" (a plain ``str, Enum`` gives
    "Component.DIT_COND" on Python 3.11+, which would leak into file names and messages)."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class Component(_Name):
    TEXT_ENCODER = "text_encoder"
    DIT_COND = "dit_cond"
    DIT_COND_MASKED = "dit_cond_masked"  # optional: prompts of different lengths batched in one call
    DIT_UNCOND = "dit_uncond"
    VAE_DECODER = "vae_decoder"
    SAMPLER = "sampler"  # TensorRT sets only: written as ONNX directly, not exported from the checkpoint

    @property
    def spec(self) -> ComponentSpec:
        return SPECS[self]


class Part(_Name):
    """Folders of a release checkpoint (docs/MODEL.md §1.2) whose weights end up in a graph."""

    TRANSFORMER = "transformer"
    UNCONDITIONAL_TRANSFORMER = "unconditional_transformer"
    TEXT_ENCODER = "text_encoder"
    VAE = "vae"


def _frozen(mapping: dict[str, str] | None = None) -> Mapping[str, str]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class ComponentSpec:
    component: Component
    contract: EngineContract
    # The role in a request: the masked DiT stands in for dit_cond (same calibration table, same quant plan).
    serves: Component
    # One optimization profile (or plan) per resolution bucket; the text encoder is bucket-independent.
    per_bucket: bool
    # Checkpoint folders whose weights this graph holds (the text encoder ends with the DiT's text projection,
    # docs/MODEL.md §4.9); their digests make the export's fingerprint.
    parts: tuple[Part, ...]
    # Exported from the checkpoint with PyTorch (the sampler is written as ONNX by the builder instead).
    exported: bool
    # Exported by `ideogram-trt export` / built by `build-engines` unless --components says otherwise.
    default: bool
    # The DiTs' RoPE frequencies travel in their sidecar, for the runtime's host-side tables.
    has_rope: bool
    # Runtime device buffers shared between engines, by tensor name: a tensor not listed uses a buffer named
    # like the tensor, so equal names are one buffer (the latents feed both DiTs, the sampler and the VAE).
    buffers: Mapping[str, str] = field(default_factory=_frozen)

    @property
    def part_names(self) -> tuple[str, ...]:
        return tuple(part.value for part in self.parts)

    def buffer(self, tensor: str) -> str:
        return self.buffers.get(tensor, tensor)


_DIT_COND_BUFFERS = _frozen({io.VELOCITY: io.VELOCITY_COND})

SPECS: Mapping[Component, ComponentSpec] = MappingProxyType(
    {
        spec.component: spec
        for spec in (
            ComponentSpec(
                Component.TEXT_ENCODER,
                io.TEXT_ENCODER,
                Component.TEXT_ENCODER,
                per_bucket=False,
                parts=(Part.TEXT_ENCODER, Part.TRANSFORMER),
                exported=True,
                default=True,
                has_rope=False,
                # All prompts, padded: not the rows one DiT call reads (those go to text_hidden).
                buffers=_frozen({io.TEXT_HIDDEN: "encoded"}),
            ),
            ComponentSpec(
                Component.DIT_COND,
                io.DIT_COND,
                Component.DIT_COND,
                per_bucket=True,
                parts=(Part.TRANSFORMER,),
                exported=True,
                default=True,
                has_rope=True,
                buffers=_DIT_COND_BUFFERS,
            ),
            ComponentSpec(
                Component.DIT_COND_MASKED,
                io.DIT_COND_MASKED,
                Component.DIT_COND,
                per_bucket=True,
                parts=(Part.TRANSFORMER,),
                exported=True,
                default=False,
                has_rope=True,
                buffers=_DIT_COND_BUFFERS,
            ),
            ComponentSpec(
                Component.DIT_UNCOND,
                io.DIT_UNCOND,
                Component.DIT_UNCOND,
                per_bucket=True,
                parts=(Part.UNCONDITIONAL_TRANSFORMER,),
                exported=True,
                default=True,
                has_rope=True,
                # Its RoPE tables cover the image tokens only (no text), so they differ from dit_cond's.
                buffers=_frozen(
                    {
                        io.VELOCITY: io.VELOCITY_UNCOND,
                        io.ROPE_COS: f"{io.ROPE_COS}_uncond",
                        io.ROPE_SIN: f"{io.ROPE_SIN}_uncond",
                    }
                ),
            ),
            ComponentSpec(
                Component.VAE_DECODER,
                io.VAE_DECODER,
                Component.VAE_DECODER,
                per_bucket=True,
                parts=(Part.VAE,),
                exported=True,
                default=True,
                has_rope=False,
            ),
            ComponentSpec(
                Component.SAMPLER,
                io.SAMPLER,
                Component.SAMPLER,
                per_bucket=True,
                parts=(),
                exported=False,
                default=False,
                has_rope=False,
            ),
        )
    }
)

DEFAULT_COMPONENTS: tuple[Component, ...] = tuple(c for c in Component if SPECS[c].default)
EXPORTED_COMPONENTS: tuple[Component, ...] = tuple(c for c in Component if SPECS[c].exported)


def parse_components(text: str) -> tuple[Component, ...]:
    """``--components``: comma-separated names of exported components, each known, none twice."""
    chosen: list[Component] = []
    for name in (item.strip() for item in text.split(",")):
        if not name:
            continue
        try:
            component = Component(name)
        except ValueError:
            component = None
        if component not in EXPORTED_COMPONENTS:
            known = ", ".join(c.value for c in EXPORTED_COMPONENTS)
            raise InputError(f"unknown component {name!r}: use one of {known}")
        if component not in chosen:
            chosen.append(component)
    return tuple(chosen)
