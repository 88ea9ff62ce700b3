"""The trained tiny checkpoint in the repository (docs/TINY_MODEL.md): its files against their recorded hashes, its
size, its training record, and the reproduction check of docs/TINY_MODEL.md §4.2, all recomputed from the files.
(Loading, `check` and bit-identical FP8 dequantization run in tests/test_checkpoint.py for it and the random one.)"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from ideogram_trt.quality import shapes

ROOT = Path(__file__).resolve().parents[1] / "checkpoints" / "tiny-shapes"
MAX_BYTES = 30 * 1000 * 1000
# shipped log, repeat log, loss terms, tolerance after step 100 (docs/TINY_MODEL.md §4.2)
REPRODUCTION = {
    "vae 1": ("vae_log.jsonl", "vae_log_repeat1.jsonl", ("loss",), 0.30),
    "vae 2": ("vae_log.jsonl", "vae_log_repeat2.jsonl", ("loss",), 0.30),
    "dit": ("dit_stage1_log.jsonl", "dit_stage1_log_repeat1.jsonl", ("cond", "uncond"), 0.05),
}


def _rows(path: Path) -> dict[int, dict[str, float]]:
    return {row["step"]: row for row in map(json.loads, path.read_text().splitlines())}


def test_every_file_matches_its_recorded_sha256() -> None:
    listed = {}
    for line in (ROOT / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ", 1)
        listed[name] = digest
    present = {str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file() and p.name != "SHA256SUMS"}
    assert set(listed) == present
    for name, digest in listed.items():
        assert hashlib.sha256((ROOT / name).read_bytes()).hexdigest() == digest, name


def test_fits_the_size_limit() -> None:
    assert sum(p.stat().st_size for p in ROOT.rglob("*") if p.is_file()) <= MAX_BYTES


def test_training_record_names_seeds_steps_and_times() -> None:
    record = json.loads((ROOT / "training.json").read_text())
    assert record["spec"]["seed"] == 0
    stages = {s["stage"]: s for s in record["stages"]}
    assert {"base", "vae", "dit (1)", "dit (2)", "export"} <= set(stages)
    for name in ("vae", "dit (1)", "dit (2)"):
        assert stages[name]["steps"] > 0 and stages[name]["wall_seconds"] > 0
        assert stages[name]["command"].startswith("python tools/train_tiny.py ")
    # The logged steps are the recorded ones.
    assert max(_rows(ROOT / "vae_log.jsonl")) == stages["vae"]["steps"]
    assert max(_rows(ROOT / "dit_stage1_log.jsonl")) == stages["dit (1)"]["steps"]
    assert max(_rows(ROOT / "dit_stage2_log.jsonl")) == stages["dit (2)"]["steps"]
    assert record["data"]["held_out_captions"] == len(shapes.held_out_captions())


def test_calibration_prompts_are_training_captions() -> None:
    """Calibration must not see the held-out captions the gates are judged on."""
    prompts = [json.loads(line)["prompt"] for line in (ROOT / "calibration_prompts.jsonl").read_text().splitlines()]
    assert prompts and all(not shapes.Caption.parse(p).held_out for p in prompts)


@pytest.mark.parametrize("case", sorted(REPRODUCTION))
def test_repeat_run_reproduces_the_first_losses(case: str) -> None:
    """docs/TINY_MODEL.md §4.2: a repeat run's window means within 0.2 % of the shipped run's at step 100, and
    within the stage's stated tolerance at steps 200 and 300."""
    log, repeat_log, keys, tolerance = REPRODUCTION[case]
    shipped, repeat = _rows(ROOT / log), _rows(ROOT / "reproduction" / repeat_log)
    assert sorted(repeat) == [100, 200, 300]
    for step in repeat:
        for key in keys:
            relative = abs(repeat[step][key] - shipped[step][key]) / abs(shipped[step][key])
            assert relative <= (0.002 if step == 100 else tolerance), (case, step, key, relative)


def test_readme_picture_is_the_demo_output() -> None:
    """docs/images/demo.png records the prompt, seed, preset and bucket that `make demo` passes (read from the
    Makefile) and shows a picture the checker accepts for that prompt."""
    import re

    import numpy as np
    from PIL import Image

    from ideogram_trt.quality import checker

    repo = ROOT.parents[1]
    makefile = (repo / "Makefile").read_text()
    prompt = re.search(r"^DEMO_PROMPT := (.+)$", makefile, re.M).group(1)  # type: ignore[union-attr]
    assert "docs/images/demo.png" in (repo / "README.md").read_text()
    image = Image.open(repo / "docs" / "images" / "demo.png")
    assert image.text["prompt"] == prompt and image.text["seed"] == "0"
    assert image.text["preset"] == "V4_DEFAULT_20" and image.text["bucket"] == "256x256"
    assert "--preset V4_DEFAULT_20 --seed 0" in makefile and "--bucket 256x256" in makefile
    assert checker.check(np.asarray(image.convert("RGB")), prompt).passed
