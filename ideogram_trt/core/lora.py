"""LoRA adapters on the conditional DiT (docs/LORA.md): read a file in either common layout, check it against the
model, normalize it to our module names, and stack adapters into the engine inputs of a LoRA-ready DiT.

A LoRA-ready DiT computes, in each targeted linear of block ``l``, ``y = base(x) + (x · A[l]ᵀ) · B[l]ᵀ``; its
engine inputs hold the factors transposed, as the two GEMMs read them: ``Aᵀ`` [layers, in, rank] and ``Bᵀ``
[layers, rank, out] (docs/LORA.md §2). An adapter is therefore
data: switching it uploads new factors, and the plan and its FP8 weights never change. Several adapters with
weights are one update of concatenated rank (``B`` columns carry each adapter's scale times its weight); no
adapter is rank 1 of zeros, which adds exactly zero.

Layouts read (docs/LORA.md §1):
- diffusers / peft: ``[transformer.]layers.N.attention.to_q.lora_A.weight`` … with ``to_q/to_k/to_v``,
  ``to_out.0``, ``feed_forward.w1/w2/w3``, ``adaln_modulation``; scale ``lora_alpha / r`` from the file's
  ``lora_adapter_metadata`` where present, else 1 (what diffusers assumes for a file without it);
- ai-toolkit / kohya: ``diffusion_model.`` (or ``conditional_transformer.``) prefix, fused ``attention.qkv``,
  ``attention.o``, ``lora_down`` / ``lora_up``, scale ``alpha / rank`` from each module's ``.alpha``.
Separate q, k and v adapters become one update of the fused ``qkv`` projection, exactly: their down factors are
stacked and their up factors placed block-diagonally, so ``B · A`` equals the three updates stacked by rows.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ideogram_trt.core.components import _Name
from ideogram_trt.core.contracts import DType, EngineContract, TensorSpec
from ideogram_trt.core.digest import file_digest
from ideogram_trt.core.errors import InputError
from ideogram_trt.core.safetensors_file import read_safetensors

LORA_RANK = "LR"  # the shape symbol of the rank axis (core.shapes)
INPUT_PREFIX = "lora_"  # every side-path engine input's name starts so
MAX_ENGINE_RANK = 1024  # --lora-rank's ceiling: factors of rank 1024 are 7 GB per adapter at full size
METADATA_KEY = "lora_adapter_metadata"  # where diffusers' save_lora_weights keeps the peft config
FACTOR_DTYPES = ("float32", "float16", "bfloat16")  # what adapter files may store


class LoraTarget(_Name):
    """A block linear an adapter may update: its native name under ``layers.N.`` (docs/MODEL.md §4.2)."""

    QKV = "attention.qkv"
    O = "attention.o"  # noqa: E741 (the release's name)
    W1 = "feed_forward.w1"
    W2 = "feed_forward.w2"
    W3 = "feed_forward.w3"
    ADALN = "adaln_modulation"

    @property
    def slot(self) -> str:
        return self.value.rsplit(".", 1)[-1]

    @property
    def down_input(self) -> str:
        """The engine input holding every block's Aᵀ [layers, in, rank]."""
        return f"{INPUT_PREFIX}{self.slot}_a"

    @property
    def up_input(self) -> str:
        """The engine input holding every block's Bᵀ [layers, rank, out]."""
        return f"{INPUT_PREFIX}{self.slot}_b"


ALL_TARGETS: tuple[LoraTarget, ...] = tuple(LoraTarget)

# diffusers' names for the same linears: q, k and v are the three row blocks of the fused qkv.
_DIFFUSERS_NAMES: dict[str, tuple[LoraTarget, int | None]] = {
    "attention.to_q": (LoraTarget.QKV, 0),
    "attention.to_k": (LoraTarget.QKV, 1),
    "attention.to_v": (LoraTarget.QKV, 2),
    "attention.to_out.0": (LoraTarget.O, None),
}
_PREFIXES = ("transformer.", "diffusion_model.", "conditional_transformer.")
_KEY = re.compile(r"^layers\.(\d+)\.(.+?)\.(lora_A\.weight|lora_B\.weight|lora_down\.weight|lora_up\.weight|alpha)$")
_DOWN = ("lora_A.weight", "lora_down.weight")
_FIX_OTHER_MODEL = "the adapter was trained for another model or size of Ideogram 4"


