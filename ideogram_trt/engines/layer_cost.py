"""FLOPs and bytes of each engine layer, as polynomials in the shape symbols, from the ONNX nodes it runs.

An engine layer's report gives its tensors with ``-1`` for every dynamic axis, which does not say whether a row
count is ``B`` or ``B·L``. The ONNX graph does: the export names its axes (``B``, ``T``, ``N``, ``L``, ``GH``…;
``core.shapes``) and shape inference carries them through, products and sums included (``4*GH*GW``, ``T+N``).
So each layer's cost is computed from the ONNX nodes its metadata names (docs/ARCHITECTURE.md §14):

- FLOPs: ``2·|Y|·K`` per MatMul/Gemm (``K`` the contracted width), ``2·|Y|·|W|/C_out`` per Conv, ``2·|X|·|W|/C_in``
  per ConvTranspose; elementwise work is not counted (it is bandwidth-bound);
- bytes: every tensor the layer's nodes read that they do not make (activations and weights), plus every tensor
  they make that something outside them reads: what the fused kernel moves through memory.

The result is kept symbolic so one build serves every batch and prompt length; ``Poly.evaluate`` binds them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ideogram_trt.engines.anatomy import EngineLayer, LayerClass

Monomial = tuple[tuple[str, int], ...]  # sorted (symbol, power) pairs; () is the constant term
_FACTOR = re.compile(r"^(?:\d+|[A-Za-z_][A-Za-z0-9_]*)$")


class UnresolvedSymbol(KeyError):
    """A shape symbol the sizes given do not bind (e.g. an exporter-internal ``unk__3``)."""


@dataclass(frozen=True)
class Poly:
    """A polynomial with float coefficients over shape symbols."""

    terms: tuple[tuple[float, Monomial], ...] = ()

    @staticmethod
    def const(value: float) -> Poly:
        return Poly(((float(value), ()),)) if value else Poly()

    @staticmethod
    def symbol(name: str) -> Poly:
        return Poly(((1.0, ((name, 1),)),))

    def __add__(self, other: Poly) -> Poly:
        merged: dict[Monomial, float] = {}
        for coef, mono in (*self.terms, *other.terms):
            merged[mono] = merged.get(mono, 0.0) + coef
        return Poly(tuple(sorted(((c, m) for m, c in merged.items() if c), key=lambda t: t[1])))

    def __mul__(self, other: Poly) -> Poly:
        result = Poly()
        for c1, m1 in self.terms:
            for c2, m2 in other.terms:
                powers = dict(m1)
                for name, power in m2:
                    powers[name] = powers.get(name, 0) + power
                result = result + Poly(((c1 * c2, tuple(sorted(powers.items()))),))
        return result

    def scale(self, factor: float) -> Poly:
        return Poly(tuple((c * factor, m) for c, m in self.terms if c * factor))

    @property
    def symbols(self) -> set[str]:
        return {name for _, mono in self.terms for name, _ in mono}

    def evaluate(self, values: Mapping[str, int]) -> float:
        total = 0.0
        for coef, mono in self.terms:
            term = coef
            for name, power in mono:
                if name not in values:
                    raise UnresolvedSymbol(name)
                term *= values[name] ** power
            total += term
        return total

    def to_json(self) -> list[list[Any]]:
        return [[c if not float(c).is_integer() else int(c), dict(m)] for c, m in self.terms]

    @staticmethod
    def from_json(raw: object) -> Poly:
        if not isinstance(raw, list):
            raise ValueError("a polynomial is a list of [coefficient, {symbol: power}] terms")
        result = Poly()
        for term in raw:
            if not (isinstance(term, list) and len(term) == 2 and isinstance(term[1], dict)):
                raise ValueError(f"bad polynomial term {term!r:.60}")
            coef, powers = term
            if isinstance(coef, bool) or not isinstance(coef, int | float) or not math.isfinite(coef):
                raise ValueError(f"bad polynomial coefficient {coef!r:.30}")
            if not all(isinstance(k, str) and isinstance(v, int) and v > 0 for k, v in powers.items()):
                raise ValueError(f"bad polynomial powers {powers!r:.60}")
            result = result + Poly(((float(coef), tuple(sorted(powers.items()))),))
        return result


def dim_poly(text: str) -> Poly | None:
    """``4*GH*GW`` or ``T+N`` as a polynomial; None for anything else (then the tensor's size is unknown)."""
    total = Poly()
    for summand in text.replace(" ", "").split("+"):
        term = Poly.const(1)
        for factor in summand.split("*"):
            if not _FACTOR.match(factor):
                return None
            term = term * (Poly.const(int(factor)) if factor.isdigit() else Poly.symbol(factor))
        total = total + term
    return total


@dataclass(frozen=True)
class LayerCost:
    flops: Poly
    bytes: Poly
    unresolved: int = 0  # tensors of the layer whose size the graph does not give (counted as zero bytes)


@dataclass(frozen=True)
class _Tensor:
    dims: tuple[Poly | None, ...] | None  # None: rank unknown

    @property
    def elements(self) -> Poly | None:
        if self.dims is None or any(d is None for d in self.dims):
            return None
        result = Poly.const(1)
        for dim in self.dims:
            assert dim is not None
            result = result * dim
        return result


def _tensor_table(model: Any) -> dict[str, _Tensor]:
    def dims_of(shape: Any) -> tuple[Poly | None, ...]:
        found: list[Poly | None] = []
        for d in shape.dim:
            if d.HasField("dim_value"):
                found.append(Poly.const(d.dim_value))
            else:
                found.append(dim_poly(d.dim_param) if d.dim_param else None)
        return tuple(found)

    graph = model.graph
    table: dict[str, _Tensor] = {}
    for value in (*graph.input, *graph.output, *graph.value_info):
        kind = value.type.tensor_type
        table[value.name] = _Tensor(dims_of(kind.shape) if kind.HasField("shape") else None)
    for init in graph.initializer:
        table[init.name] = _Tensor(tuple(Poly.const(int(d)) for d in init.dims))
    for node in graph.node:  # Constant nodes: scales and shapes, small but real reads
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    table[node.output[0]] = _Tensor(tuple(Poly.const(int(d)) for d in attr.t.dims))
    return table


def _node_flops(node: Any, table: Mapping[str, _Tensor]) -> tuple[Poly, bool]:
    """(FLOPs, known) of one node: products and convolutions only."""
    if node.op_type not in ("MatMul", "Gemm", "Conv", "ConvTranspose"):
        return Poly(), True
    out = table.get(node.output[0])
    elements = out.elements if out is not None else None
    if node.op_type in ("MatMul", "Gemm"):
        a = table.get(node.input[0])
        trans_a = any(attr.name == "transA" and attr.i for attr in node.attribute)
        k = None if a is None or not a.dims else a.dims[-2 if trans_a and node.op_type == "Gemm" else -1]
        if elements is None or k is None:
            return Poly(), False
        return (elements * k).scale(2), True
    weight = table.get(node.input[1])
    if weight is None or weight.dims is None or any(d is None for d in weight.dims[1:]):
        return Poly(), False
    per_output = Poly.const(1)
    for dim in weight.dims[1:]:  # Conv: C_in/group·k_h·k_w per output; ConvTranspose: C_out/group·k_h·k_w per input
        assert dim is not None
        per_output = per_output * dim
    if node.op_type == "ConvTranspose":
        source = table.get(node.input[0])
        elements = source.elements if source is not None else None
    if elements is None:
        return Poly(), False
    return (elements * per_output).scale(2), True


_ENGINE_BYTES = {"Float": 4, "Half": 2, "BFloat16": 2, "FP8": 1, "Int8": 1, "UInt8": 1, "Bool": 1, "Int32": 4,
                 "Int64": 8, "FP4": 0.5, "Int4": 0.5}  # fmt: skip


def _resolve(dims: tuple[int, ...], candidates: list[_Tensor], used: set[int]) -> Poly | None:
    """The element count of an engine tensor (``-1`` on dynamic axes) from the ONNX tensor it is: one of the same
    rank whose static sizes agree, else one with the same static factor (the engine flattens [B, L, D] to
    [-1, D]); a candidate not matched yet first."""
    if -1 not in dims:
        return Poly.const(math.prod(dims))
    static = math.prod(d for d in dims if d != -1)

    def same_rank(t: _Tensor) -> bool:
        # A dynamic axis is a symbolic size in the graph (a weight's static sizes never match one); a static axis
        # is the same number, or a symbol the profile fixed (N in a bucket's profile).
        assert t.dims is not None
        return len(t.dims) == len(dims) and all(
            p is not None and (bool(p.symbols) if d == -1 else (bool(p.symbols) or p.terms == ((float(d), ()),)))
            for d, p in zip(dims, t.dims, strict=True)
        )

    def same_factor(t: _Tensor) -> bool:
        elements = t.elements
        if elements is None or len(elements.terms) != 1:
            return False
        return elements.terms[0][0] == static and bool(elements.terms[0][1])

    usable = [(i, t) for i, t in enumerate(candidates) if t.dims is not None and t.elements is not None]
    for test in (same_rank, same_factor):
        matches = [(i, t) for i, t in usable if test(t)]
        matches.sort(key=lambda item: item[0] in used)
        if matches:
            index, tensor = matches[0]
            used.add(index)
            return tensor.elements
    return None


def _attention_output(members: list[Any], table: Mapping[str, _Tensor]) -> tuple[Poly, Poly] | None:
    """Self-attention's output O = [B, H, S, d] (the PV product) as (|O|, S). QKᵀ and PV cost 2·|O|·S FLOPs
    each, and q, k, v and O each hold |O| elements; the key length shape inference may lose is S again."""
    for node in members:
        out = table.get(node.output[0]) if node.op_type == "MatMul" else None
        if out is None or out.dims is None or len(out.dims) < 3 or out.elements is None:
            continue
        length, width = out.dims[-2], out.dims[-1]
        if length is not None and width is not None and not width.symbols:  # PV: [.., S, d], d static
            return out.elements, length
    return None


_COMPUTE = (LayerClass.GEMM, LayerClass.DEQUANT_GEMM, LayerClass.CONV)


def onnx_layer_costs(onnx_path: Path, layers: list[EngineLayer]) -> list[LayerCost | None]:
    """The cost of each layer of an engine built from ``onnx_path``; None for a layer whose metadata names no
    node of the graph (a copy TensorRT inserted). Symbols the graph does not name (``unk__3``) count as
    unresolved tensors, not as zero-cost ones silently."""
    import onnx

    # data_prop carries shape arithmetic through Reshape and Concat, which plain inference turns into unknowns.
    model = onnx.shape_inference.infer_shapes(onnx.load(str(onnx_path), load_external_data=False), data_prop=True)
    table = _tensor_table(model)
    nodes = {node.name: node for node in model.graph.node}
    consumers: dict[str, set[str]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, set()).add(node.name)
    graph_outputs = {value.name for value in model.graph.output}
    known = {"B", "T", "N", "L", "GH", "GW", "H", "W"}

    costs: list[LayerCost | None] = []
    for layer in layers:
        members = [nodes[n] for n in dict.fromkeys(layer.onnx_layers) if n in nodes]
        if not members:
            costs.append(None)
            continue
        names = {node.name for node in members}
        made = {out for node in members for out in node.output if out}
        read_names = sorted({i for n in members for i in n.input if i and i not in made})
        written_names = sorted(o for o in made if o in graph_outputs or consumers.get(o, set()) - names)
        read = [table[i] for i in read_names if i in table]
        written = [table[o] for o in written_names if o in table]
        flops, unresolved = Poly(), 0
        if layer.kind is LayerClass.ATTENTION:
            output = _attention_output(members, table)
            if output is None:
                costs.append(LayerCost(Poly(), Poly(), len(layer.inputs) + len(layer.outputs) + 1))
                continue
            elements, length = output
            width = sum(_ENGINE_BYTES.get(t.dtype, 2) for t in (*layer.inputs, *layer.outputs))
            costs.append(LayerCost((elements * length).scale(4), elements.scale(width)))
            continue
        if layer.kind in _COMPUTE:  # an elementwise kernel may name a Gemm node whose bias add it runs
            for node in members:
                node_flops, found = _node_flops(node, table)
                flops, unresolved = flops + node_flops, unresolved + (not found)
        moved = Poly()
        for tensors, candidates in ((layer.inputs, read), (layer.constants, []), (layer.outputs, written)):
            clean = [t for t in candidates if t.elements is not None and t.elements.symbols <= known]
            used: set[int] = set()
            for info in tensors:
                count = _resolve(info.dims, clean, used)
                if count is None or info.dtype not in _ENGINE_BYTES:
                    unresolved += 1
                    continue
                moved = moved + count.scale(_ENGINE_BYTES[info.dtype])
        costs.append(LayerCost(flops, moved, unresolved))
    return costs
