"""The one resolver of the shape symbols in engine contracts, sidecars and manifests (``core.contracts``).

``B`` batch, ``T`` text tokens, ``N`` image tokens (= ``GH · GW``), ``T+N`` the conditional DiT's sequence,
``GH``/``GW`` the token grid, ``H``/``W`` pixels (16 per token side), ``C``/``D``/``R`` the model widths (latent
channels, DiT hidden size, RoPE width), ``LR`` the total LoRA rank of a LoRA-ready DiT (docs/LORA.md §2).
Integers, and strings of digits, are static sizes. Export (dynamic axes), engine profiles (min/opt/max) and both
runtime backends (the shapes they set and allocate) resolve through here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from ideogram_trt.core.contracts import PIXELS_PER_TOKEN

Symbol = str | int
SYMBOLS = ("B", "T", "N", "T+N", "GH", "GW", "H", "W", "C", "D", "R", "LR")


class ShapeError(ValueError):
    """A symbol that cannot be resolved with the sizes given (a programming error, not bad user input)."""


@dataclass(frozen=True)
class Sizes:
    """Concrete sizes for the symbols; ``None`` where the caller does not know (or need) one."""

    batch: int | None = None
    text: int | None = None
    grid: tuple[int, int] | None = None
    tokens: int | None = None  # N where no grid is known (a DiT alone does not tell 1152x896 from 896x1152)
    channels: int | None = None
    hidden: int | None = None
    rope: int | None = None
    lora_rank: int | None = None

    @property
    def image_tokens(self) -> int | None:
        if self.grid is not None:
            return self.grid[0] * self.grid[1]
        return self.tokens

    def value(self, symbol: Symbol) -> int:
        if isinstance(symbol, int):
            return symbol
        if symbol.isdigit():
            return int(symbol)
        if symbol == "T+N":
            return self._need("T", self.text) + self._need("N", self.image_tokens)
        grid = self.grid
        known: dict[str, int | None] = {
            "B": self.batch,
            "T": self.text,
            "N": self.image_tokens,
            "GH": None if grid is None else grid[0],
            "GW": None if grid is None else grid[1],
            "H": None if grid is None else grid[0] * PIXELS_PER_TOKEN,
            "W": None if grid is None else grid[1] * PIXELS_PER_TOKEN,
            "C": self.channels,
            "D": self.hidden,
            "R": self.rope,
            "LR": self.lora_rank,
        }
        if symbol not in known:
            raise ShapeError(f"unknown axis {symbol!r}")
        return self._need(symbol, known[symbol])

    def resolve(self, shape: Sequence[Symbol]) -> tuple[int, ...]:
        return tuple(self.value(symbol) for symbol in shape)

    @staticmethod
    def _need(symbol: str, value: int | None) -> int:
        if value is None:
            needs = "a resolution bucket" if symbol in ("N", "GH", "GW", "H", "W") else "a size"
            raise ShapeError(f"axis {symbol!r} needs {needs}")
        return value

    @classmethod
    def bind(cls, pairs: Sequence[tuple[Sequence[Symbol], Sequence[int]]], base: Sizes | None = None) -> Sizes:
        """The sizes that concrete shapes give their symbols (``pairs`` of symbolic and concrete shapes): the
        largest value per symbol, so the shapes of a profile's max bind its largest sizes."""
        seen: dict[str, int] = {}
        for symbols, dims in pairs:
            if len(symbols) != len(dims):
                raise ShapeError(f"shape {list(dims)} does not have the rank of {list(symbols)}")
            for symbol, dim in zip(symbols, dims, strict=True):
                if isinstance(symbol, str) and not symbol.isdigit() and symbol != "T+N":
                    seen[symbol] = max(seen.get(symbol, 0), int(dim))
        sizes = base or cls()
        grid = (seen["GH"], seen["GW"]) if {"GH", "GW"} <= seen.keys() else sizes.grid
        return replace(
            sizes,
            batch=seen.get("B", sizes.batch),
            text=seen.get("T", sizes.text),
            grid=grid,
            tokens=seen.get("N", sizes.tokens),
            channels=seen.get("C", sizes.channels),
            hidden=seen.get("D", sizes.hidden),
            rope=seen.get("R", sizes.rope),
            lora_rank=seen.get("LR", sizes.lora_rank),
        )
