"""The adapters a pipeline serves (docs/LORA.md §3): read once, checked against the engine set's LoRA-ready DiT,
and kept in two bounded caches — parsed adapters, and the stacked engine inputs of recent combinations — so a
request that repeats a choice costs no file read and no host work. (A GPU backend keeps its own device copies
of recent combinations; see ``TensorRTBackend``.)
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import ml_dtypes
import numpy as np

from ideogram_trt.core.components import Component
from ideogram_trt.core.errors import InputError
from ideogram_trt.core.lora import Adapter, LoraSlots, adapter_name, check_fits, check_weight, read_adapter, stack
from ideogram_trt.core.manifest import Manifest

ADAPTER_SUFFIX = ".safetensors"
CACHED_ADAPTERS = 16
CACHED_COMBINATIONS = 4
# The engines' input dtypes (manifest names) → numpy; bfloat16 from ml_dtypes.
FACTOR_DTYPES: dict[str, type] = {"float32": np.float32, "float16": np.float16, "bfloat16": ml_dtypes.bfloat16}

Choice = tuple[str | Path, float]
K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True)
class LoraFeeds:
    """The LoRA inputs of one request: ``key`` names the combination (adapter sha256s and weights, in order),
    ``arrays`` are the engine inputs by name, in the engines' dtype, at rank ``rank``."""

    key: tuple[tuple[str, float], ...]
    rank: int
    arrays: Mapping[str, np.ndarray]
    names: tuple[str, ...] = ()  # the adapters, for reports


def no_adapter_feeds(manifest: Manifest) -> LoraFeeds | None:
    """A LoRA-ready set's inputs for a request that names no adapter (rank 1 of zeros); None for other sets. The
    backends use it when a caller hands them no LoRA inputs."""
    slots = manifest.model.lora
    if slots is None:
        return None
    return LoraFeeds((), 1, stack([], slots, np.dtype(FACTOR_DTYPES[factor_dtype(manifest)])))


def factor_dtype(manifest: Manifest) -> str:
    """The dtype of a LoRA-ready set's factor inputs (the conditional DiT's compute dtype), as the manifest names it."""
    assert manifest.model.lora is not None
    dtype = manifest.engine_for(Component.DIT_COND).input(manifest.model.lora.input_names[0]).dtype
    if dtype not in FACTOR_DTYPES:
        raise InputError(f"LoRA inputs of dtype {dtype} are not supported; rebuild the engine set")
    return dtype


class LoraLibrary:
    """Adapters for one engine set. ``folder``: adapters requested by name (``NAME`` is ``folder/NAME.safetensors``);
    ``allow_paths``: whether a request may also name a file (the CLI and Python API may; a server may not)."""

    def __init__(
        self, slots: LoraSlots, dtype: str, where: str, folder: Path | None = None, allow_paths: bool = True
    ) -> None:
        self.slots, self.where, self.folder, self.allow_paths = slots, where, folder, allow_paths
        self.dtype = np.dtype(FACTOR_DTYPES[dtype])
        self._adapters: OrderedDict[tuple[str, int, int], Adapter] = OrderedDict()
        self._feeds: OrderedDict[tuple[tuple[str, float], ...], LoraFeeds] = OrderedDict()

    def names(self) -> list[str]:
        """The adapters in ``folder``, by name."""
        if self.folder is None or not self.folder.is_dir():
            return []
        return sorted(adapter_name(p) for p in self.folder.iterdir() if p.name.endswith(ADAPTER_SUFFIX) and p.is_file())

    def resolve(self, spec: str | Path) -> Path:
        """A name in ``folder``, or (where allowed) a path to a .safetensors file."""
        text = str(spec)
        if self.folder is not None and "/" not in text and not text.endswith(ADAPTER_SUFFIX):
            path = self.folder / f"{text}{ADAPTER_SUFFIX}"
            if path.is_file():
                return path
            known = ", ".join(self.names()) or "none"
            raise InputError(
                f"unknown LoRA adapter {text!r}: {self.folder} has {known} (add {text}{ADAPTER_SUFFIX} there)"
            )
        if not self.allow_paths:
            known = ", ".join(self.names()) or "none"
            raise InputError(f"LoRA adapter {text!r}: name one of this server's adapters ({known}), not a file")
        path = Path(text)
        if not path.is_file():
            raise InputError(f"LoRA adapter {text}: no such file (give a .safetensors adapter file)")
        return path

    def adapter(self, spec: str | Path) -> Adapter:
        """The parsed adapter, from the cache while its file is unchanged (same size and modification time)."""
        path = self.resolve(spec)
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        return _cached(self._adapters, key, CACHED_ADAPTERS, lambda: read_adapter(path, self.slots.shape))

    def feeds(self, choices: Sequence[Choice]) -> LoraFeeds:
        """The engine inputs for ``choices`` ((adapter, weight) pairs; none: the zero side path). Every adapter is
        read and checked, and the total rank against the engines', before anything runs."""
        adapters = [(self.adapter(spec), check_weight(weight, str(spec))) for spec, weight in choices]
        rank = check_fits([a for a, _ in adapters], self.slots, self.where) if adapters else 0
        key = tuple((a.sha256, w) for a, w in adapters)

        def make() -> LoraFeeds:
            arrays = stack(adapters, self.slots, self.dtype)
            for array in arrays.values():
                array.flags.writeable = False  # shared by every request that makes this choice
            return LoraFeeds(key, max(1, rank), arrays, tuple(a.name for a, _ in adapters))

        return _cached(self._feeds, key, CACHED_COMBINATIONS, make)


def _cached(cache: OrderedDict[K, V], key: K, size: int, make: Callable[[], V]) -> V:
    """``cache[key]``, made by ``make`` on a miss; the least recently used entries beyond ``size`` are dropped."""
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    value = cache[key] = make()
    while len(cache) > size:
        cache.popitem(last=False)
    return value
