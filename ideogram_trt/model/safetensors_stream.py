"""Write a .safetensors file one tensor at a time, so a full-size random checkpoint never sits in host memory.

safetensors' own writers take the whole state dict, on purpose: the header comes first and lists every tensor's
byte range. Here the header's room is reserved up front from a bound on its size, the tensors follow
back to back (the format requires contiguous data offsets), and the header is written last, padded with
spaces, which the format allows (safetensors README, "Format"). Readers see an ordinary file.
"""

from __future__ import annotations

import json
import struct
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
# The most one header entry takes besides its name: '"":{"dtype":"F8_E4M3","shape":[…],"data_offsets":[…,…]},'
# is 130 bytes with 4 dims of 11 digits and offsets of 15 digits; 160 leaves room to spare.
ENTRY_BYTES = 160
METADATA_BYTES = 1024


class SafetensorsStream:
    """``with SafetensorsStream(path, max_tensors, max_name) as out: out.add(name, tensor) …``.

    ``max_tensors`` and ``max_name`` bound the header (how many tensors, the longest name). The file is complete
    only when the block exits without an exception; callers write into a staging folder (make-tiny does)."""

    def __init__(self, path: Path, max_tensors: int, max_name: int, metadata: dict[str, str] | None = None) -> None:
        room = max_tensors * (max_name + ENTRY_BYTES) + METADATA_BYTES
        self._room = room + (-room % 8)  # keeps the data 8-byte aligned, as safetensors' writer does
        self._metadata = dict(metadata or {})
        self._entries: dict[str, dict[str, object]] = {}
        self._offset = 0
        self._file = open(path, "wb")  # noqa: SIM115 - closed by close()/__exit__
        self._file.seek(8 + self._room)

    def add(self, name: str, tensor: torch.Tensor) -> None:
        if name in self._entries:
            raise ValueError(f"{name}: written twice")
        if tensor.dtype not in DTYPES:
            raise ValueError(f"{name}: dtype {tensor.dtype} has no safetensors name here")
        data = tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy()
        self._file.write(data.data)
        end = self._offset + data.nbytes
        entry = {"dtype": DTYPES[tensor.dtype], "shape": list(tensor.shape), "data_offsets": [self._offset, end]}
        self._entries[name] = entry
        self._offset = end

    def close(self) -> None:
        header = json.dumps(
            {"__metadata__": self._metadata, **self._entries} if self._metadata else self._entries,
            separators=(",", ":"),
        ).encode()
        if len(header) > self._room:
            self._file.close()
            raise ValueError(f"safetensors header needs {len(header)} bytes, {self._room} were reserved")
        self._file.seek(0)
        self._file.write(struct.pack("<Q", self._room))
        self._file.write(header.ljust(self._room, b" "))
        self._file.close()

    def __enter__(self) -> SafetensorsStream:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if kind is None:
            self.close()
        else:
            self._file.close()
