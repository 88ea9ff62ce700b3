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

import json
import re
from collections import Counter
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ideogram_trt.core.errors import IdeogramTrtError
from ideogram_trt.core.records import Fields, read_object

if TYPE_CHECKING:
    from ideogram_trt.engines.layer_cost import LayerCost

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
    GEMM = "gemm"  # a matrix multiply kernel (its input precision says FP8 or not), alone or fused with a bias
    DEQUANT_GEMM = "dequant_gemm"  # a runtime fusion of a weight dequantize (Cast·Mul·Cast) and a GEMM
    CONV = "conv"  # a convolution (TensorRT-RTX calls it "correlation")
    ATTENTION = "attention"  # a fused multi-head attention kernel
    DEQUANT = "dequant"  # a weight dequantize on its own (FP8 constant in, wider type out): traffic a fusion saves
    REFORMAT = "reformat"  # data movement only: copies, transposes, reshapes, slices, concatenations, casts
    ELEMENTWISE = "elementwise"  # fused elementwise and normalization kernels
    SHAPE = "shape"  # shape computation, no tensor data
    SYNC = "sync"  # signal/wait between the builder's auxiliary streams

    @property
    def is_gemm(self) -> bool:
        return self in (LayerClass.GEMM, LayerClass.DEQUANT_GEMM)

    @property
    def runs_kernel(self) -> bool:
        return self not in (LayerClass.SHAPE, LayerClass.SYNC)


# Myelin names a fused kernel __myl_<Op><Op>…; these ops only move or convert data.
_MOVES = {"Move", "Resh", "Tran", "Slic", "Conc", "Copy", "Cast", "Expa", "Gath", "Pad"}
_MYELIN_OPS = re.compile(r"[A-Z][a-z0-9]*")
_PROFILE_TAG = re.compile(r"\[profile (\d+)\]")
_MYELIN_GRAPH = re.compile(r"_myl(\d+)_\d+$")  # TensorRT-RTX builds one myelin graph per optimization profile


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
    profile: int = 0  # the optimization profile this layer runs in (each profile has its own layers)
    stream: int = 0  # the builder's stream (auxiliary streams let independent kernels overlap)

    @property
    def kind(self) -> LayerClass:
        kind = self.layer_type.lower()
        if kind in ("shape_call", "shape", "noop", "constant"):
            return LayerClass.SHAPE
        if kind in ("signal", "wait"):
            return LayerClass.SYNC
        if "mha" in self.tactic.lower() or "mha" in self.name.lower():
            return LayerClass.ATTENTION
        if kind in ("correlation", "convolution", "deconvolution"):
            return LayerClass.CONV
        ops = self._myelin_ops
        fp8_weight = any(t.dtype == "FP8" for t in self.constants)
        if kind in ("gemm", "matrixmultiply", "fullyconnected") or "Fc" in ops:
            # __myl_CastMulCastFc: the FP8 weight dequantized inside the GEMM (bf16 math); bf16 Fc: a fused bias
            return LayerClass.DEQUANT_GEMM if fp8_weight and self.precision != "FP8" else LayerClass.GEMM
        if kind == "reformat" or (ops and set(ops) <= _MOVES):
            return LayerClass.REFORMAT
        if fp8_weight and ops[:2] == ["Cast", "Mul"]:
            return LayerClass.DEQUANT
        return LayerClass.ELEMENTWISE

    @property
    def _myelin_ops(self) -> list[str]:
        if not self.name.startswith("__myl_"):
            return []
        fused = _MYELIN_GRAPH.sub("", self.name.removeprefix("__myl_"))
        return _MYELIN_OPS.findall(fused)

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
    other: int  # every other kernel of the block (elementwise, reformat, dequant)


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
                profile=layer_profile(match["name"]),
                stream=int(match["stream"]),
            )
        )
    if not layers:
        raise AnatomyError("the build report lists no layers")
    return layers


