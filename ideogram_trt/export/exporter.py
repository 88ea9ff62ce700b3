"""Export a checkpoint's graphs to ONNX: build each module under the recipe, trace it with the dynamo exporter
(custom ops → native Q/DQ), name the dynamic axes after the contracts, save (external data above 2 GB), lint,
and write a JSON sidecar per graph.

Everything is written into a staging folder next to the output and moved into place only when every graph has
passed the lint, so a failed or interrupted export leaves no partial graph behind.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import onnx_ir as ir
import onnxscript.optimizer
import torch
from torch import nn

from ideogram_trt import __version__
from ideogram_trt.core.components import DEFAULT_COMPONENTS, Component
from ideogram_trt.core.contracts import EngineContract
from ideogram_trt.core.digest import file_digest
from ideogram_trt.core.errors import IdeogramTrtError, InputError
from ideogram_trt.core.files import atomic_write, check_tree, copy_tree, fsync_dir, remove_stale, staging_name
from ideogram_trt.core.lora import LoraSlots
from ideogram_trt.core.progress import stage
from ideogram_trt.core.recipes import DEFAULT_OPSET
from ideogram_trt.core.records import TensorEntry
from ideogram_trt.core.sidecar import (
    INDEX_FILE,
    TOKENIZER_DIR,
    CalibrationSource,
    CheckpointSource,
    ExportIndex,
    ExportSettings,
    ExportSidecar,
    Provenance,
    QuantizationSummary,
    Rope,
    graph_path,
)
from ideogram_trt.export.calibration import Calibration
from ideogram_trt.export.graphs import WRAPPERS, LoraDiTGraph, contract_of, dynamic_shapes, example_inputs, stack_for
from ideogram_trt.export.lint import lint_file
from ideogram_trt.export.lora import add_side_path, lora_shape
from ideogram_trt.export.quant_modules import QuantAttention, QuantLinear, apply_plan
from ideogram_trt.export.recipes import GraphDType, QuantPlan, Recipe, quant_plan
from ideogram_trt.export.stitch import Piece, block_signature, rename_initializers, stitch, tidy, trace
from ideogram_trt.model.build import dit_from_state, load_vae_decoder, text_encoder_from_state, text_encoder_state
from ideogram_trt.model.checkpoint import Checkpoint, open_checkpoint
from ideogram_trt.model.dit import rope_inv_freq
from ideogram_trt.model.fp8 import is_fp8

# protobuf refuses messages of 2 GiB; stay clear of it.
EXTERNAL_DATA_THRESHOLD = 1_800_000_000


class ExternalData(str, Enum):
    AUTO = "auto"  # above 1.8 GB of weights
    ALWAYS = "always"
    NEVER = "never"


@dataclass(frozen=True)
class ExportOptions:
    recipe: Recipe
    dtype: GraphDType
    graphs: tuple[Component, ...] = DEFAULT_COMPONENTS
    calibration: Path | None = None
    quantize_attention: bool = False
    quantize_text_encoder: bool = False
    excluded: tuple[str, ...] = ()
    opset: int = DEFAULT_OPSET
    external_data: ExternalData = ExternalData.AUTO
    # LoRA-ready conditional DiTs (docs/LORA.md §2): the side path for total adapter ranks up to this.
    lora_rank: int | None = None

    def lora_slots(self, graph: Component, checkpoint: Checkpoint) -> LoraSlots | None:
        """The side path ``graph`` gets: the conditional DiTs' with ``lora_rank``, nothing for the others."""
        if self.lora_rank is None or graph.spec.serves is not Component.DIT_COND:
            return None
        (part,) = graph.spec.part_names
        return LoraSlots(self.lora_rank, lora_shape(checkpoint.dit_config(part)))

    def stores_external(self, weight_bytes: int) -> bool:
        """Whether a graph with ``weight_bytes`` of weights keeps them in a ``.onnx.data`` file."""
        return self.external_data is ExternalData.ALWAYS or (
            self.external_data is ExternalData.AUTO and weight_bytes > EXTERNAL_DATA_THRESHOLD
        )

    def plan(self, graph: Component) -> QuantPlan:
        return quant_plan(
            graph.spec.serves, self.recipe, self.quantize_attention, self.quantize_text_encoder, self.excluded
        )


@dataclass(frozen=True)
class ExportedGraph:
    graph: Component
    path: Path
    sidecar: ExportSidecar = field(repr=False)