@dataclass(frozen=True)
class LoraShape:
    """The sizes of the targeted linears, from the DiT's config: blocks, hidden, SwiGLU and modulation widths."""

    layers: int
    hidden: int
    intermediate: int
    adaln: int

    def widths(self, target: LoraTarget) -> tuple[int, int]:
        """(in, out) of ``target``'s weight [out, in]."""
        d, i = self.hidden, self.intermediate
        return {
            LoraTarget.QKV: (d, 3 * d),
            LoraTarget.O: (d, d),
            LoraTarget.W1: (d, i),
            LoraTarget.W2: (i, d),
            LoraTarget.W3: (d, i),
            LoraTarget.ADALN: (self.adaln, 4 * d),
        }[target]


@dataclass(frozen=True)
class LoraSlots:
    """What a LoRA-ready DiT accepts: ranks 1 … ``max_rank`` on every target of every block."""

    max_rank: int
    shape: LoraShape

    def inputs(self) -> tuple[TensorSpec, ...]:
        """The engine inputs the side path adds, in order: A then B per target."""
        specs = []
        for target in ALL_TARGETS:
            fan_in, fan_out = self.shape.widths(target)
            layers = str(self.shape.layers)
            specs.append(TensorSpec(target.down_input, DType.COMPUTE, (layers, str(fan_in), LORA_RANK)))
            specs.append(TensorSpec(target.up_input, DType.COMPUTE, (layers, LORA_RANK, str(fan_out))))
        return tuple(specs)

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.inputs())

    def to_json(self) -> dict[str, int]:
        s = self.shape
        return {"max_rank": self.max_rank, "layers": s.layers, "hidden": s.hidden, "intermediate": s.intermediate,
                "adaln": s.adaln}  # fmt: skip

    @staticmethod
    def from_json(raw: dict[str, int]) -> LoraSlots:
        shape = LoraShape(raw["layers"], raw["hidden"], raw["intermediate"], raw["adaln"])
        return LoraSlots(raw["max_rank"], shape)


def lora_contract(contract: EngineContract, slots: LoraSlots) -> EngineContract:
    """A conditional DiT's contract with the side path's inputs after its own."""
    return EngineContract((*contract.inputs, *slots.inputs()), contract.outputs)


def check_engine_rank(rank: int) -> int:
    """``--lora-rank``: at least 2 (the exporter traces the rank axis at 2) and at most ``MAX_ENGINE_RANK``."""
    if isinstance(rank, bool) or not isinstance(rank, int) or not 2 <= rank <= MAX_ENGINE_RANK:
        raise InputError(f"--lora-rank {rank!r}: give the largest total adapter rank to serve, 2 to {MAX_ENGINE_RANK}")
    return rank


@dataclass(frozen=True)
class LoraUpdate:
    """One linear's low-rank update ``scale · B · A`` in our names, the scale folded into ``up``."""

    layer: int
    target: LoraTarget
    down: np.ndarray  # float32 [rank, in]
    up: np.ndarray  # float32 [out, rank], times the adapter's scale

    @property
    def rank(self) -> int:
        return int(self.down.shape[0])

    def delta(self) -> np.ndarray:
        """The weight update [out, in] (float64: a reference, not the serving path)."""
        return self.up.astype(np.float64) @ self.down.astype(np.float64)


@dataclass(frozen=True)
class Adapter:
    """A validated adapter file, normalized: its updates by (layer, target)."""

    name: str
    path: Path
    sha256: str
    layout: str  # "diffusers" or "kohya"
    updates: tuple[LoraUpdate, ...]

    @property
    def rank(self) -> int:
        """The rank it takes in a LoRA-ready engine: its largest normalized update (q/k/v fused)."""
        return max(u.rank for u in self.updates)

    @property
    def targets(self) -> set[tuple[int, LoraTarget]]:
        return {(u.layer, u.target) for u in self.updates}


