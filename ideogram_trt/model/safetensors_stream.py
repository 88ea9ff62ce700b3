"""Write a .safetensors file one tensor at a time, so a full-size random checkpoint never sits in host memory.

safetensors' own writers take the whole state dict, on purpose: the header comes first and lists every tensor's
byte range. Here the header's room is reserved up front from the names that may be written, the tensors follow
back to back (the format requires contiguous data offsets), and the header is written last, padded with
spaces, which the format allows (safetensors README, "Format"). Readers see an ordinary file.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

import torch

# safetensors dtype names (the format's spec), for the dtypes a release checkpoint holds.
DTYPES = {
    torch.float8_e4m3fn: "F8_E4M3",
    torch.bfloat16: "BF16",
    torch.float16: "F16",
    torch.float32: "F32",
    torch.int64: "I64",
}
# Room per header entry besides its quoted name: ':{"dtype":"F8_E4M3","shape":[…],"data_offsets":[…,…]},' is
# 128 bytes with 4 dims of 11 digits and offsets of 15 digits. add() checks the real size as it goes.
ENTRY_BYTES = 160


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


class SafetensorsStream:
    """``with SafetensorsStream(path, names) as out: out.add(name, tensor) …``.

    ``names`` are the tensors that may be written (a superset is fine: it only sizes the header). On an error,
    or when the header would outgrow its room, the file is deleted: nothing half-written stays behind. Tensors
    are stored in the order given: unlike safetensors' writer, which sorts them by dtype size, this does not
    align each tensor's offset; safetensors' reader accepts that (tests/test_checkpoint.py)."""

    def __init__(self, path: Path, names: Iterable[str], metadata: dict[str, str] | None = None) -> None:
        self.path = Path(path)
        self._metadata = dict(metadata or {})
        room = sum(len(_json(name)) + ENTRY_BYTES for name in names) + len(_json({"__metadata__": self._metadata}))
        self._room = room + (-room % 8)  # the byte buffer starts 8-byte aligned, as in safetensors' files
        self._used = len(_json({"__metadata__": self._metadata}))
        self._entries: dict[str, dict[str, object]] = {}
        self._offset = 0
        self._file = self.path.open("wb")
        self._file.seek(8 + self._room)

    def add(self, name: str, tensor: torch.Tensor) -> None:
        if name in self._entries:
            raise ValueError(f"{name}: written twice")
        if tensor.dtype not in DTYPES:
            raise ValueError(f"{name}: dtype {tensor.dtype} has no safetensors name here")
        end = self._offset + tensor.numel() * tensor.element_size()
        entry: dict[str, object] = {
            "dtype": DTYPES[tensor.dtype],
            "shape": list(tensor.shape),
            "data_offsets": [self._offset, end],
        }
        self._used += len(_json({name: entry}))  # with its comma: '{…}' is 2 bytes, the separator 1
        if self._used > self._room:
            raise ValueError(f"{name}: the safetensors header outgrows its {self._room} reserved bytes")
        self._file.write(tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().data)
        self._entries[name] = entry
        self._offset = end

    def close(self) -> None:
        """Write the header and close; a second call does nothing."""
        if self._file.closed:
            return
        header = _json({"__metadata__": self._metadata, **self._entries} if self._metadata else self._entries)
        self._file.seek(0)
        self._file.write(struct.pack("<Q", self._room))
        self._file.write(header.ljust(self._room, b" "))
        self._file.close()

    def abandon(self) -> None:
        """Close and delete the unfinished file."""
        self._file.close()
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> SafetensorsStream:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if kind is None:
            self.close()
        else:
            self.abandon()
