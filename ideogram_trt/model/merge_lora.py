"""``merge-lora``: fold LoRA adapters into a checkpoint's conditional DiT, for users who serve one fixed adapter
with no side path at all (docs/LORA.md §4).

Each updated linear is merged and requantized per row, in this order (the rounding is the recipe's, so a test
can recompute it from the spec alone):

1. ``W = float32(bf16(fp8→bf16(q) · bf16(scale)))`` — the release's own weight (docs/MODEL.md §8.2);
2. ``W' = float32(W + Σ_k weight_k · scale_k · B_k · A_k)``, the updates summed in float64;
3. ``scale' = float32(max|W'_row| / 448)``, ``q' = e4m3(W' / scale')`` (round to nearest even, saturating).

A linear stored in a float dtype (not FP8) keeps it: ``W' `` is rounded back to that dtype. Everything else in the
checkpoint is copied byte for byte; the new folder appears whole or not at all, and names its adapters in
``lora_merge.json``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from ideogram_trt import __version__
from ideogram_trt.core.errors import InputError
from ideogram_trt.core.files import copy_tree, remove_stale, staged_dir
from ideogram_trt.core.lora import Adapter, read_adapter
from ideogram_trt.export.lora import lora_shape
from ideogram_trt.model.checkpoint import TRANSFORMER, WEIGHT_STEMS, native_to_diffusers_dit, open_checkpoint
from ideogram_trt.model.fp8 import SCALE_SUFFIX, dequantize_rowwise, is_fp8, quantize_rowwise
from ideogram_trt.model.layout import Layout

RECORD_FILE = "lora_merge.json"


@dataclass(frozen=True)
class MergeResult:
    out: Path
    adapters: list[tuple[Adapter, float]]
    linears: int  # weights changed


def merge_updates(state: dict[str, torch.Tensor], chosen: Sequence[tuple[Adapter, float]]) -> int:
    """Merge ``chosen`` into ``state`` (native keys, FP8 weights as stored) in place; returns the linears changed."""
    deltas: dict[str, np.ndarray] = {}
    for adapter, weight in chosen:
        for update in adapter.updates:
            key = f"layers.{update.layer}.{update.target.value}.weight"
            deltas[key] = deltas.get(key, 0.0) + weight * update.delta()
    for key, delta in deltas.items():
        stored = state[key]
        if is_fp8(stored):
            scale_key = key + SCALE_SUFFIX
            merged = dequantize_rowwise(stored, state[scale_key]).to(torch.float64) + torch.from_numpy(delta)
            state[key], state[scale_key] = quantize_rowwise(merged.to(torch.float32))
        else:
            merged = stored.to(torch.float64) + torch.from_numpy(delta)
            state[key] = merged.to(torch.float32).to(stored.dtype)
    return len(deltas)


def merge_lora(model: Path, loras: Sequence[tuple[Path, float]], out: Path, overwrite: bool = False) -> MergeResult:
    """Write ``out`` as ``model`` with ``loras`` ((file, weight) pairs) merged into its conditional DiT."""
    if not loras:
        raise InputError("give at least one --lora FILE[:WEIGHT] to merge")
    checkpoint = open_checkpoint(model)
    if out.exists() and not overwrite:
        raise InputError(f"{out}: exists (pass --overwrite to replace it, or choose a new folder)")
    if out.resolve() == checkpoint.root.resolve() or checkpoint.root.resolve() in out.resolve().parents:
        raise InputError(f"{out}: inside the checkpoint being merged; write the merged checkpoint elsewhere")
    shape = lora_shape(checkpoint.dit_config(TRANSFORMER))
    chosen = [(read_adapter(path, shape), weight) for path, weight in loras]  # every file checked before any work

    state = checkpoint.dit_state(TRANSFORMER)
    changed = merge_updates(state, chosen)
    if checkpoint.dit_layouts[TRANSFORMER] is Layout.DIFFUSERS:
        state = native_to_diffusers_dit(state)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(out.parent, names=lambda name: name == out.name)
    stem = WEIGHT_STEMS[TRANSFORMER]

    def replaced(relative: Path) -> bool:  # the conditional DiT's weights (one file or shards and their index)
        return (relative.parts[0] == TRANSFORMER and relative.name.startswith(stem)) or relative.name == RECORD_FILE

    with staged_dir(out, replace=overwrite) as stage:
        copy_tree(checkpoint.root, stage, within=checkpoint.root, skip=replaced)
        tensors = {k: v.contiguous() for k, v in state.items()}
        save_file(tensors, str(stage / TRANSFORMER / f"{stem}.safetensors"), metadata={"format": "pt"})
        record = {
            "merged_by": f"ideogram-trt {__version__}",
            "source": str(checkpoint.root.resolve()),
            "source_transformer": checkpoint.digest(TRANSFORMER),
            "adapters": [{"name": a.name, "file": str(a.path), "sha256": a.sha256, "weight": w} for a, w in chosen],
            "rounding": "docs/LORA.md §4: dequantize (bf16), add the update (float64 sum), requantize per row (E4M3)",
        }
        (stage / RECORD_FILE).write_text(json.dumps(record, indent=1) + "\n")
    return MergeResult(out, chosen, changed)