def layer_profile(name: str) -> int:
    """The optimization profile of a layer, from its name: datacenter TensorRT tags a later profile's layers
    ``[profile N]``; TensorRT-RTX also numbers the myelin graph of profile N ``_mylN_``."""
    tag = _PROFILE_TAG.search(name)
    if tag:
        return int(tag.group(1))
    graph = _MYELIN_GRAPH.search(name)
    return int(graph.group(1)) if graph else 0


def layer_reports(messages: list[str]) -> list[str]:
    """The ``Layers:`` messages of a build's log (one per engine the builder reports)."""
    return [m for m in messages if m.startswith(REPORT_HEADER)]


def block_patterns(layers: list[EngineLayer]) -> dict[int, BlockPattern]:
    """Per DiT block: GEMMs, FP8 GEMMs, fused attention kernels and their precision, other kernels."""
    by_block: dict[int, list[EngineLayer]] = {}
    for layer in layers:
        if layer.block is not None and layer.kind.runs_kernel:
            by_block.setdefault(layer.block, []).append(layer)
    patterns = {}
    for block, members in sorted(by_block.items()):
        gemms = [m for m in members if m.kind.is_gemm]
        attention = [m for m in members if m.kind is LayerClass.ATTENTION]
        patterns[block] = BlockPattern(
            gemm=len(gemms),
            fp8_gemm=sum(1 for m in gemms if m.precision == "FP8"),
            attention=len(attention),
            attention_precision="+".join(sorted({m.precision for m in attention})) or "-",
            other=len(members) - len(gemms) - len(attention),
        )
    return patterns


# --- the anatomy file beside each plan ---------------------------------------------------------------------------

ANATOMY_FORMAT = 1
ANATOMY_SUFFIX = ".anatomy.json"


class AnatomySource(str, Enum):
    BUILD_REPORT = "build-report"  # the TensorRT-RTX builder's "Layers:" log message (no GPU needed)
    ENGINE_INSPECTOR = "engine-inspector"  # IEngineInspector's JSON of a deserialized plan (a GPU needed)


@dataclass(frozen=True)
class ProfileInfo:
    index: int
    bucket: str | None  # None: a profile serving every bucket (the text encoder)


