"""The export's records, typed: one sidecar per graph (``GRAPH.json`` beside ``GRAPH.onnx``) and the folder's
index (``export.json``). The exporter writes them, the builder reads them; nothing else parses these files.

Sidecar format 2 (external data hashed) is the only one read; another is refused with a line saying to export
again, as is a sidecar with a field missing or mistyped (named).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ideogram_trt.core.components import Component
from ideogram_trt.core.errors import InputError
from ideogram_trt.core.files import atomic_write
from ideogram_trt.core.lora import LoraSlots
from ideogram_trt.core.records import Fields, TensorEntry, find_tensor, read_object

SIDECAR_FORMAT = 2  # 2: external_data_sha256
INDEX_FILE = "export.json"
TOKENIZER_DIR = "tokenizer"  # the checkpoint's tokenizer, copied into an export that has the text encoder
_FIX = "export again with `ideogram-trt export`"


def sidecar_path(folder: Path, graph: Component) -> Path:
    return folder / f"{graph.value}.json"


def graph_path(folder: Path, graph: Component) -> Path:
    return folder / f"{graph.value}.onnx"


@dataclass(frozen=True)
class CheckpointSource:
    root: str
    fingerprint: str  # core.digest over the parts' digests: what the build key and staleness checks compare
    parts: dict[str, str]


@dataclass(frozen=True)
class CalibrationSource:
    sha256: str
    settings: dict[str, Any]  # the calibration file's settings, recorded as written


@dataclass(frozen=True)
class QuantizationSummary:
    fp8_weight_linears: int
    activation_qdq: list[str]
    fp8_attention: list[str]


@dataclass(frozen=True)
class ExportSettings:
    quantize_attention: bool
    quantize_text_encoder: bool
    excluded: list[str]


@dataclass(frozen=True)
class Provenance:
    """What an exported graph was made from and how; absent for the sampler, which the builder writes."""

    checkpoint: CheckpointSource
    calibration: CalibrationSource | None
    quantization: QuantizationSummary
    export_seconds: float
    exporter: dict[str, str]  # package → version
    options: ExportSettings


@dataclass(frozen=True)
class Rope:
    """The DiT's RoPE frequencies and multi-axis sections (docs/MODEL.md §4.7), for host-side tables."""

    inv_freq: list[float]
    mrope_section: list[int]


@dataclass(frozen=True)
class ExportSidecar:
    graph: Component
    file: str
    external_data: str | None
    recipe: str | None  # None for the sampler (no weights to quantize)
    dtype: str
    opset: int
    inputs: list[TensorEntry]
    outputs: list[TensorEntry]
    weights_bytes: int
    file_sha256: str
    external_data_sha256: str | None
    provenance: Provenance | None = None
    rope: Rope | None = None
    lora: LoraSlots | None = None  # a LoRA-ready conditional DiT's side path (docs/LORA.md §2)
    format: int = field(default=SIDECAR_FORMAT)

    @property
    def component(self) -> Component:
        return self.graph.spec.serves

    def tensor(self, name: str) -> TensorEntry:
        return find_tensor(self.inputs, name)

    def to_json(self) -> str:
        head: dict[str, Any] = {
            "format": self.format,
            "graph": self.graph.value,
            "component": self.component.value,
            "file": self.file,
            "external_data": self.external_data,
            "recipe": self.recipe,
            "dtype": self.dtype,
            "opset": self.opset,
        }
        body: dict[str, Any] = {"inputs": _tensors(self.inputs), "outputs": _tensors(self.outputs)}
        body["weights_bytes"] = self.weights_bytes
        if (p := self.provenance) is not None:
            head["checkpoint"] = {"root": p.checkpoint.root, "fingerprint": p.checkpoint.fingerprint,
                                  "parts": p.checkpoint.parts}  # fmt: skip
            head["calibration"] = None if p.calibration is None else _plain(p.calibration)
            head["quantization"] = _plain(p.quantization)
            body["export_seconds"] = p.export_seconds
            body["exporter"] = p.exporter
            body["options"] = _plain(p.options)
        body["file_sha256"] = self.file_sha256
        body["external_data_sha256"] = self.external_data_sha256
        if self.rope is not None:
            body["rope"] = {"inv_freq": self.rope.inv_freq, "mrope_section": self.rope.mrope_section}
        if self.lora is not None:
            body["lora"] = self.lora.to_json()
        return json.dumps({**head, **body}, indent=1) + "\n"

    def key_parts(self) -> dict[str, Any]:
        """What a plan built from this graph depends on, as the build key hashes it (engines.builder)."""
        p = self.provenance
        return {
            "file_sha256": self.file_sha256,
            "external_data_sha256": self.external_data_sha256,
            "checkpoint": None if p is None else _plain(p.checkpoint),
            "calibration": None if p is None or p.calibration is None else _plain(p.calibration),
            "options": None if p is None else _plain(p.options),
        }

    def save(self, folder: Path) -> None:
        atomic_write(sidecar_path(folder, self.graph), self.to_json(), "export sidecar")

    @classmethod
    def load(cls, folder: Path, graph: Component) -> ExportSidecar:
        path = sidecar_path(folder, graph)
        raw = read_object(path, "export sidecar", InputError, _FIX)
        if raw.get("format") != SIDECAR_FORMAT:
            raise InputError(
                f"{path}: export format {raw.get('format')!r}, this build reads {SIDECAR_FORMAT}; export again with "
                "this ideogram-trt"
            )
        return _parse(raw, Fields(path, InputError, _FIX), graph)


