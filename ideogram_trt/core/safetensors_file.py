"""Read a .safetensors file with numpy alone (the serving side has no torch), refusing anything else.

The format (safetensors README, "Format"): 8 bytes of little-endian header length, a JSON header naming each
tensor's dtype, shape and byte range in the buffer that follows, and an optional ``__metadata__`` of strings.
safetensors' own numpy reader has no bfloat16, which most adapter files use; ml_dtypes supplies it. Every
field is checked before a byte of tensor data is read, so a truncated or hostile file is one clear error.
"""

from __future__ import annotations

import json
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

import ml_dtypes
import numpy as np

from ideogram_trt.core.errors import InputError

DTYPES: dict[str, np.dtype] = {
    "F32": np.dtype(np.float32),
    "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "F64": np.dtype(np.float64),
    "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn),
    "I64": np.dtype(np.int64),
    "I32": np.dtype(np.int32),
    "I16": np.dtype(np.int16),
    "I8": np.dtype(np.int8),
    "U8": np.dtype(np.uint8),
    "BOOL": np.dtype(np.bool_),
}
MAX_HEADER_BYTES = 100 << 20  # the limit safetensors itself enforces
# Files that execute code when loaded (pickle, and PyTorch's zip of pickles): never opened.
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle")
_PICKLE_MAGIC = (b"\x80", b"PK\x03\x04")


@dataclass(frozen=True)
class TensorFile:
    """The tensors of one file (read-only arrays over the mapped file) and its metadata."""

    tensors: dict[str, np.ndarray]
    metadata: dict[str, str]


def refuse_pickle(path: Path, what: str) -> None:
    """One line for a pickle or PyTorch file: loading one runs whatever code it carries."""
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise InputError(
            f"{path}: a {path.suffix} file is a pickle, which runs code when loaded; give the {what} as "
            ".safetensors (convert it with a tool you trust)"
        )


def read_safetensors(path: Path, what: str = "file") -> TensorFile:
    """Every tensor of ``path``; ``what`` names the file's role in messages ("LoRA adapter")."""
    refuse_pickle(path, what)
    try:
        with path.open("rb") as handle:
            size = path.stat().st_size
            head = handle.read(8)
            if len(head) < 8:
                raise InputError(f"{path}: {size} bytes, too short for a safetensors {what}")
            (length,) = struct.unpack("<Q", head)
            raw_header = handle.read(length) if 2 <= length <= min(MAX_HEADER_BYTES, size - 8) else b""
            if not raw_header.startswith(b"{"):
                if head.startswith(_PICKLE_MAGIC):  # checked only now: a header length may begin with 0x80
                    raise InputError(
                        f"{path}: a pickle (PyTorch) file under another name; give the {what} as .safetensors"
                    )
                raise InputError(f"{path}: not a safetensors {what} (no JSON header after the 8-byte length)")
            data = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) if size > 8 + length else b""
    except OSError as exc:
        raise InputError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    try:
        header = json.loads(raw_header)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InputError(f"{path}: not a safetensors {what} (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise InputError(f"{path}: not a safetensors {what} (its header is not a JSON object)")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise InputError(f"{path}: its __metadata__ must map names to strings; re-save the {what}")
    start = 8 + length
    tensors: dict[str, np.ndarray] = {}
    for name, entry in header.items():
        tensors[name] = _tensor(path, name, entry, data, start, size, what)
    return TensorFile(tensors, dict(metadata))


def _tensor(path: Path, name: str, entry: object, data: object, start: int, size: int, what: str) -> np.ndarray:
    fix = f"the {what} is damaged or not safetensors; save it again"
    if not isinstance(entry, dict):
        raise InputError(f"{path}: tensor {name!r} has no dtype/shape/data_offsets entry; {fix}")
    dtype_name, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype_name not in DTYPES:
        raise InputError(f"{path}: tensor {name!r} has dtype {dtype_name!r}, which this reader does not know; {fix}")
    ok_shape = isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ok_offsets = isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)
    if not ok_shape or not ok_offsets:
        raise InputError(f"{path}: tensor {name!r} has a malformed shape or data_offsets; {fix}")
    assert isinstance(shape, list) and isinstance(offsets, list)
    dtype = DTYPES[dtype_name]
    begin, end = offsets
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if not 0 <= begin <= end or start + end > size or end - begin != count * dtype.itemsize:
        raise InputError(f"{path}: tensor {name!r} has byte range {offsets}, which does not fit its shape; {fix}")
    array = np.frombuffer(data, dtype=dtype, count=count, offset=start + begin) if count else np.empty(0, dtype)  # type: ignore[call-overload]
    return array.reshape(shape)
