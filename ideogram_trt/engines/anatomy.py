"""What TensorRT built: the engine's layers, parsed from the builder's detailed report, classified, and attributed
to model modules and DiT blocks (issue 15, first part: capture and classification).

A TensorRT-RTX build with ``profiling_verbosity = DETAILED`` logs (at VERBOSE) one message starting ``Layers:``
followed by one line per engine layer::

    Name: N, LayerType: T, Inputs: [ {Name: …, Dimensions: […], …, Datatype: D, Format: …}, … ],
    Constants: [ … ], Outputs: [ … ], TacticName: K, StreamId: S, Metadata: [ONNX Layer: a][ONNX Layer: b]

The format is pinned to the TensorRT-RTX versions in ``REPORT_VERSIONS``: another version, or a line this parser
does not recognise, is an ``AnatomyError`` rather than a silently wrong anatomy. No engine runs for any of this;
it reads what the builder decided.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from enum import Enum

from ideogram_trt.core.errors import IdeogramTrtError

REPORT_VERSIONS = ("1.7.",)  # TensorRT-RTX releases whose "Layers:" report this parser was written against
REPORT_HEADER = "Layers:"

_LAYER = re.compile(
    r"^Name: (?P<name>.*?), LayerType: (?P<type>\w+), Inputs: \[(?P<inputs>.*?)\], Constants: \[(?P<constants>.*?)\], "
    r"Outputs: \[(?P<outputs>.*?)\], TacticName: (?P<tactic>.*?), StreamId: (?P<stream>\d+)"
    r"(?:, EventId:\s*(?P<event>[^,]*))?(?:, Metadata:\s*(?P<meta>.*))?$"
)
_TENSOR = re.compile(r"\{ Name: (?P<name>[^,]*), Dimensions: \[(?P<dims>[^\]]*)\],.*?Datatype: (?P<dtype>\w+)")
_ONNX_LAYER = re.compile(r"\[ONNX Layer: ([^\]]*)\]")
_BLOCK = re.compile(r"^layers\.(\d+)\.")
# An ONNX node that is a linear's product: MODULE/MatMul_k or MODULE/Gemm_k.
_LINEAR_NODE = re.compile(r"^(?P<module>.+)/(?:MatMul|Gemm)_\d+$")


class AnatomyError(IdeogramTrtError):
    """A build report this version of ideogram-trt cannot read: the anatomy would be wrong, so none is made."""


class LayerClass(str, Enum):
    GEMM = "gemm"  # a matrix multiply kernel (its input precision says FP8 or not)
    DEQUANT_GEMM = "dequant_gemm"  # a runtime fusion of a weight dequantize (Cast·Mul·Cast) and a GEMM
    ATTENTION = "attention"  # a fused multi-head attention kernel
    SHAPE = "shape"  # shape computation, no tensor data
    SYNC = "sync"  # signal/wait between the builder's auxiliary streams
    OTHER = "other"  # fused elementwise and normalization kernels, reformats, copies


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dims: tuple[int, ...]  # -1 for dynamic axes
    dtype: str  # as TensorRT names it: Float, Half, BFloat16, FP8, Int32, …


@dataclass(frozen=True)
class EngineLayer:
    name: str
    layer_type: str
    inputs: tuple[TensorInfo, ...]
    constants: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    tactic: str
    onnx_layers: tuple[str, ...]

    @property
    def kind(self) -> LayerClass:
        if self.layer_type == "shape_call":
            return LayerClass.SHAPE
        if self.layer_type in ("signal", "wait"):
            return LayerClass.SYNC
        if "mha" in self.tactic.lower() or "mha" in self.name.lower():
            return LayerClass.ATTENTION
        if self.layer_type == "gemm":
            return LayerClass.GEMM
        if self.layer_type == "runtime_fusion" and "Fc" in self.name:  # e.g. __myl_CastMulCastFc: dequant + GEMM
            return LayerClass.DEQUANT_GEMM
        return LayerClass.OTHER

    @property
    def precision(self) -> str:
        """The data types of its non-constant inputs, e.g. ``FP8`` or ``BFloat16``; mixed ones joined by ``+``."""
        return "+".join(sorted({t.dtype for t in self.inputs})) or "-"

    @property
    def modules(self) -> tuple[str, ...]:
        """The model linears a GEMM covers, in the order TensorRT fused them (``w3`` and ``w1`` in one GEMM)."""
        found: list[str] = []
        for node in self.onnx_layers:
            match = _LINEAR_NODE.match(node)
            if match and match["module"] not in found:
                found.append(match["module"])
        return tuple(found)

    @property
    def block(self) -> int | None:
        """The DiT block most of its ONNX nodes come from (None for layers outside the blocks)."""
        blocks = Counter(int(m.group(1)) for node in self.onnx_layers if (m := _BLOCK.match(node)))
        return blocks.most_common(1)[0][0] if blocks else None


@dataclass(frozen=True)
class BlockPattern:
    """Counts per DiT block, the gate issue 15 asks for."""

    gemm: int
    fp8_gemm: int
    attention: int
    attention_precision: str
    other: int


def _tensors(text: str, line: str) -> tuple[TensorInfo, ...]:
    tensors = []
    for match in _TENSOR.finditer(text):
        try:
            dims = tuple(int(d) for d in match["dims"].split(",") if d.strip())
        except ValueError:
            raise AnatomyError(
                f"unreadable dimensions [{match['dims']}] in the build report line {line[:120]!r}"
            ) from None
        tensors.append(TensorInfo(match["name"].strip(), dims, match["dtype"]))
    if text.strip() and not tensors:
        raise AnatomyError(f"unreadable tensors in the build report line {line[:120]!r}")
    return tuple(tensors)


def parse_layer_report(report: str, version: str) -> list[EngineLayer]:
    """The layers of one ``Layers:`` message of a TensorRT-RTX ``version`` build."""
    if not version.startswith(REPORT_VERSIONS):
        raise AnatomyError(
            f"TensorRT-RTX {version}: its build report format is not known to this ideogram-trt (written for "
            f"{', '.join(v + 'x' for v in REPORT_VERSIONS)}); update ideogram-trt"
        )
    lines = report.splitlines()
    if not lines or lines[0].strip() != REPORT_HEADER:
        raise AnatomyError(f"not a TensorRT layer report (it does not start with {REPORT_HEADER!r})")
    layers = []
    for line in lines[1:]:
        if not line.strip():
            break  # the I/O tensors and engine metadata follow
        match = _LAYER.match(line)
        if match is None:
            raise AnatomyError(f"unreadable line in the TensorRT-RTX {version} build report: {line[:120]!r}")
        layers.append(
            EngineLayer(
                name=match["name"],
                layer_type=match["type"],
                inputs=_tensors(match["inputs"], line),
                constants=_tensors(match["constants"], line),
                outputs=_tensors(match["outputs"], line),
                tactic=match["tactic"],
                onnx_layers=tuple(_ONNX_LAYER.findall(match["meta"] or "")),
            )
        )
    if not layers:
        raise AnatomyError("the build report lists no layers")
    return layers


def layer_reports(messages: list[str]) -> list[str]:
    """The ``Layers:`` messages of a build's log (one per engine the builder reports)."""
    return [m for m in messages if m.startswith(REPORT_HEADER)]


def block_patterns(layers: list[EngineLayer]) -> dict[int, BlockPattern]:
    """Per DiT block: GEMMs, FP8 GEMMs, fused attention kernels and their precision, other kernels."""
    by_block: dict[int, list[EngineLayer]] = {}
    for layer in layers:
        if layer.block is not None and layer.kind not in (LayerClass.SHAPE, LayerClass.SYNC):
            by_block.setdefault(layer.block, []).append(layer)
    patterns = {}
    for block, members in sorted(by_block.items()):
        gemms = [m for m in members if m.kind in (LayerClass.GEMM, LayerClass.DEQUANT_GEMM)]
        attention = [m for m in members if m.kind is LayerClass.ATTENTION]
        patterns[block] = BlockPattern(
            gemm=len(gemms),
            fp8_gemm=sum(1 for m in gemms if m.precision == "FP8"),
            attention=len(attention),
            attention_precision="+".join(sorted({m.precision for m in attention})) or "-",
            other=len(members) - len(gemms) - len(attention),
        )
    return patterns
