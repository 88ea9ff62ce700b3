"""Read a component's safetensors weights — one file or a sharded index — header first, tensors on demand."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open

from ideogram_trt.core.errors import CheckpointError


@dataclass(frozen=True)
class TensorInfo:
    shape: tuple[int, ...]
    dtype: str  # safetensors dtype name: F8_E4M3, F32, BF16, F16, I64, ...
    file: Path


FLOAT_DTYPES = frozenset({"F32", "BF16", "F16", "F64"})
FP8_DTYPE_NAME = "F8_E4M3"


class SafetensorsFolder:
    """The weights of one component folder, found as ``<stem>.safetensors`` or ``<stem>.safetensors.index.json``."""

    def __init__(self, folder: Path, stem: str) -> None:
        self.folder = folder
        single = folder / f"{stem}.safetensors"
        index = folder / f"{stem}.safetensors.index.json"
        for path in (single, index):
            if path.is_dir():
                raise CheckpointError(f"{path}: is a directory, expected a file; replace it with the weight file")
        if single.is_file():
            files = [single]
        elif index.is_file():
            try:
                weight_map = json.loads(index.read_bytes().decode("utf-8"))["weight_map"]
                if not isinstance(weight_map, dict) or not all(isinstance(n, str) for n in weight_map.values()):
                    raise TypeError("weight_map values must be file names")
            except (ValueError, RecursionError, KeyError, TypeError) as exc:  # ValueError: JSON, UTF-8
                raise CheckpointError(
                    f"{index}: not a safetensors index (needs UTF-8 JSON with a 'weight_map' object of file "
                    "names); re-download it"
                ) from exc
            files = sorted({folder / name for name in weight_map.values()})
        else:
            raise CheckpointError(f"{folder}: no weights (expected {single.name} or {index.name})")
        self.source = str(single if single.is_file() else index)
        self._info: dict[str, TensorInfo] = {}
        for file in files:
            if not file.is_file():
                what = "is a directory, not a weight file" if file.is_dir() else "missing"
                raise CheckpointError(f"{file}: {what} (listed in {index.name})")
            try:
                with safe_open(str(file), framework="pt") as handle:
                    for key in handle.keys():  # noqa: SIM118 - safe_open handles are not iterable
                        piece = handle.get_slice(key)
                        self._info[key] = TensorInfo(tuple(piece.get_shape()), piece.get_dtype(), file)
            except CheckpointError:
                raise
            except Exception as exc:
                detail = " ".join(str(exc).split())[:200]
                raise CheckpointError(
                    f"{file}: not a readable safetensors file ({detail}): truncated or corrupt; re-download it"
                ) from exc

    @property
    def info(self) -> dict[str, TensorInfo]:
        return self._info

    def load(self, keys: list[str] | None = None) -> Iterator[tuple[str, torch.Tensor]]:
        """Yield (key, tensor) for ``keys`` (all by default), opening each file once."""
        wanted = list(self._info) if keys is None else keys
        by_file: dict[Path, list[str]] = {}
        for key in wanted:
            by_file.setdefault(self._info[key].file, []).append(key)
        with ExitStack() as stack:
            for file, file_keys in by_file.items():
                handle = stack.enter_context(safe_open(str(file), framework="pt"))
                for key in file_keys:
                    yield key, handle.get_tensor(key)