def build_module(
    checkpoint: Checkpoint,
    graph: Component,
    recipe: Recipe,
    dtype: torch.dtype,
    plan: QuantPlan,
    amax: dict[str, float] | None,
) -> nn.Module:
    """The graph's module under ``recipe``: the export source and the PyTorch fake-quant reference."""
    if graph is Component.VAE_DECODER:  # the release's VAE has no FP8 weights; recipes leave it alone
        return WRAPPERS[graph](load_vae_decoder(checkpoint, dtype)).eval()
    if graph is Component.TEXT_ENCODER:
        state = text_encoder_state(checkpoint)
        module: nn.Module = text_encoder_from_state(checkpoint, _module_weights(state, recipe, dtype), dtype)
    else:
        (part,) = graph.spec.part_names  # a DiT reads one transformer folder
        state = checkpoint.dit_state(part)
        module = dit_from_state(checkpoint, part, _module_weights(state, recipe, dtype), dtype)
    apply_plan(module, state, plan, recipe.fp8_weights, dtype, amax)
    if recipe.fp8_weights and any(_is_placeholder(t) for t in module.state_dict().values()):
        raise IdeogramTrtError(f"{graph.value}: an FP8 tensor outside a linear layer was not restored (a bug)")
    return WRAPPERS[graph](module).eval()


