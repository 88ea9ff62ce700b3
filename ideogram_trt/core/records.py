"""Typed reads of the JSON files ideogram-trt writes (manifest, export sidecars and index), and the tensor entry
they share. A wrong type, a missing field or an out-of-range value is one error naming the file and the field."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ideogram_trt.core.errors import IdeogramTrtError
from ideogram_trt.core.shapes import Symbol


class Fields:
    """Reads fields of one JSON file; failures raise ``error`` as ``FILE: field 'a.b' PROBLEM; FIX``."""

    def __init__(self, path: Path, error: type[IdeogramTrtError], fix: str) -> None:
        self.path, self.error, self.fix = path, error, fix

    def fail(self, where: str, problem: str) -> IdeogramTrtError:
        return self.error(f"{self.path}: field {where!r} {problem}; {self.fix}")

    def get(self, raw: object, key: str, kind: type | tuple[type, ...], where: str, optional: bool = False) -> Any:
        if not isinstance(raw, dict):
            raise self.fail(where, "must be an object")
        name = f"{where}.{key}".lstrip(".")
        if key not in raw:
            if optional:
                return None
            raise self.fail(name, "is missing")
        value = raw[key]
        if value is None and optional:
            return None
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            expected = " or ".join(k.__name__ for k in kinds)
            raise self.fail(name, f"must be {expected}, got {value!r:.60}")
        return value

    def count(self, raw: object, key: str, where: str, low: int, high: int) -> int:
        value = int(self.get(raw, key, int, where))
        if not low <= value <= high:
            raise self.fail(f"{where}.{key}".lstrip("."), f"must be in [{low}, {high}], got {value}")
        return value

    def strings(self, raw: object, key: str, where: str) -> list[str]:
        values = self.get(raw, key, list, where)
        if not all(isinstance(v, str) for v in values):
            raise self.fail(f"{where}.{key}".lstrip("."), "must be a list of strings")
        return list(values)

    def ints(self, value: object, where: str) -> list[int]:
        if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise self.fail(where, "must be a list of integers")
        if any(v < 0 for v in value):
            raise self.fail(where, "must not hold negative sizes")
        return list(value)

    def tensors(self, raw: object, key: str, where: str) -> list[TensorEntry]:
        entries = []
        for i, item in enumerate(self.get(raw, key, list, where)):
            at = f"{where}.{key}.{i}".lstrip(".")
            shape = self.get(item, "shape", list, at)
            if not all(isinstance(d, str | int) and not isinstance(d, bool) for d in shape):
                raise self.fail(f"{at}.shape", "must be a list of sizes and axis names")
            entries.append(TensorEntry(self.get(item, "name", str, at), self.get(item, "dtype", str, at), shape))
        return entries


def read_object(path: Path, what: str, error: type[IdeogramTrtError], fix: str) -> dict[str, Any]:
    """A JSON object from ``path``; anything else (unreadable, not JSON, not an object) is one ``error``."""
    try:
        value = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise error(f"{path}: unreadable {what} ({exc}); {fix}") from None
    if not isinstance(value, dict):
        raise error(f"{path}: not an ideogram-trt {what}; {fix}")
    return value


@dataclass(frozen=True)
class TensorEntry:
    """One graph input or output as exported: name, numpy dtype name (``bfloat16`` for bf16), and shape with
    ints for static axes and contract symbols for dynamic ones (``core.shapes``)."""

    name: str
    dtype: str
    shape: list[Symbol]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}


def find_tensor(entries: list[TensorEntry], name: str) -> TensorEntry:
    for entry in entries:
        if entry.name == name:
            return entry
    raise KeyError(name)
