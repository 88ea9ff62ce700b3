"""Build a deep graph from one traced block: trace the prefix, one block per distinct block structure and the
suffix with the dynamo exporter, then copy the block graph once per layer with that layer's weights.

The dynamo exporter costs about a second per decoder layer on two cores (its symbolic-shape tracing is per
op), so the 36-layer text encoder took ~50 s and a full-size DiT minutes; traced once and copied, any depth
exports in a few seconds. The copies are exact: every layer has the same code, only its initializers differ,
and the result is checked against the PyTorch module in ONNX Runtime like any other graph.
"""

from __future__ import annotations

import ast
import functools
import inspect
from collections.abc import Sequence
from dataclasses import dataclass

import onnx_ir as ir
import torch
from torch import nn

from ideogram_trt.export.qdq import ONNX_TRANSLATIONS


@dataclass(frozen=True)
class Piece:
    """A module traced on its own: ``module(*inputs)`` with the given names and dynamic axes."""

    module: nn.Module
    inputs: tuple[torch.Tensor, ...]
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    dynamic_shapes: dict[str, dict[int, object]]


def _cache_torchlib_catalog() -> None:
    """torch.onnx rebuilds its operator catalog on every export call by converting ~500 onnxscript functions'
    source (1.1 s each time on two cores); the catalog depends only on the installed packages, so build it once
    per process. Best effort: if torch moves the hook, exports are just slower."""
    try:
        from torch.onnx._internal.exporter import _registration

        apis = _registration.onnxscript_apis
        if not hasattr(apis.get_torchlib_ops, "cache_info"):
            apis.get_torchlib_ops = functools.lru_cache(maxsize=1)(apis.get_torchlib_ops)
    except (ImportError, AttributeError):
        pass


def trace(piece: Piece, opset: int) -> ir.Model:
    _cache_torchlib_catalog()
    piece.module.eval()
    with torch.no_grad():
        program = torch.onnx.export(
            piece.module,
            piece.inputs,
            dynamo=True,
            opset_version=opset,
            input_names=list(piece.input_names),
            output_names=list(piece.output_names),
            dynamic_shapes=_positional_shapes(piece),
            custom_translation_table=ONNX_TRANSLATIONS,
            optimize=False,  # the optimizer costs minutes on deep graphs and could fold DequantizeLinear away
            verbose=False,
        )
    return program.model


def _positional_shapes(piece: Piece) -> tuple[object, ...]:
    """Dynamic axes shaped like ``forward``'s parameters: torch.export wants a ``*args`` parameter's axes as one
    nested tuple, and cannot key them by name."""
    axes = [piece.dynamic_shapes.get(name) for name in piece.input_names]
    shapes: list[object] = []
    position = 0
    for parameter in inspect.signature(piece.module.forward).parameters.values():
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            shapes.append(tuple(axes[position:]))
            position = len(axes)
        elif position < len(axes):
            shapes.append(axes[position])
            position += 1
    return tuple(shapes)


def module_scope(node: ir.Node) -> str:
    """The module a node came from, without the tracing wrapper's attribute (``attention.qkv``)."""
    scopes = node.metadata_props.get("pkg.torch.onnx.name_scopes")
    if not scopes:
        return ""
    parts = [p for p in ast.literal_eval(scopes) if p]
    # [wrapper attr, module paths..., op name]
    if len(parts) < 2 or "." not in parts[-2]:
        return ""
    return parts[-2].split(".", 1)[1]


def tidy(graph: ir.Graph, module_prefix: str = "") -> None:
    """Name nodes after their module (``layers.3.attention.qkv/QuantizeLinear_1``) and drop the exporter's
    per-node metadata (stack traces: most of a small graph's bytes)."""
    counts: dict[str, int] = {}
    for node in graph:
        module = ".".join(p for p in (module_prefix, module_scope(node)) if p)
        base = f"{module}/{node.op_type}" if module else node.op_type
        counts[base] = counts.get(base, 0) + 1
        node.name = f"{base}_{counts[base]}"
        node.metadata_props.clear()