def _tensors(entries: list[TensorEntry]) -> list[dict[str, Any]]:
    return [e.to_json() for e in entries]


def _plain(value: Any) -> dict[str, Any]:
    return dict(value.__dict__)


def _parse(raw: dict[str, Any], f: Fields, graph: Component) -> ExportSidecar:
    if f.get(raw, "graph", str, "") != graph.value:
        raise f.fail("graph", f"must be {graph.value!r}, got {raw['graph']!r}")
    provenance = None
    if "checkpoint" in raw:
        source = f.get(raw, "checkpoint", dict, "")
        calibration = f.get(raw, "calibration", dict, "", optional=True)
        quantization = f.get(raw, "quantization", dict, "")
        options = f.get(raw, "options", dict, "")
        provenance = Provenance(
            checkpoint=CheckpointSource(
                f.get(source, "root", str, "checkpoint"),
                f.get(source, "fingerprint", str, "checkpoint"),
                f.get(source, "parts", dict, "checkpoint"),
            ),
            calibration=None
            if calibration is None
            else CalibrationSource(
                f.get(calibration, "sha256", str, "calibration"), f.get(calibration, "settings", dict, "calibration")
            ),
            quantization=QuantizationSummary(
                f.count(quantization, "fp8_weight_linears", "quantization", 0, 1 << 30),
                f.strings(quantization, "activation_qdq", "quantization"),
                f.strings(quantization, "fp8_attention", "quantization"),
            ),
            export_seconds=float(f.get(raw, "export_seconds", (int, float), "")),
            exporter=f.get(raw, "exporter", dict, ""),
            options=ExportSettings(
                f.get(options, "quantize_attention", bool, "options"),
                f.get(options, "quantize_text_encoder", bool, "options"),
                f.strings(options, "excluded", "options"),
            ),
        )
    rope = None
    if (rope_raw := f.get(raw, "rope", dict, "", optional=True)) is not None:
        inv_freq = f.get(rope_raw, "inv_freq", list, "rope")
        if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in inv_freq):
            raise f.fail("rope.inv_freq", "must be a list of finite numbers")
        rope = Rope(inv_freq, f.ints(f.get(rope_raw, "mrope_section", list, "rope"), "rope.mrope_section"))
    lora = None
    if (lora_raw := f.get(raw, "lora", dict, "", optional=True)) is not None:
        keys = ("max_rank", "layers", "hidden", "intermediate", "adaln")
        lora = LoraSlots.from_json({k: f.count(lora_raw, k, "lora", 1, 1 << 20) for k in keys})
    return ExportSidecar(
        graph=graph,
        file=f.get(raw, "file", str, ""),
        external_data=f.get(raw, "external_data", str, "", optional=True),
        recipe=f.get(raw, "recipe", str, "", optional=True),
        dtype=f.get(raw, "dtype", str, ""),
        opset=f.count(raw, "opset", "", 1, 1 << 10),
        inputs=f.tensors(raw, "inputs", ""),
        outputs=f.tensors(raw, "outputs", ""),
        weights_bytes=f.count(raw, "weights_bytes", "", 0, 1 << 60),
        file_sha256=f.get(raw, "file_sha256", str, ""),
        external_data_sha256=f.get(raw, "external_data_sha256", str, "", optional=True),
        provenance=provenance,
        rope=rope,
        lora=lora,
    )


@dataclass(frozen=True)
class ExportIndex:
    """``export.json``: the recipe and dtype of every graph in the folder, and each graph's sidecar."""

    recipe: str
    dtype: str
    graphs: dict[Component, str]

    def to_json(self) -> str:
        graphs = {g.value: file for g, file in sorted(self.graphs.items(), key=lambda item: item[0].value)}
        return json.dumps({"recipe": self.recipe, "dtype": self.dtype, "graphs": graphs}, indent=1) + "\n"

    def with_graphs(self, graphs: list[Component]) -> ExportIndex:
        return ExportIndex(self.recipe, self.dtype, {**self.graphs, **{g: f"{g.value}.json" for g in graphs}})

    @classmethod
    def load(cls, folder: Path, error: type[InputError] = InputError, fix: str = _FIX) -> ExportIndex:
        path = folder / INDEX_FILE
        if not path.is_file():
            raise error(f"{folder}: not an ideogram-trt export (no {INDEX_FILE}); export with `ideogram-trt export`")
        raw = read_object(path, "export index", error, fix)
        f = Fields(path, error, fix)
        graphs: dict[Component, str] = {}
        for name, file in f.get(raw, "graphs", dict, "").items():
            try:
                graphs[Component(name)] = str(file)
            except ValueError:
                raise f.fail(f"graphs.{name}", "is not a component of this ideogram-trt") from None
        return cls(f.get(raw, "recipe", str, ""), f.get(raw, "dtype", str, ""), graphs)
