"""The typed records of an export and an engine set: ``ExportSidecar``/``ExportIndex`` (core.sidecar) and
``Manifest`` round-trip byte for byte through their types, and a file of another version or with a field
missing is refused with one line naming it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ideogram_trt.core.components import Component
from ideogram_trt.core.errors import InputError
from ideogram_trt.core.manifest import MANIFEST_FILE, EngineSetError, Manifest
from ideogram_trt.core.sidecar import INDEX_FILE, ExportIndex, ExportSidecar
from ideogram_trt.engines.sampler import write_sampler


def test_every_sidecar_and_the_index_round_trip(bf16_engines: Path) -> None:
    folder = bf16_engines / "onnx"
    index = ExportIndex.load(folder)
    assert index.to_json() == (folder / INDEX_FILE).read_text()
    assert sorted(index.graphs) == sorted(Component(name) for name in json.loads(index.to_json())["graphs"])
    for graph in index.graphs:
        sidecar = ExportSidecar.load(folder, graph)
        assert sidecar.to_json() == (folder / f"{graph.value}.json").read_text(), graph
        assert sidecar.provenance is not None and sidecar.recipe == "bf16"


def test_the_sampler_sidecar_round_trips(tmp_path: Path) -> None:
    write_sampler(tmp_path, 16)
    sidecar = ExportSidecar.load(tmp_path, Component.SAMPLER)
    assert sidecar.to_json() == (tmp_path / "sampler.json").read_text()
    raw = json.loads((tmp_path / "sampler.json").read_text())
    assert raw["inputs"][0] == {"name": "latents", "dtype": "float32", "shape": ["B", "N", 16]}
    assert raw["inputs"][3:] == [{"name": "guidance", "dtype": "float32", "shape": [1]},
                                 {"name": "step", "dtype": "float32", "shape": [1]}]  # fmt: skip
    assert "checkpoint" not in raw and sidecar.provenance is None


def test_the_manifest_round_trips(bf16_engines: Path) -> None:
    text = (bf16_engines / MANIFEST_FILE).read_text()
    manifest = Manifest.load(bf16_engines)
    assert manifest.to_json() == text
    assert {entry.graph for entry in manifest.engines.values()} == {
        Component.TEXT_ENCODER, Component.DIT_COND, Component.DIT_UNCOND, Component.VAE_DECODER
    }  # fmt: skip


@pytest.fixture
def export_copy(bf16_engines: Path, tmp_path: Path) -> Path:
    out = tmp_path / "onnx"
    shutil.copytree(bf16_engines / "onnx", out)
    return out


def _edit(path: Path, change) -> None:
    body = json.loads(path.read_text())
    change(body)
    path.write_text(json.dumps(body))


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda b: b.pop("inputs"), "field 'inputs' is missing"),
        (lambda b: b["checkpoint"].pop("fingerprint"), "field 'checkpoint.fingerprint' is missing"),
        (lambda b: b.update(opset="21"), "field 'opset' must be int"),
        (lambda b: b["inputs"][0].update(shape=[None]), "field 'inputs.0.shape' must be a list of sizes"),
        (lambda b: b.update(format=1), "export format 1, this build reads 2"),
        (lambda b: b.update(graph="vae_decoder"), "field 'graph' must be 'dit_cond'"),
    ],
    ids=["inputs", "fingerprint", "opset-type", "shape", "format", "graph"],
)
def test_a_broken_sidecar_is_one_line_naming_the_field(export_copy: Path, change, needle: str) -> None:
    _edit(export_copy / "dit_cond.json", change)
    with pytest.raises(InputError, match="export again") as caught:
        ExportSidecar.load(export_copy, Component.DIT_COND)
    message = str(caught.value)
    assert needle in message and "\n" not in message and str(export_copy / "dit_cond.json") in message


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda b: b.update(schema=1), "manifest schema 1, this ideogram-trt reads 2 and 3"),
        (lambda b: b["model"].pop("has_unconditional"), "field 'model.has_unconditional' is missing"),
        (lambda b: b["engines"]["dit_cond"].update(graph="dit_sideways"), "field 'engines.dit_cond.graph' must"),
        (
            lambda b: b["engines"]["vae_decoder"]["inputs"][0].pop("dtype"),
            "field 'engines.vae_decoder.inputs.0.dtype' is missing",
        ),
    ],
    ids=["schema", "model-fact", "graph", "tensor-dtype"],
)
def test_a_broken_manifest_is_one_line_naming_the_field(bf16_engines: Path, tmp_path: Path, change, needle) -> None:
    root = tmp_path / "set"
    root.mkdir()
    shutil.copy(bf16_engines / MANIFEST_FILE, root / MANIFEST_FILE)
    _edit(root / MANIFEST_FILE, change)
    with pytest.raises(EngineSetError) as caught:
        Manifest.load(root)
    assert needle in str(caught.value) and "\n" not in str(caught.value)