def _module_weights(state: dict[str, torch.Tensor], recipe: Recipe, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The tensors the float module is built from. A recipe that keeps the FP8 bytes replaces every FP8 linear
    with the stored weight (``apply_plan``), so those weights are never dequantized: a zero-cost placeholder
    (one element, broadcast) stands in. A full-size DiT export then holds 9.3 GB of weights, not 9.3 + 18.6."""
    if not recipe.fp8_weights:
        return state
    return {k: torch.zeros((), dtype=dtype).expand(v.shape) if is_fp8(v) else v for k, v in state.items()}


def _is_placeholder(tensor: torch.Tensor) -> bool:
    return tensor.numel() > 1 and all(stride == 0 for stride in tensor.stride())


def _name_axes(model: ir.Model, contract: EngineContract) -> None:
    """Give every dynamic axis its contract name (B, T, N, T+N, GH, …); static axes keep their sizes."""
    specs = {s.name: s for s in (*contract.inputs, *contract.outputs)}
    for value in [*model.graph.inputs, *model.graph.outputs]:
        spec = specs[value.name]
        if value.shape is None or len(value.shape) != len(spec.shape):
            raise IdeogramTrtError(f"exported {value.name!r} has shape {value.shape}, contract {spec.shape}")
        dims: list[int | str] = []
        for dim, name in zip(value.shape, spec.shape, strict=True):
            dims.append(dim if isinstance(dim, int) else name)
        value.shape = ir.Shape(dims)


def fold_small_constants(model: ir.Model) -> None:
    """Fold the shape arithmetic the exporter leaves behind (TensorRT wants e.g. ReduceMean axes as constants),
    never a Q/DQ: folding DequantizeLinear of an FP8 initializer would store the weight in floating point."""

    def should_fold(node: ir.Node) -> bool | None:
        return False if node.op_type in ("QuantizeLinear", "DequantizeLinear") else None

    onnxscript.optimizer.fold_constants(model, should_fold=should_fold)
    onnxscript.optimizer.remove_unused_nodes(model)


def trace_graph(
    graph: Component, module: nn.Module, inputs: tuple[torch.Tensor, ...], opset: int, lora: LoraSlots | None = None
) -> ir.Model:
    """Trace ``module`` (a ``WRAPPERS`` module) to ONNX: whole, or as prefix + one block per structure + suffix
    stitched back together (deep graphs; see ``export.stitch``)."""
    contract = contract_of(graph, lora)
    stack = stack_for(graph, module, inputs, lora)
    if stack is None:
        model = trace(Piece(module, inputs, contract.input_names, contract.output_names, dynamic_shapes(graph)), opset)
        tidy(model.graph)
        rename_initializers(model.graph, _wrapper_attr(module), "")
        return model
    with torch.no_grad():
        carry = stack.prefix.module(*inputs)
        after_block = []
        h = carry[0]
        for block in stack.blocks:
            h = block(h, *carry[1:])
            after_block.append(h)
    prefix = trace(stack.prefix, opset)
    tidy(prefix.graph)
    rename_initializers(prefix.graph, _wrapper_attr(stack.prefix.module), "")
    templates: dict[tuple, ir.Model] = {}
    blocks = []
    for index, block in enumerate(stack.blocks):
        signature = block_signature(block)
        if signature not in templates:
            h_in = carry[0] if index == 0 else after_block[index - 1]
            piece = Piece(block, (h_in, *carry[1:]), stack.block_inputs, ("h_out",), stack.block_shapes)
            templates[signature] = trace(piece, opset)
            tidy(templates[signature].graph)
        blocks.append((templates[signature], next(iter(block.children())).state_dict()))
    named = dict(zip(contract.input_names, inputs, strict=True))
    suffix_inputs = tuple(
        after_block[s] if isinstance(s, int) else (carry[1 + int(s[6:])] if s.startswith("extra:") else named[s])
        for s in stack.suffix_sources
    )
    suffix_piece = Piece(
        stack.suffix_module, suffix_inputs, stack.suffix_input_names, contract.output_names, stack.suffix_shapes
    )
    suffix = trace(suffix_piece, opset)
    tidy(suffix.graph)
    rename_initializers(suffix.graph, _wrapper_attr(stack.suffix_module), "")
    return stitch(prefix, blocks, suffix, "block", stack.suffix_sources, stack.layer_name)


def _wrapper_attr(module: nn.Module) -> str:
    return next(iter(module._modules))


def save_model(model: ir.Model, path: Path, external: bool) -> None:
    ir.save(model, str(path), external_data=f"{path.name}.data" if external else None)


def _initializer_bytes(model: ir.Model) -> int:
    return sum(v.const_value.nbytes for v in model.graph.initializers.values() if v.const_value is not None)


def _quantization_summary(module: nn.Module) -> QuantizationSummary:
    fp8_weights = [n for n, m in module.named_modules() if isinstance(m, QuantLinear) and m.weight_scale is not None]
    activations = [n for n, m in module.named_modules() if isinstance(m, QuantLinear) and m.input_scale is not None]
    attention = [n for n, m in module.named_modules() if isinstance(m, QuantAttention)]
    return QuantizationSummary(len(fp8_weights), activations, attention)


def export_graph(
    checkpoint: Checkpoint,
    graph: Component,
    options: ExportOptions,
    calibration: Calibration | None,
    folder: Path,
    quiet: bool = False,
) -> ExportedGraph:
    """Export one graph into ``folder``; returns its path and sidecar. Raises on a lint violation."""
    dtype = options.dtype.torch
    plan = options.plan(graph)
    amax = calibration.amax.get(graph.spec.serves.value, {}) if calibration else None
    lora = options.lora_slots(graph, checkpoint)
    with stage(f"{graph.value}: building the {options.recipe.value} module in {options.dtype.value}", quiet):
        module = build_module(checkpoint, graph, options.recipe, dtype, plan, amax)
        if lora is not None:
            dit = next(iter(module.children()))
            add_side_path(dit)
            module = LoraDiTGraph(dit, graph.spec.contract.input_names)
        inputs = example_inputs(graph, checkpoint, dtype, lora=lora)
    contract = contract_of(graph, lora)
    start = time.perf_counter()
    with stage(f"{graph.value}: tracing and converting to ONNX (opset {options.opset})", quiet):
        model = trace_graph(graph, module, inputs, options.opset, lora)
    fold_small_constants(model)
    export_seconds = time.perf_counter() - start
    _name_axes(model, contract)
    path = graph_path(folder, graph)
    weight_bytes = _initializer_bytes(model)
    external = options.stores_external(weight_bytes)
    with stage(f"{graph.value}: writing {weight_bytes / 1e6:.1f} MB of weights", quiet):
        save_model(model, path, external)
    violations = lint_file(path)
    if violations:
        shown = "; ".join(str(v) for v in violations[:3])
        more = f" (+{len(violations) - 3} more)" if len(violations) > 3 else ""
        raise IdeogramTrtError(f"{graph.value}: the exported graph fails our ONNX lint: {shown}{more}")

    inner = next(iter(module.children()))
    parts = graph.spec.part_names
    rope = None
    if graph.spec.has_rope:
        (part,) = parts
        config = checkpoint.dit_config(part)
        rope = Rope([float(v) for v in rope_inv_freq(config)], list(config.mrope_section))
    data = path.with_name(f"{path.name}.data")
    sidecar = ExportSidecar(
        graph=graph,
        file=path.name,
        external_data=data.name if external else None,
        recipe=options.recipe.value,
        dtype=options.dtype.value,
        opset=options.opset,
        inputs=[_io_entry(v) for v in model.graph.inputs],
        outputs=[_io_entry(v) for v in model.graph.outputs],
        weights_bytes=weight_bytes,
        file_sha256=file_digest(path),
        external_data_sha256=file_digest(data) if external else None,
        provenance=Provenance(
            checkpoint=CheckpointSource(
                str(checkpoint.root.resolve()),
                checkpoint.fingerprint(parts),
                {part: checkpoint.digest(part) for part in parts},
            ),
            calibration=None
            if calibration is None or not plan.needs_calibration
            else CalibrationSource(calibration.sha256, calibration.settings),
            quantization=_quantization_summary(inner),
            export_seconds=round(export_seconds, 2),
            exporter={"ideogram_trt": __version__, "torch": torch.__version__, "onnx_ir": ir.__version__},
            options=ExportSettings(plan.quantize_attention, options.quantize_text_encoder, list(options.excluded)),
        ),
        rope=rope,
        lora=lora,
    )
    sidecar.save(folder)
    return ExportedGraph(graph, path, sidecar)


def _io_entry(value: ir.Value) -> TensorEntry:
    """Name, numpy dtype name and shape (ints for static axes, contract names for dynamic ones)."""
    assert value.shape is not None and value.dtype is not None
    dims: list[str | int] = [d if isinstance(d, int) else str(d) for d in value.shape]
    return TensorEntry(value.name, str(value.dtype.numpy()), dims)


def check_output_dir(out: Path, options: ExportOptions) -> None:
    """``out`` must be new, empty, or an earlier export with the same recipe and dtype."""
    if not out.exists():
        return
    if not out.is_dir():
        raise InputError(f"{out}: exists and is not a directory")
    entries = list(out.iterdir())
    if not entries:
        return
    if not (out / INDEX_FILE).is_file():
        raise InputError(f"{out}: exists and holds other files; export into a new or empty directory")
    previous = ExportIndex.load(out, fix="export into a new directory")
    if (previous.recipe, previous.dtype) != (options.recipe.value, options.dtype.value):
        raise InputError(
            f"{out}: holds a {previous.recipe}/{previous.dtype} export; this one is "
            f"{options.recipe.value}/{options.dtype.value}: use another directory"
        )


def validate_request(checkpoint: Checkpoint, options: ExportOptions) -> Calibration | None:
    """Everything that can be refused before any work starts."""
    if Component.DIT_UNCOND in options.graphs and not checkpoint.has_unconditional:
        raise InputError(
            f"{checkpoint.root}: no unconditional_transformer/, so there is no dit_uncond graph to export "
            "(CFG-distilled checkpoints run the FAST/INSTANT presets with dit_cond alone)"
        )
    needs_calibration = any(options.plan(g).needs_calibration for g in options.graphs)
    if options.calibration is None:
        if needs_calibration:
            raise InputError(
                "the fp8 recipe quantizes activations and needs --calibration FILE "
                "(write one with `ideogram-trt calibrate`), or use --recipe fp8-wo"
            )
        return None
    calibration = Calibration.load(options.calibration)
    calibration.check_matches(checkpoint, options.calibration)
    from ideogram_trt.export.calibration import amax_names

    for graph in options.graphs:  # a table missing is named here, not as one layer's amax deep in the build
        plan = options.plan(graph)
        if plan.needs_calibration:
            key = graph.spec.serves.value
            calibration.require_table(key, options.calibration, amax_names(checkpoint, key, plan))
    return calibration


def export(checkpoint_dir: Path, out: Path, options: ExportOptions, quiet: bool = False) -> list[ExportedGraph]:
    """Export ``options.graphs`` of the checkpoint at ``checkpoint_dir`` into ``out`` (atomically)."""
    if options.opset < 21:
        raise InputError(f"--opset {options.opset}: FP8 Q/DQ with FLOAT8E4M3FN zero points needs opset 21 or later")
    check_output_dir(out, options)
    with stage(f"reading and validating {checkpoint_dir}", quiet):
        checkpoint = open_checkpoint(checkpoint_dir)
        calibration = validate_request(checkpoint, options)
        if Component.TEXT_ENCODER in options.graphs:
            check_tree(checkpoint.tokenizer_dir, within=checkpoint.root)  # refused now, not after the export
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(out.parent, names=lambda name: name == out.name)  # staging folders of killed exports into out
    staging = staging_name(out)
    staging.mkdir()
    try:
        exported = [export_graph(checkpoint, g, options, calibration, staging, quiet) for g in options.graphs]
        if Component.TEXT_ENCODER in options.graphs:  # the runtime tokenizes with the checkpoint's own files
            copy_tree(checkpoint.tokenizer_dir, staging / TOKENIZER_DIR, within=checkpoint.root)
            shutil.rmtree(out / TOKENIZER_DIR, ignore_errors=True)
        index_path = out / INDEX_FILE
        earlier = ExportIndex.load(out).graphs if index_path.is_file() else {}
        index = ExportIndex(options.recipe.value, options.dtype.value, earlier).with_graphs([e.graph for e in exported])
        if not out.exists() or not any(out.iterdir()):  # a new export: one rename commits all of it
            atomic_write(staging / INDEX_FILE, index.to_json(), "export index")
            staging.rename(out)
            fsync_dir(out.parent)
        else:  # into an earlier export: graph by graph (the builder checks each graph against its sidecar)
            for e in exported:  # a re-export may drop external data the previous one had
                (out / f"{e.path.name}.data").unlink(missing_ok=True)
            for item in staging.iterdir():
                item.rename(out / item.name)
            atomic_write(index_path, index.to_json(), "export index")
        return [ExportedGraph(e.graph, out / e.path.name, e.sidecar) for e in exported]
    finally:
        shutil.rmtree(staging, ignore_errors=True)
