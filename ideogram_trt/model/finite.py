"""Non-finite and non-positive values in a checkpoint's weights (issue 12): they make black images with exit 0.

Two levels:

* ``check_scales`` reads every FP8 ``weight_scale`` (one F32 per output row: a few MB at full size) and refuses a
  NaN, infinite, zero or negative one. ``open_checkpoint`` runs it, so export, calibration and conversion refuse
  such a checkpoint too.
* ``scan_weights`` reads every tensor the model uses, in chunks of rows, and refuses NaN/Inf in floating tensors
  and the NaN encodings of float8_e4m3fn (0x7F, 0xFF; E4M3FN has no infinities). It reads the whole checkpoint
  (~27 GB at full size), so only ``ideogram-trt check`` runs it, with a progress bar (``--headers-only`` skips it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from safetensors import safe_open

from ideogram_trt.core.errors import CheckpointError
from ideogram_trt.model.safetensors_folder import FLOAT_DTYPES, FP8_DTYPE_NAME, SafetensorsFolder

if TYPE_CHECKING:
    from ideogram_trt.model.checkpoint import Checkpoint

SCALE_SUFFIX = "_scale"
CHUNK_BYTES = 64 << 20  # rows read at a time: bounded memory whatever the tensor size
_ITEM_BYTES = {"F8_E4M3": 1, "BF16": 2, "F16": 2, "F32": 4, "F64": 8}
_FIX = "the file is corrupt or was quantized wrongly: re-download or re-convert it"


def check_scales(folder: SafetensorsFolder, ignored_prefixes: tuple[str, ...] = ()) -> None:
    """Every per-row scale of an FP8 weight is finite and positive (a zero scale zeroes its row; NaN spreads)."""
    keys = [
        key
        for key, info in folder.info.items()
        if key.endswith(SCALE_SUFFIX)
        and not key.startswith(ignored_prefixes)
        and getattr(folder.info.get(key[: -len(SCALE_SUFFIX)]), "dtype", None) == FP8_DTYPE_NAME
        and info.dtype in FLOAT_DTYPES
    ]
    for key, scale in folder.load(keys):
        values = scale.double().reshape(-1)
        bad = ~torch.isfinite(values) | (values <= 0)
        if bool(bad.any()):
            row = int(bad.nonzero()[0, 0])
            raise CheckpointError(
                f"{folder.info[key].file}: tensor {key!r} row {row} is {_describe(float(values[row]))} "
                f"({int(bad.sum())} of {values.numel()} rows bad); every FP8 weight_scale must be finite and "
                f"positive (this makes black images): {_FIX}"
            )


def _describe(value: float) -> str:
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    return "zero" if value == 0 else f"negative ({value:g})"


def scan_keys(folder: SafetensorsFolder, ignored_prefixes: tuple[str, ...] = ()) -> list[str]:
    """The tensors ``scan_weights`` reads: floating and FP8 ones the model uses."""
    return [
        key for key, info in folder.info.items() if info.dtype in _ITEM_BYTES and not key.startswith(ignored_prefixes)
    ]


def tensor_bytes(folder: SafetensorsFolder, keys: list[str]) -> int:
    total = 0
    for key in keys:
        info = folder.info[key]
        count = 1
        for dim in info.shape:
            count *= dim
        total += count * _ITEM_BYTES[info.dtype]
    return total


def scan_tensors(
    folder: SafetensorsFolder,
    keys: list[str],
    advance: Callable[[int], None] | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> None:
    """Refuse the first non-finite value among ``keys``, naming file, tensor and index; ``advance(bytes)``."""
    by_file: dict[str, list[str]] = {}
    for key in keys:
        by_file.setdefault(str(folder.info[key].file), []).append(key)
    for file, file_keys in by_file.items():
        with safe_open(file, framework="pt") as handle:
            for key in file_keys:
                info = folder.info[key]
                if not info.shape:
                    _check_chunk(handle.get_tensor(key).reshape(1), info.dtype, file, key, (), 0)
                    continue
                rows = info.shape[0]
                row_bytes = max(1, tensor_bytes(folder, [key]) // max(rows, 1))
                step = max(1, chunk_bytes // row_bytes)
                piece = handle.get_slice(key)
                for start in range(0, rows, step):
                    chunk = piece[start : start + step]
                    _check_chunk(chunk, info.dtype, file, key, info.shape, start)
                    if advance is not None:
                        advance(chunk.numel() * chunk.element_size())


def _suspect(chunk: torch.Tensor, dtype: str) -> bool:
    """A one-pass reduction that is True when the chunk may hold a non-finite value (several GB/s on a CPU core,
    against ~200 MB/s for an ``isfinite`` mask); the exact search runs only then."""
    if chunk.numel() == 0:
        return False
    if dtype == FP8_DTYPE_NAME:
        # E4M3FN: S.1111.111 (0x7F, 0xFF) are its only NaN encodings (no infinities), and they are the largest
        # int8 (127) and the largest uint8 (255) a byte can be.
        return int(chunk.view(torch.int8).max()) == 0x7F or int(chunk.view(torch.uint8).max()) == 0xFF
    low, high = torch.aminmax(chunk)  # NaN propagates; +Inf is the max, -Inf the min
    return not (math.isfinite(float(low)) and math.isfinite(float(high)))


def _check_chunk(chunk: torch.Tensor, dtype: str, file: str, key: str, shape: tuple[int, ...], start: int) -> None:
    if not _suspect(chunk, dtype):
        return
    bad = (chunk.view(torch.uint8) & 0x7F) == 0x7F if dtype == FP8_DTYPE_NAME else ~torch.isfinite(chunk)
    if not bool(bad.any()):
        return
    local = [int(i) for i in bad.nonzero()[0]]
    value = chunk[tuple(local)]
    first = [local[0] + start, *local[1:]] if shape else []
    if dtype == FP8_DTYPE_NAME:
        shown = f"byte 0x{int(value.view(torch.uint8)):02X} (NaN in float8_e4m3fn)"
    else:
        shown = _describe(float(value))
    where = f"index {first}" if shape else "(a scalar)"
    raise CheckpointError(
        f"{file}: tensor {key!r} holds {shown} at {where}, {int(bad.sum())} bad value(s) in the rows read so "
        f"far; a non-finite weight makes black images: {_FIX}"
    )


def scan_plan(checkpoint: Checkpoint) -> list[tuple[SafetensorsFolder, list[str]]]:
    """(folder, keys) for every weight file of the checkpoint: both DiTs, the text encoder, the VAE decoder."""
    from ideogram_trt.model.checkpoint import (
        DIT_COMPONENTS,
        TEXT_ENCODER,
        VAE,
        VAE_IGNORED_PREFIXES,
    )
    from ideogram_trt.model.layout import TEXT_IGNORED_PREFIXES

    ignored = {TEXT_ENCODER: TEXT_IGNORED_PREFIXES, VAE: VAE_IGNORED_PREFIXES}
    plan = []
    for component in (*DIT_COMPONENTS, TEXT_ENCODER, VAE):
        if component in DIT_COMPONENTS and component not in checkpoint.dit_layouts:
            continue
        folder = checkpoint.weights(component)
        plan.append((folder, scan_keys(folder, ignored.get(component, ()))))
    return plan


def scan_weights(checkpoint: Checkpoint, advance: Callable[[int], None] | None = None) -> tuple[int, int]:
    """Scan every weight the model reads; (tensors, bytes) scanned."""
    plan = scan_plan(checkpoint)
    for folder, keys in plan:
        scan_tensors(folder, keys, advance)
    return sum(len(k) for _, k in plan), sum(tensor_bytes(f, k) for f, k in plan)
