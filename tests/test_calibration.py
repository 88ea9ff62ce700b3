"""Calibration: deterministic for a seed, tied to its checkpoint, covering every quantizable input."""

from __future__ import annotations

import json
from pathlib import Path

from ideogram_trt.cli import main
from ideogram_trt.export.calibration import CALIBRATED_PARTS, Calibration
from ideogram_trt.export.recipes import DIT_ACTIVATION_QUANT, TEXT_ENCODER_ACTIVATION_QUANT
from ideogram_trt.model.tiny_tokenizer import default_prompts


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


def test_file_records_checkpoint_and_settings(tiny_dir: Path, checkpoint, calibration_file: Path) -> None:
    calibration = Calibration.load(calibration_file)
    assert calibration.checkpoint == checkpoint.fingerprint(CALIBRATED_PARTS)
    assert calibration.settings == {
        "preset": "V4_TURBO_12",
        "resolutions": ["256x256"],
        "seed": 0,
        "prompts": 4,
        "prompts_sha256": calibration.settings["prompts_sha256"],
        "dtype": "float32",
    }
    body = json.loads(calibration_file.read_text())
    assert body["format"] == 1


def test_every_quantizable_input_is_covered(calibration_file: Path) -> None:
    from fnmatch import fnmatchcase

    amax = Calibration.load(calibration_file).amax
    for key in ("dit_cond", "dit_uncond"):
        for layer in range(2):
            for pattern in DIT_ACTIVATION_QUANT:
                name = pattern.replace("*", str(layer))
                assert amax[key][name] > 0, (key, name)
            for part in "qkv":
                assert amax[key][f"layers.{layer}.attention.{part}"] > 0
    text = amax["text_encoder"]
    assert sum(any(fnmatchcase(n, p) for p in TEXT_ENCODER_ACTIVATION_QUANT) for n in text) == 36 * 7


def test_default_prompt_file_has_32_varied_json_captions() -> None:
    prompts = default_prompts()
    assert len(prompts) >= 32 and len(set(prompts)) == len(prompts)
    captions = [json.loads(p) for p in prompts]
    assert all(isinstance(c, dict) and c.get("subject") for c in captions)
    assert sum("text" in c for c in captions) >= 8  # text rendering, Ideogram's speciality, is represented
