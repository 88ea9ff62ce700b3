"""Card table for the modeled per-layer engine time: tensor-core rates, memory bandwidth and a launch floor per card.

A layer's modeled time is max(FLOPs / rate for its class and precision, bytes / memory bandwidth) + ``launch_us``.
Each card carries its datasheet rates and, where one was measured, a measured set (``Card.rates`` prefers those).

Datasheet conventions, applied to every entry below:

* Tensor rates are DENSE (no 2:4 sparsity). NVIDIA's datasheets mostly quote sparse figures (marked with an
  asterisk there); those are halved here, and each entry says so.
* GeForce cards: NVIDIA's Ada and Blackwell whitepapers quote tensor rates with FP16 and with FP32 accumulation. The
  FP32-accumulate figure is used, since that is what TensorRT's FP8 and BF16 GEMMs accumulate in.
* Attention rates on datasheet entries are the card's dense BF16 / FP8 tensor rates (attention is tensor-core math).
* ``launch_us`` = 4.0 everywhere is an ASSUMPTION (a typical kernel launch plus tail), not a datasheet figure.
* Memory bandwidth is in TB/s (1e12 bytes/s), as the datasheets give it.

Torch-free and stdlib only: the serving side and the CLI import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from ideogram_trt.core.errors import InputError

LAUNCH_US = 4.0  # assumed per-kernel launch + tail floor (not from a datasheet)
NOT_CONFIRMED = "(not confirmed from a stored source)"


@dataclass(frozen=True)
class Rates:
    fp8_tflops: float  # dense FP8 tensor-core TFLOP/s, no sparsity
    bf16_tflops: float  # dense BF16 tensor-core TFLOP/s
    attention_bf16_tflops: float
    attention_fp8_tflops: float
    memory_tbps: float  # TB/s, 1e12 bytes/s
    launch_us: float  # per-kernel launch/tail floor, microseconds


class Source(str, Enum):
    DATASHEET = "datasheet"
    MEASURED = "measured"


@dataclass(frozen=True)
class Card:
    key: str
    name: str
    datasheet: Rates
    measured: Rates | None
    citation: str  # the vendor document the datasheet rates come from
    measured_citation: str = ""  # where the measured rates come from, when there are any

    def source(self, source: Source | None = None) -> Source:
        """The source ``rates(source)`` answers from: measured where available unless DATASHEET is asked for."""
        if source is Source.DATASHEET:
            return Source.DATASHEET
        if self.measured is not None:
            return Source.MEASURED
        if source is Source.MEASURED:
            raise InputError(f"card '{self.key}' has no measured rates: use the datasheet ones")
        return Source.DATASHEET

    def rates(self, source: Source | None = None) -> Rates:
        if self.source(source) is Source.MEASURED and self.measured is not None:
            return self.measured
        return self.datasheet


def datasheet_rates(fp8_tflops: float, bf16_tflops: float, memory_tbps: float) -> Rates:
    """Datasheet entry: attention at the dense tensor rates, the assumed launch floor."""
    return Rates(fp8_tflops, bf16_tflops, bf16_tflops, fp8_tflops, memory_tbps, LAUNCH_US)


# --- Measured: NVIDIA H200, docs/bench/kernel_rates_h200.md (tools/kernel_rates.py, 2026-12-02) ------------------
# GEMM: the FLOP-weighted harmonic mean (total FLOPs over total time) of the four DiT block linears at M = 4608, the
# conditional pass at 512 text tokens + 1024² (FP8: torch._scaled_mm, per-tensor scales; bf16: cuBLAS).
# Attention bf16: cuDNN at L = 4608, [1, 18, L, 256], no mask. Attention FP8: not measured; the bf16 rate stands in
# (conservative: the datasheet's 2x would credit a speed-up nobody has measured).
# Memory: a 4 GiB device-to-device copy, bytes read + written. tests/test_cards.py recomputes all four from the JSON.
H200_MEASURED = Rates(
    fp8_tflops=1294.4,
    bf16_tflops=771.8,
    attention_bf16_tflops=639.8,
    attention_fp8_tflops=639.8,
    memory_tbps=4.26,
    launch_us=LAUNCH_US,
)

# --- Measured: NVIDIA H100 80GB HBM3 --------------------------------------------------------------------------------
# GEMM: the dense rates measured on one H100 80GB HBM3 (docs/ARCHITECTURE.md §10): 1347 FP8, 777 bf16.
# Attention bf16: docs/ARCHITECTURE.md §10, cuDNN forced, no mask, L = 4096 (the nearest measured length to 4608;
#   6144 gave 676): 593 TFLOP/s. FP8 attention: not measured, the bf16 rate (as for the H200).
# Memory: not measured on the H100: the datasheet 3.35 TB/s.
H100_MEASURED = Rates(
    fp8_tflops=1347.0,
    bf16_tflops=777.0,
    attention_bf16_tflops=593.0,
    attention_fp8_tflops=593.0,
    memory_tbps=3.35,
    launch_us=LAUNCH_US,
)

_CARDS = (
    # H100 SXM5: datasheet FP8 3,958 / BF16 1,979 TFLOP/s with sparsity -> halved; 3.35 TB/s HBM3.
    Card(
        key="h100",
        name="NVIDIA H100 SXM5 80GB",
        datasheet=datasheet_rates(1979.0, 989.5, 3.35),
        measured=H100_MEASURED,
        citation="NVIDIA H100 Tensor Core GPU datasheet, H100 SXM (sparse FP8 3,958 / BF16 1,979 TFLOPS halved)",
        measured_citation="docs/ARCHITECTURE.md §10 (GEMM, cuDNN attention on one H100 80GB HBM3); datasheet memory",
    ),
    # H200 SXM: same GH100 compute as the H100 (FP8 3,958 / BF16 1,979 with sparsity -> halved); 4.8 TB/s HBM3e.
    Card(
        key="h200",
        name="NVIDIA H200 SXM 141GB",
        datasheet=datasheet_rates(1979.0, 989.5, 4.8),
        measured=H200_MEASURED,
        citation="NVIDIA H200 Tensor Core GPU datasheet, H200 SXM (sparse FP8 3,958 / BF16 1,979 TFLOPS halved)",
        measured_citation="docs/bench/kernel_rates_h200.md (PyTorch GEMM, cuDNN attention and copy on one H200)",
    ),
    # B200 in HGX B200 (1000 W): per GPU FP8 9 / BF16 4.5 PFLOP/s with sparsity -> halved; 7.7 TB/s HBM3e (180 GB).
    Card(
        key="b200",
        name="NVIDIA B200 180GB (HGX B200)",
        datasheet=datasheet_rates(4500.0, 2250.0, 7.7),
        measured=None,
        citation="NVIDIA HGX B200 / GB200 NVL72 specifications, individual HGX B200 GPU (sparse FP8 9 / BF16 4.5 "
        "PFLOPS halved)",
    ),
    # L40S: the datasheet gives dense and sparse side by side: FP8 733 (1,466 sparse), BF16 362.05 (733 sparse);
    # 864 GB/s GDDR6.
    Card(
        key="l40s",
        name="NVIDIA L40S 48GB",
        datasheet=datasheet_rates(733.0, 362.05, 0.864),
        measured=None,
        citation="NVIDIA L40S datasheet (dense columns: FP8 733, BF16 362.05 TFLOPS)",
    ),
    # RTX 4090 (Ada whitepaper, updated edition): FP8 with FP32 accumulate 330.3 dense (660.6 sparse; FP16 accumulate
    # would be 660.6), BF16 (FP32 accumulate) 165.2 dense; 1,008 GB/s GDDR6X.
    Card(
        key="rtx4090",
        name="NVIDIA GeForce RTX 4090 24GB",
        datasheet=datasheet_rates(330.3, 165.2, 1.008),
        measured=None,
        citation="NVIDIA Ada GPU Architecture whitepaper, GeForce RTX 4090 (dense, FP32-accumulate figures)",
    ),
    # RTX 5090 (RTX Blackwell whitepaper): FP8 838 dense (1,676 sparse); FP8 with FP32 accumulate runs at the full FP8
    # rate on GeForce Blackwell (stored measurements reach ~773 TFLOP/s, above any half rate); BF16 with FP32
    # accumulate 209.5 dense (half the 419 FP16-accumulate rate); 1,792 GB/s GDDR7.
    Card(
        key="rtx5090",
        name="NVIDIA GeForce RTX 5090 32GB",
        datasheet=datasheet_rates(838.0, 209.5, 1.792),
        measured=None,
        citation="NVIDIA RTX Blackwell GPU Architecture whitepaper, GeForce RTX 5090 (dense, FP32-accumulate figures; "
        f"the FP32-accumulate split {NOT_CONFIRMED})",
    ),
    # RTX PRO 6000 Blackwell Workstation Edition: the datasheet gives 4,000 AI TOPS (FP4, sparse), 125 TFLOPS FP32,
    # 1,792 GB/s GDDR7. Dense FP8 = 4000 / 2 (sparsity) / 2 (FP4 -> FP8) = 1000; BF16 = half of FP8 = 500 (workstation
    # parts run FP32 accumulate at the full rate).
    Card(
        key="rtx-pro-6000",
        name="NVIDIA RTX PRO 6000 Blackwell Workstation Edition 96GB",
        datasheet=datasheet_rates(1000.0, 500.0, 1.792),
        measured=None,
        citation="NVIDIA RTX PRO 6000 Blackwell Workstation Edition datasheet (FP8 / BF16 derived from 4,000 sparse "
        f"FP4 AI TOPS; the derived FP8 / BF16 rates {NOT_CONFIRMED})",
    ),
)

CARDS: dict[str, Card] = {c.key: c for c in _CARDS}


def card(key: str) -> Card:
    """The card called ``key`` (case-insensitive); an unknown key is an InputError naming the known ones."""
    found = CARDS.get(key.strip().lower())
    if found is None:
        raise InputError(f"unknown card {key!r}: use one of {', '.join(CARDS)}")
    return found


# How nvidia-smi names each card ("NVIDIA H200", "NVIDIA GeForce RTX 4090"): the mark its name contains.
_NAME_MARKS = {
    "h100": "H100",
    "h200": "H200",
    "b200": "B200",
    "l40s": "L40S",
    "rtx4090": "RTX 4090",
    "rtx5090": "RTX 5090",
    "rtx-pro-6000": "RTX PRO 6000",
}


def card_for_gpu(name: str) -> Card | None:
    """The card a GPU of this name is, or None when the table has no such card (variants of one chip, such as
    the H100 PCIe and SXM, match the one entry: pass a card explicitly where that matters)."""
    upper = " ".join(name.upper().split())
    for key, mark in _NAME_MARKS.items():
        if mark in upper:
            return CARDS[key]
    return None
