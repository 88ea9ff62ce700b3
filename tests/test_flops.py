"""The FLOP model against docs/MODEL.md §9's table (computed independently there from the same formula's terms)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ideogram_trt.cli import main
from ideogram_trt.core.buckets import Bucket
from ideogram_trt.core.flops import dit_flops, request_flops, vae_flops
from ideogram_trt.core.schedule import get_preset


@pytest.mark.parametrize(
    ("tokens", "uncond", "cond"),
    [(256, 4.48, 13.68), (1024, 18.40, 28.10), (4096, 81.49, 93.16), (6144, 130.13, 143.11), (16384, 452.14, 471.69)],
)
def test_dit_flops_match_spec_table(tokens: int, uncond: float, cond: float) -> None:
    assert dit_flops(tokens) / 1e12 == pytest.approx(uncond, abs=0.01)
    assert dit_flops(tokens + 512) / 1e12 == pytest.approx(cond, abs=0.01)


def test_diffusers_style_padding_costs_what_the_spec_says() -> None:
    assert dit_flops(2048 + 4096, 2048 + 4096) / 1e12 == pytest.approx(133.14, abs=0.01)


def test_request_at_1024_default_20() -> None:
    flops = request_flops(Bucket(1024, 1024), get_preset("V4_DEFAULT_20"))
    assert flops.denoise / 1e15 == pytest.approx(3.49, abs=0.005)
    assert flops.vae / 1e12 == pytest.approx(10.48, abs=0.01)
    assert vae_flops(Bucket(2048, 2048)) / 1e12 == pytest.approx(48.50, abs=0.01)
    assert flops.text_encoder / 1e12 == pytest.approx(7.1 + 0.08 + 0.25, abs=0.05)  # linears, attention, projection
    distilled = request_flops(Bucket(1024, 1024), get_preset("V4_FAST_20"))
    assert distilled.uncond_steps == 0 and distilled.cond_steps == 20


def test_cli_prints_and_writes_the_floor(tmp_path: Path, capsys) -> None:
    out = tmp_path / "flops.json"
    args = ["bench", "--flops", "--bucket", "1024x1024", "--preset", "V4_DEFAULT_20", "--json", str(out)]
    assert main(args) == 0
    report = json.loads(out.read_text())
    assert report["tflop"]["dit_cond_step"] == pytest.approx(93.16, abs=0.01)
    # 3.51 PFLOP at the measured H100 GEMM rates.
    assert report["floor_seconds"] == {"fp8": pytest.approx(2.607, abs=0.01), "bf16": pytest.approx(4.519, abs=0.01)}
    assert "time floor" in capsys.readouterr().out