def adapter_name(path: Path) -> str:
    return path.name.removesuffix(".safetensors")


def read_adapter(path: Path, shape: LoraShape, name: str | None = None) -> Adapter:
    """Read ``path`` (safetensors only) and check every tensor against the model ``shape``; refusals name the
    file, the tensor and the fix."""
    path = Path(path)
    file = read_safetensors(path, "LoRA adapter")
    tensors = file.tensors
    if not tensors:
        raise InputError(f"{path}: holds no tensors; give a LoRA adapter file")
    stripped = _strip_prefix(path, tensors)
    layout = "kohya" if any(k.endswith("lora_down.weight") for k in stripped) else "diffusers"
    peft_scale = _peft_scale(path, file.metadata)

    # (layer, module) → {"down", "up", "alpha"} with the original key of each, for messages.
    modules: dict[tuple[int, str], dict[str, tuple[str, np.ndarray]]] = {}
    for key, (original, array) in stripped.items():
        match = _KEY.match(key)
        if match is None:
            raise InputError(
                f"{path}: tensor {original!r} is not a LoRA factor of a DiT block linear; adapters may target "
                f"layers.N.{{{', '.join(t.value for t in ALL_TARGETS)}}} (or diffusers' to_q/to_k/to_v/to_out.0)"
            )
        layer, module, kind = int(match.group(1)), match.group(2), match.group(3)
        role = "alpha" if kind == "alpha" else ("down" if kind in _DOWN else "up")
        entry = modules.setdefault((layer, module), {})
        if role in entry:
            raise InputError(f"{path}: tensors {entry[role][0]!r} and {original!r} are the same factor; keep one")
        entry[role] = (original, array)

    parts: dict[tuple[int, LoraTarget], dict[int | None, tuple[str, np.ndarray, np.ndarray]]] = {}
    for (layer, module), entry in sorted(modules.items()):
        target, part = _target(path, module, entry)
        if layer >= shape.layers:
            key = next(iter(entry.values()))[0]
            raise InputError(
                f"{path}: tensor {key!r} is for block {layer}, but this model has {shape.layers} blocks; "
                f"{_FIX_OTHER_MODEL}"
            )
        down_key, down = _factor(path, entry, "down", module)
        up_key, up = _factor(path, entry, "up", module)
        fan_in, fan_out = shape.widths(target)
        if part is not None:
            fan_out = shape.hidden
        rank = down.shape[0] if down.ndim == 2 else -1
        if down.ndim != 2 or down.shape[1] != fan_in or rank < 1:
            raise InputError(
                f"{path}: tensor {down_key!r} has shape {list(down.shape)}; {module} of this model takes "
                f"[rank, {fan_in}]: {_FIX_OTHER_MODEL}"
            )
        if up.shape != (fan_out, rank):
            raise InputError(
                f"{path}: tensor {up_key!r} has shape {list(up.shape)}, expected [{fan_out}, {rank}] (out × the "
                f"rank of {down_key!r}): {_FIX_OTHER_MODEL}, or its factors do not belong together"
            )
        scale = peft_scale
        if "alpha" in entry:
            scale = _alpha(path, entry["alpha"], rank)
        slots = parts.setdefault((layer, target), {})
        if part in slots or (slots and (part is None) != (None in slots)):
            raise InputError(
                f"{path}: block {layer} has both a fused {target.value} and separate q/k/v adapters; keep one form"
            )
        slots[part] = (module, down.astype(np.float32), (up.astype(np.float64) * scale).astype(np.float32))

    updates = [_fuse(layer, target, slots, shape) for (layer, target), slots in sorted(parts.items(), key=_order)]
    return Adapter(name or adapter_name(path), path, file_digest(path), layout, tuple(updates))


def _order(item: tuple[tuple[int, LoraTarget], object]) -> tuple[int, int]:
    (layer, target), _ = item
    return layer, ALL_TARGETS.index(target)


