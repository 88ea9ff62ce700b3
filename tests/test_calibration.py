"""Calibration: deterministic for a seed, tied to its checkpoint, covering every quantizable input."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import ideogram_trt
from ideogram_trt.cli import main
from ideogram_trt.export.calibration import Calibration
from ideogram_trt.export.recipes import TEXT_ENCODER_ACTIVATION_QUANT
from ideogram_trt.model.tiny_tokenizer import default_prompts

PROMPT_FILE = Path(ideogram_trt.__file__).parent / "data" / "calibration_prompts.jsonl"
# The linears of a DiT block whose inputs the fp8 recipe quantizes (docs/MODEL.md §12.4, docs/ARCHITECTURE.md §5),
# written out here rather than taken from export.recipes.
DIT_BLOCK_LINEARS = ("attention.qkv", "attention.o", "feed_forward.w1", "feed_forward.w2", "feed_forward.w3")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def checkpoint_fingerprint(root: Path, components: tuple[str, ...]) -> str:
    """model/fingerprint.py's definition, recomputed from the files: per component folder, sha256 over its files in
    sorted order of (relative POSIX name, sha256 hex of the bytes); then sha256 of {component: folder hash} as
    canonical JSON (sorted keys, no whitespace), over the folders that exist."""
    parts = {}
    for name in components:
        folder = root / name
        if folder.is_dir():
            digest = hashlib.sha256()
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                digest.update(path.relative_to(folder).as_posix().encode())
                digest.update(_sha256(path.read_bytes()).encode())
            parts[name] = digest.hexdigest()
    return _sha256(json.dumps(parts, sort_keys=True, separators=(",", ":")).encode())


def _run(tiny_dir: Path, out: Path, *extra: str) -> Calibration:
    args = ["calibrate", "--model", str(tiny_dir), "--out", str(out), "--resolution", "256x256"]
    assert main([*args, "--preset", "V4_TURBO_12", "--limit", "2", *extra]) == 0
    return Calibration.load(out)


def test_same_seed_same_file_other_seed_other_ranges(tiny_dir: Path, tmp_path: Path) -> None:
    a = _run(tiny_dir, tmp_path / "a.json")
    b = _run(tiny_dir, tmp_path / "b.json")
    c = _run(tiny_dir, tmp_path / "c.json", "--seed", "7")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert a.sha256 == b.sha256 != c.sha256
    assert a.amax["dit_cond"]["layers.0.attention.qkv"] != c.amax["dit_cond"]["layers.0.attention.qkv"]


def test_file_records_checkpoint_and_settings(tiny_dir: Path, calibration_file: Path) -> None:
    calibration = Calibration.load(calibration_file)
    # The calibrated components (what the activations depend on): both DiTs, the text encoder and its tokenizer.
    parts = ("transformer", "unconditional_transformer", "text_encoder", "tokenizer")
    assert all((tiny_dir / p).is_dir() for p in parts)
    assert calibration.checkpoint == checkpoint_fingerprint(tiny_dir, parts)
    # calibrate hashes the prompts it used (--limit 4: the first four of the shipped file) joined by newlines, as
    # UTF-8; recomputed from the file's bytes.
    lines = [line for line in PROMPT_FILE.read_bytes().decode("utf-8").splitlines() if line.strip()]
    used = [json.loads(line)["prompt"] for line in lines[:4]]
    assert calibration.settings == {
        "preset": "V4_TURBO_12",
        "resolutions": ["256x256"],
        "seed": 0,
        "prompts": 4,
        "prompts_sha256": _sha256("\n".join(used).encode("utf-8")),
        "dtype": "float32",
    }
    body = json.loads(calibration_file.read_text())
    assert body["format"] == 1
    assert calibration.sha256 == _sha256(calibration_file.read_bytes())


def test_every_quantizable_input_is_covered(calibration_file: Path) -> None:
    from fnmatch import fnmatchcase

    amax = Calibration.load(calibration_file).amax
    for key in ("dit_cond", "dit_uncond"):
        for layer in range(2):
            for linear in DIT_BLOCK_LINEARS:
                name = f"layers.{layer}.{linear}"
                assert amax[key].get(name, 0) > 0, (key, name)
            for part in "qkv":  # the attention inputs, for --quantize-attention
                assert amax[key].get(f"layers.{layer}.attention.{part}", 0) > 0, (key, layer, part)
    text = amax["text_encoder"]
    assert sum(any(fnmatchcase(n, p) for p in TEXT_ENCODER_ACTIVATION_QUANT) for n in text) == 36 * 7


def test_the_fp8_dit_graphs_need_every_block_linear(checkpoint) -> None:
    """The amax entries an fp8 DiT graph asks the calibration for: all five block linears of both layers (plus
    q/k/v under --quantize-attention), the list written out above."""
    from ideogram_trt.core.components import Component
    from ideogram_trt.export.calibration import amax_names
    from ideogram_trt.export.recipes import Recipe, quant_plan

    linears = [f"layers.{n}.{linear}" for n in range(2) for linear in DIT_BLOCK_LINEARS]
    attention = [f"layers.{n}.attention.{part}" for n in range(2) for part in "qkv"]
    for component in (Component.DIT_COND, Component.DIT_UNCOND):
        assert amax_names(checkpoint, component.value, quant_plan(component, Recipe.FP8)) == linears
        plan = quant_plan(component, Recipe.FP8, quantize_attention=True)
        assert amax_names(checkpoint, component.value, plan) == linears + attention


def test_default_prompt_file_has_32_varied_json_captions() -> None:
    prompts = default_prompts()
    assert len(prompts) >= 32 and len(set(prompts)) == len(prompts)
    captions = [json.loads(p) for p in prompts]
    assert all(isinstance(c, dict) and c.get("subject") for c in captions)
    assert sum("text" in c for c in captions) >= 8  # text rendering, Ideogram's speciality, is represented


def test_recorder_keeps_the_largest_magnitude_over_calls() -> None:
    """amax is max |x| over every call: a negative extreme counts, and a later smaller batch does not lower it."""
    import torch
    from torch import nn

    from ideogram_trt.export.calibration import AmaxRecorder

    model = nn.Sequential(nn.Linear(3, 2))
    recorder = AmaxRecorder()
    with recorder.observe(model):
        model(torch.tensor([[1.0, -5.0, 2.0]]))
        model(torch.tensor([[0.5, 0.25, -4.0]]))
    assert recorder.amax == {"0": 5.0}