@dataclass(frozen=True)
class EngineAnatomy:
    """What one plan holds, per optimization profile: its layers and, where the ONNX graph was at hand, each
    layer's symbolic FLOPs and bytes (``engines.layer_cost``). Written beside the plan by ``build-engines``."""

    engine: str
    graph: str  # the component's name (core.components.Component value)
    source: AnatomySource
    version: str  # of the TensorRT flavor that built the plan
    profiles: tuple[ProfileInfo, ...]
    layers: tuple[EngineLayer, ...]
    costs: tuple[LayerCost | None, ...]  # one per layer; None where the graph names none of its nodes

    def profile_layers(self, index: int) -> list[tuple[EngineLayer, LayerCost | None]]:
        return [(layer, cost) for layer, cost in zip(self.layers, self.costs, strict=True) if layer.profile == index]

    def profile_for(self, bucket: str | None) -> ProfileInfo:
        for profile in self.profiles:
            if profile.bucket in (None, bucket):
                return profile
        names = ", ".join(p.bucket or "any" for p in self.profiles)
        raise AnatomyError(f"engine {self.engine} has no profile for bucket {bucket} (it has {names})")

    def to_json(self) -> str:
        def tensors(items: tuple[TensorInfo, ...]) -> list[list[Any]]:
            return [[t.name, list(t.dims), t.dtype] for t in items]

        layers = []
        for layer, cost in zip(self.layers, self.costs, strict=True):
            entry: dict[str, Any] = {
                "name": layer.name, "type": layer.layer_type, "tactic": layer.tactic, "profile": layer.profile,
                "stream": layer.stream,
                "onnx": list(layer.onnx_layers), "inputs": tensors(layer.inputs),
                "constants": tensors(layer.constants), "outputs": tensors(layer.outputs),
            }  # fmt: skip
            if cost is not None:
                entry["cost"] = {"flops": cost.flops.to_json(), "bytes": cost.bytes.to_json(),
                                 "unresolved": cost.unresolved}  # fmt: skip
            layers.append(entry)
        body = {
            "format": ANATOMY_FORMAT, "engine": self.engine, "graph": self.graph, "source": self.source.value,
            "version": self.version, "profiles": [{"index": p.index, "bucket": p.bucket} for p in self.profiles],
            "layers": layers,
        }  # fmt: skip
        return json.dumps(body, indent=None, separators=(",", ":")) + "\n"

    @classmethod
    def load(cls, path: Path) -> EngineAnatomy:
        fix = "rebuild the engine set with this ideogram-trt"
        body = read_object(path, "engine anatomy", AnatomyError, fix)
        f = Fields(path, AnatomyError, fix)
        if body.get("format") != ANATOMY_FORMAT:
            raise f.fail("format", f"is {body.get('format')!r}; this ideogram-trt reads {ANATOMY_FORMAT}")
        try:
            source = AnatomySource(f.get(body, "source", str, ""))
        except ValueError:
            raise f.fail("source", f"must be one of {', '.join(s.value for s in AnatomySource)}") from None
        profiles = tuple(
            ProfileInfo(f.count(p, "index", f"profiles.{i}", 0, 1 << 10),
                        f.get(p, "bucket", str, f"profiles.{i}", optional=True))
            for i, p in enumerate(f.get(body, "profiles", list, ""))
        )  # fmt: skip
        layers: list[EngineLayer] = []
        costs: list[LayerCost | None] = []
        for i, raw in enumerate(f.get(body, "layers", list, "")):
            at = f"layers.{i}"

            def tensors(key: str, raw: object = raw, at: str = at) -> tuple[TensorInfo, ...]:
                items = f.get(raw, key, list, at)
                if not all(_is_tensor(t) for t in items):
                    raise f.fail(f"{at}.{key}", "must be a list of [name, [dims], dtype]")
                return tuple(TensorInfo(t[0], tuple(t[1]), t[2]) for t in items)

            onnx_layers = f.strings(raw, "onnx", at)
            layers.append(
                EngineLayer(
                    name=f.get(raw, "name", str, at), layer_type=f.get(raw, "type", str, at),
                    inputs=tensors("inputs"), constants=tensors("constants"), outputs=tensors("outputs"),
                    tactic=f.get(raw, "tactic", str, at), onnx_layers=tuple(onnx_layers),
                    profile=f.count(raw, "profile", at, 0, 1 << 10),
                    stream=f.count(raw, "stream", at, 0, 1 << 10) if "stream" in raw else 0,
                )
            )  # fmt: skip
            cost = f.get(raw, "cost", dict, at, optional=True)
            if cost is None:
                costs.append(None)
                continue
            from ideogram_trt.engines.layer_cost import LayerCost, Poly

            try:
                flops, moved = Poly.from_json(cost.get("flops")), Poly.from_json(cost.get("bytes"))
            except ValueError as exc:
                raise f.fail(f"{at}.cost", str(exc)) from None
            costs.append(LayerCost(flops, moved, f.count(cost, "unresolved", f"{at}.cost", 0, 1 << 20)))
        return cls(
            engine=f.get(body, "engine", str, ""), graph=f.get(body, "graph", str, ""), source=source,
            version=f.get(body, "version", str, ""), profiles=profiles, layers=tuple(layers), costs=tuple(costs),
        )  # fmt: skip


def _is_tensor(item: object) -> bool:
    return (
        isinstance(item, list) and len(item) == 3 and isinstance(item[0], str) and isinstance(item[2], str)
        and isinstance(item[1], list) and all(type(d) is int for d in item[1])
    )  # fmt: skip