def _strip_prefix(path: Path, tensors: dict[str, np.ndarray]) -> dict[str, tuple[str, np.ndarray]]:
    """Keys without the one model prefix they share (``transformer.`` …): name → (original name, array)."""
    for key in tensors:
        if key.startswith(("text_encoder.", "unconditional_transformer.")):
            part = key.split(".", 1)[0]
            raise InputError(
                f"{path}: tensor {key!r} adapts the {part.replace('_', ' ')}; LoRA-ready engines carry adapters "
                "of the conditional DiT only (remove those tensors, or merge them into a checkpoint)"
            )
    for prefix in _PREFIXES:
        if any(k.startswith(prefix) for k in tensors):
            return {k.removeprefix(prefix): (k, v) for k, v in tensors.items()}
    return {k: (k, v) for k, v in tensors.items()}


def _target(path: Path, module: str, entry: dict[str, tuple[str, np.ndarray]]) -> tuple[LoraTarget, int | None]:
    if module in _DIFFUSERS_NAMES:
        return _DIFFUSERS_NAMES[module]
    try:
        return LoraTarget(module), None
    except ValueError:
        key = next(iter(entry.values()))[0]
        raise InputError(
            f"{path}: tensor {key!r} targets {module!r}, which LoRA-ready engines do not carry; adapters may target "
            f"{', '.join(t.value for t in ALL_TARGETS)} (or diffusers' to_q/to_k/to_v/to_out.0) in each block"
        ) from None


def _factor(path: Path, entry: dict[str, tuple[str, np.ndarray]], role: str, module: str) -> tuple[str, np.ndarray]:
    if role not in entry:
        have = next(iter(entry.values()))[0]
        raise InputError(f"{path}: {module} has {have!r} but no {role} factor (lora_{'A' if role == 'down' else 'B'}); "
                         "the file is incomplete: export the adapter again")  # fmt: skip
    key, array = entry[role]
    if array.dtype.name not in FACTOR_DTYPES:
        raise InputError(
            f"{path}: tensor {key!r} is {array.dtype.name}; LoRA factors must be float32, float16 or bfloat16"
        )
    values = array.astype(np.float32)
    if not np.isfinite(values).all():
        raise InputError(f"{path}: tensor {key!r} holds NaN or Inf; the adapter is damaged: train or export it again")
    return key, values


def _alpha(path: Path, item: tuple[str, np.ndarray], rank: int) -> float:
    key, array = item
    value = float(np.asarray(array, dtype=np.float64).reshape(-1)[0]) if array.size == 1 else math.nan
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"{path}: tensor {key!r} must be one positive finite number (LoRA alpha)")
    return value / rank


def _peft_scale(path: Path, metadata: dict[str, str]) -> float:
    """``lora_alpha / r`` of the peft config diffusers saves with an adapter (1 without one)."""
    raw = metadata.get(METADATA_KEY)
    if raw is None:
        return 1.0
    try:
        config = json.loads(raw)
        # diffusers' pipelines save it per component ("transformer.r"); a model's own save has no prefix.
        if any(k.startswith("transformer.") for k in config):
            config = {k.removeprefix("transformer."): v for k, v in config.items() if k.startswith("transformer.")}
        alpha, rank = float(config["lora_alpha"]), int(config["r"])
    except (ValueError, KeyError, TypeError):
        raise InputError(f"{path}: its {METADATA_KEY} is not a peft LoRA config with lora_alpha and r") from None
    if config.get("alpha_pattern") or config.get("rank_pattern") or config.get("use_dora"):
        raise InputError(
            f"{path}: its peft config uses per-module alpha/rank patterns or DoRA, which LoRA-ready engines do not "
            "apply; save the adapter with one lora_alpha and r"
        )
    if not (math.isfinite(alpha) and alpha > 0 and rank > 0):
        raise InputError(f"{path}: its {METADATA_KEY} has lora_alpha {alpha} and r {rank}; both must be positive")
    return alpha / (math.sqrt(rank) if config.get("use_rslora") else rank)


