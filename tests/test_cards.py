"""The card table for modeled engine time: sane datasheet rates, one-line errors, measured-over-datasheet choice, and
the H200's measured GEMM rate recomputed from docs/bench/kernel_rates_h200.json."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from ideogram_trt.core.cards import CARDS, Rates, Source, card
from ideogram_trt.core.errors import InputError

KEYS = ("h100", "h200", "b200", "l40s", "rtx4090", "rtx5090", "rtx-pro-6000")


def test_the_table_holds_the_seven_cards() -> None:
    assert tuple(CARDS) == KEYS
    assert all(CARDS[key].key == key for key in KEYS)


@pytest.mark.parametrize("key", KEYS)
def test_datasheet_rates_are_positive_and_fp8_is_at_least_bf16(key: str) -> None:
    entry = CARDS[key]
    rates = entry.datasheet
    assert all(value > 0 for value in dataclasses.astuple(rates))
    assert rates.fp8_tflops >= rates.bf16_tflops
    assert rates.attention_fp8_tflops >= rates.attention_bf16_tflops
    # Attention on the datasheet is tensor-core math at the dense rates; the launch floor is the stated assumption.
    assert (rates.attention_bf16_tflops, rates.attention_fp8_tflops) == (rates.bf16_tflops, rates.fp8_tflops)
    assert rates.launch_us == 4.0
    assert entry.name.startswith("NVIDIA ") and entry.citation


def test_unknown_card_is_one_line_naming_every_key() -> None:
    with pytest.raises(InputError) as raised:
        card("nope")
    message = str(raised.value)
    assert "\n" not in message
    assert message == "unknown card 'nope': use one of " + ", ".join(KEYS)


def test_card_lookup_ignores_case() -> None:
    assert card("H200") is CARDS["h200"]


def test_h200_prefers_measured_rates_unless_the_datasheet_is_asked_for() -> None:
    h200 = CARDS["h200"]
    assert h200.measured is not None
    assert h200.rates() is h200.measured
    assert h200.rates(Source.MEASURED) is h200.measured
    assert h200.rates(Source.DATASHEET) is h200.datasheet
    assert h200.rates() == Rates(1294.4, 771.8, 639.8, 639.8, 4.26, 4.0)
    assert h200.rates(Source.DATASHEET) == Rates(1979.0, 989.5, 989.5, 1979.0, 4.8, 4.0)
    assert h200.source() is Source.MEASURED and h200.source(Source.DATASHEET) is Source.DATASHEET


def test_a_card_without_measured_rates_answers_from_its_datasheet() -> None:
    l40s = CARDS["l40s"]
    assert l40s.measured is None
    assert l40s.rates() is l40s.datasheet and l40s.source() is Source.DATASHEET
    with pytest.raises(InputError, match="no measured rates"):
        l40s.rates(Source.MEASURED)


MEASURED = Path(__file__).parent.parent / "docs" / "bench" / "kernel_rates_h200.json"


def test_h200_measured_rates_are_the_ones_the_kernel_rate_tool_wrote() -> None:
    """GEMM: total FLOPs over total time of the four block linears at M = 4608, recomputed from the per-linear
    times in the tool's JSON; attention: cuDNN at L = 4608; memory: the copy."""
    raw = json.loads(MEASURED.read_text())
    rows = [r for r in raw["gemm"] if r["M"] == 4608]
    assert sorted(r["linear"] for r in rows) == ["o", "qkv", "w1+w3", "w2"]
    flops = sum(2.0 * 4608 * r["K"] * r["N"] for r in rows)
    fp8 = flops / sum(r["fp8_ms"] * 1e-3 for r in rows) / 1e12
    bf16 = flops / sum(r["bf16_ms"] * 1e-3 for r in rows) / 1e12
    (attention,) = [a for a in raw["attention"] if a["L"] == 4608 and a["backend"] == "CUDNN_ATTENTION"]
    attention_tflops = 4 * 4608**2 * 256 * 18 / (attention["ms"] * 1e-3) / 1e12
    measured = CARDS["h200"].rates()
    assert measured.fp8_tflops == pytest.approx(fp8, abs=0.05)
    assert measured.bf16_tflops == pytest.approx(bf16, abs=0.05)
    assert measured.attention_bf16_tflops == pytest.approx(attention_tflops, abs=0.05)
    assert measured.memory_tbps == pytest.approx(
        raw["copy"]["bytes"] * 2 / (raw["copy"]["ms"] * 1e-3) / 1e12, abs=0.005
    )