def rename_initializers(graph: ir.Graph, wrapper_attr: str, new_prefix: str) -> None:
    """``<wrapper_attr>.x.weight`` → ``<new_prefix>x.weight`` (the model's own parameter names)."""
    for value in list(graph.initializers.values()):
        name = value.name or ""
        if name.startswith(wrapper_attr + "."):
            graph.initializers.pop(name)
            value.name = new_prefix + name[len(wrapper_attr) + 1 :]
            graph.register_initializer(value)


def _adopt(main: ir.Graph, part: ir.Graph, inputs: Sequence[ir.Value], value_prefix: str) -> list[ir.Value]:
    """Move every node and initializer of ``part`` into ``main``, wiring ``part``'s inputs to ``inputs``.
    Returns the values that were ``part``'s outputs."""
    if len(inputs) != len(part.inputs):
        raise ValueError(f"{len(inputs)} values for {len(part.inputs)} inputs")
    for placeholder, value in zip(list(part.inputs), inputs, strict=True):
        ir.convenience.replace_all_uses_with(placeholder, value)
    outputs = list(part.outputs)
    part.outputs.clear()
    for value in list(part.initializers.values()):
        part.initializers.pop(value.name or "")
        main.register_initializer(value)
    for node in list(part):
        part.remove(node, safe=False)
        for output in node.outputs:
            if output.name and output not in outputs:
                output.name = f"{value_prefix}{output.name}"
        main.append(node)
    return outputs


def stitch(
    prefix: ir.Model,
    blocks: Sequence[tuple[ir.Model, dict[str, torch.Tensor]]],
    suffix: ir.Model,
    block_attr: str,
    suffix_inputs: Sequence[str | int],
    layer_name: str = "layers",
) -> ir.Model:
    """prefix → blocks[0] → … → suffix, as one model.

    The prefix's outputs are ``(h, *extras)``: every block takes them and returns the new ``h``. Each block is a
    template (traced with some layer) plus that layer's state: the template's initializers named
    ``<block_attr>.<param>`` take the layer's tensors and become ``<layer_name>.<i>.<param>``. ``suffix_inputs``
    wires the suffix: an int ``k`` is the output of block ``k`` ("h" after that layer), a string names a prefix
    output ("extra:<j>") or a graph input.
    """
    main = prefix.graph
    carry = list(main.outputs)
    main.outputs.clear()
    h, extras = carry[0], carry[1:]
    after_block: list[ir.Value] = []
    for index, (template, state) in enumerate(blocks):
        part = template.graph.clone()
        for value in list(part.initializers.values()):
            name = value.name or ""
            if not name.startswith(block_attr + "."):
                continue
            param = name[len(block_attr) + 1 :]
            tensor = state[param]
            value.const_value = ir.tensor(tensor.detach().contiguous(), name=f"{layer_name}.{index}.{param}")
            part.initializers.pop(name)
            value.name = f"{layer_name}.{index}.{param}"
            part.register_initializer(value)
        for value in list(part.initializers.values()):
            name = value.name or ""
            if not name.startswith(f"{layer_name}.{index}."):  # a constant of the template, not a weight
                part.initializers.pop(name)
                value.name = f"{layer_name}.{index}/{name}"
                part.register_initializer(value)
        for node in part:
            node.name = f"{layer_name}.{index}.{node.name}" if node.name else node.name
        (h,) = _adopt(main, part, [h, *extras], f"{layer_name}.{index}/")
        after_block.append(h)

    graph_inputs = {v.name: v for v in main.inputs}
    wired: list[ir.Value] = []
    for source in suffix_inputs:
        if isinstance(source, int):
            wired.append(after_block[source])
        elif source.startswith("extra:"):
            wired.append(extras[int(source.split(":", 1)[1])])
        else:
            wired.append(graph_inputs[source])
    outputs = _adopt(main, suffix.graph, wired, "head/")  # keeps the output names: they are the graph's
    main.outputs.extend(outputs)
    return prefix


def block_signature(block: nn.Module) -> tuple:
    """Blocks with equal signatures trace to the same graph (structure, dtypes and which tensors exist)."""
    return tuple(
        (
            name,
            type(module).__name__,
            tuple((k, str(v.dtype), tuple(v.shape)) for k, v in module._buffers.items() if v is not None),
        )
        for name, module in block.named_modules()
    )