def _fuse(
    layer: int, target: LoraTarget, slots: dict[int | None, tuple[str, np.ndarray, np.ndarray]], shape: LoraShape
) -> LoraUpdate:
    """One update per linear: q/k/v parts become one update of the fused projection (docs/LORA.md §1.2)."""
    if None in slots:
        _, down, up = slots[None]
        return LoraUpdate(layer, target, down, up)
    d = shape.hidden
    order = sorted(slots, key=lambda p: p or 0)
    first = slots[order[0]][1]
    if len(order) > 1 and all(np.array_equal(slots[p][1], first) for p in order):
        # One down factor for every part (a fused adapter in diffusers' layout): rank r, not 3r.
        up = np.zeros((3 * d, first.shape[0]), dtype=np.float32)
        for part in order:
            up[(part or 0) * d : ((part or 0) + 1) * d] = slots[part][2]
        return LoraUpdate(layer, target, first, up)
    downs, blocks = [], []
    for part in order:
        _, down, up = slots[part]
        downs.append(down)
        blocks.append((part or 0, up))
    rank = sum(d_.shape[0] for d_ in downs)
    up = np.zeros((3 * d, rank), dtype=np.float32)
    column = 0
    for part, block in blocks:
        up[part * d : (part + 1) * d, column : column + block.shape[1]] = block
        column += block.shape[1]
    return LoraUpdate(layer, target, np.concatenate(downs), up)


def check_fits(adapters: Sequence[Adapter], slots: LoraSlots, where: str) -> int:
    """The total rank of ``adapters`` together; refused above the engines' ``max_rank``. ``where``: the engine set."""
    total = sum(a.rank for a in adapters)
    if total > slots.max_rank:
        each = ", ".join(f"{a.name} {a.rank}" for a in adapters)
        raise InputError(
            f"adapters of total rank {total} ({each}; separate q/k/v adapters count three times) exceed the "
            f"LoRA-ready DiT of {where}, built with --lora-rank {slots.max_rank}: rebuild with --lora-rank {total} "
            "or use fewer or smaller adapters"
        )
    return total


def stack(chosen: Sequence[tuple[Adapter, float]], slots: LoraSlots, dtype: np.dtype | type = np.float32
          ) -> dict[str, np.ndarray]:  # fmt: skip
    """The engine inputs for ``chosen`` (adapter, weight) pairs: adapter k owns rank columns [o_k, o_k + r_k),
    its ``up`` factors times its weight; every target and block it does not update stays zero. No adapter gives
    rank 1 of zeros."""
    total = max(1, sum(a.rank for a, _ in chosen))
    layers = slots.shape.layers
    feeds: dict[str, np.ndarray] = {}
    for target in ALL_TARGETS:
        fan_in, fan_out = slots.shape.widths(target)
        feeds[target.down_input] = np.zeros((layers, fan_in, total), dtype=np.float32)
        feeds[target.up_input] = np.zeros((layers, total, fan_out), dtype=np.float32)
    offset = 0
    for adapter, weight in chosen:
        for u in adapter.updates:
            feeds[u.target.down_input][u.layer, :, offset : offset + u.rank] = u.down.T
            feeds[u.target.up_input][u.layer, offset : offset + u.rank] = u.up.T * np.float32(weight)
        offset += adapter.rank
    return {name: array.astype(dtype) for name, array in feeds.items()}


def parse_choice(text: str) -> tuple[str, float]:
    """``FILE[:WEIGHT]`` (``--lora``): the weight defaults to 1; a trailing ``:number`` is the weight."""
    name, sep, weight = text.rpartition(":")
    if sep and name:
        try:
            value = float(weight)
        except ValueError:
            return text, 1.0  # a colon that is part of the name
        return name, check_weight(value, name)
    return text, 1.0


def parse_choices(text: str) -> list[tuple[str, float]]:
    """``NAME[:WEIGHT],NAME[:WEIGHT]…`` (a Triton request's ``lora``): adapters by name, none twice."""
    chosen: list[tuple[str, float]] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, weight = parse_choice(item)
        if not name or any(name == n for n, _ in chosen):
            problem = "an empty name" if not name else f"{name!r} twice"
            raise InputError(f"lora {text!r}: {problem}; give NAME[:WEIGHT], … (each adapter once)")
        chosen.append((name, weight))
    return chosen


def check_weight(weight: float, name: str) -> float:
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight):
        raise InputError(f"LoRA weight {weight!r} for {name}: give a finite number (1 is the adapter as trained)")
    return float(weight)
