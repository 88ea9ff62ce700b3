"""Kernel ceilings at Ideogram 4 shapes on one CUDA GPU, with PyTorch's kernels (docs/BENCHMARKS.md §6.2).

Measures, on random data:

* GEMM per DiT block linear, (K, N) = qkv (4608, 13824), o (4608, 4608), w1+w3 (4608, 24576), w2 (12288, 4608), for
  M = 4608 (conditional pass: 512 text + 4096 image tokens) and M = 4096 (unconditional): bf16 ``torch.matmul``
  (cuBLAS) and FP8 ``torch._scaled_mm`` (e4m3 operands, per-tensor fp32 scales, bf16 out; cuBLASLt).
* bf16 attention, ``scaled_dot_product_attention`` on [1, 18, L, 256], no mask, L in (4096, 4608, 6144), per SDPA
  backend (cuDNN, FlashAttention, memory-efficient); a backend that cannot run is recorded as skipped.
  FLOPs are counted as 4·L²·256·18.
* A 4 GiB device-to-device copy, counting bytes read and written.

Timing: CUDA events around each call, 5 warm-ups, then the median of 20. The measured entries of the card table
for the modeled engine time (ideogram_trt/core/cards.py) come from these numbers. Run::

    python tools/kernel_rates.py --json kernel_rates.json --markdown kernel_rates.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

LINEARS = (("qkv", 4608, 13824), ("o", 4608, 4608), ("w1+w3", 4608, 24576), ("w2", 12288, 4608))
TOKENS = (4608, 4096)
LENGTHS = (4096, 4608, 6144)
HEADS, HEAD_DIM = 18, 256
BACKENDS = ("CUDNN_ATTENTION", "FLASH_ATTENTION", "EFFICIENT_ATTENTION")
COPY_BYTES = 4 << 30
WARMUP, REPEATS = 5, 20


def median_ms(fn: Callable[[], object]) -> float:
    for _ in range(WARMUP):
        fn()
    torch.cuda.synchronize()
    times: list[float] = []
    for _ in range(REPEATS):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return float(statistics.median(times))


def tflops(flops: float, ms: float) -> float:
    return flops / (ms * 1e-3) / 1e12


def gemms() -> list[dict[str, Any]]:
    rows = []
    one = torch.ones((), device="cuda", dtype=torch.float32)
    for m in TOKENS:
        for name, k, n in LINEARS:
            a = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
            w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16)
            a8, w8 = a.to(torch.float8_e4m3fn), w.to(torch.float8_e4m3fn)
            bf16_ms = median_ms(partial(torch.matmul, a, w.t()))
            fp8 = partial(torch._scaled_mm, a8, w8.t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
            fp8_ms = median_ms(fp8)
            flops = 2.0 * m * k * n
            rows.append(
                {"M": m, "linear": name, "K": k, "N": n, "flops": flops, "bf16_ms": bf16_ms, "fp8_ms": fp8_ms}
                | {"bf16_tflops": tflops(flops, bf16_ms), "fp8_tflops": tflops(flops, fp8_ms)}
            )
            del a, w, a8, w8
    return rows


def attention() -> list[dict[str, Any]]:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    rows: list[dict[str, Any]] = []
    for length in LENGTHS:
        q, k, v = (torch.randn(1, HEADS, length, HEAD_DIM, device="cuda", dtype=torch.bfloat16) for _ in range(3))
        flops = 4.0 * length * length * HEAD_DIM * HEADS
        for name in BACKENDS:
            row: dict[str, Any] = {"L": length, "backend": name}
            backend = getattr(SDPBackend, name, None)
            try:
                if backend is None:
                    raise RuntimeError(f"this torch has no SDPBackend.{name}")
                with sdpa_kernel(backend):
                    ms = median_ms(partial(F.scaled_dot_product_attention, q, k, v))
                row |= {"ms": ms, "tflops": tflops(flops, ms)}
            except RuntimeError as error:
                row["skipped"] = " ".join(str(error).split())[:200]
            rows.append(row)
    return rows


def copy() -> dict[str, float]:
    src = torch.empty(COPY_BYTES, device="cuda", dtype=torch.uint8)
    dst = torch.empty_like(src)
    ms = median_ms(partial(dst.copy_, src))
    return {"bytes": float(COPY_BYTES), "ms": ms, "tbps": 2 * COPY_BYTES / (ms * 1e-3) / 1e12}


def device() -> dict[str, Any]:
    try:
        query = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader", "-i", "0"]
        driver = subprocess.run(query, capture_output=True, text=True, check=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        driver = "unknown"
    return {
        "name": torch.cuda.get_device_name(0),
        "sms": torch.cuda.get_device_properties(0).multi_processor_count,
        "driver": driver,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def weighted(rows: list[dict[str, Any]], m: int, key: str) -> float:
    """FLOP-weighted harmonic mean over the block linears at M = m: total FLOPs over total time."""
    mine = [r for r in rows if r["M"] == m]
    return float(sum(r["flops"] for r in mine) / sum(r["flops"] / r[key] for r in mine))


def markdown(result: dict[str, Any]) -> str:
    d = result["device"]
    lines = [
        f"# Kernel ceilings at Ideogram 4 shapes, one {d['name']}",
        "",
        f"Measured {d['date']}: {d['name']}, {d['sms']} SMs, driver {d['driver']}, torch {d['torch']} (CUDA "
        f"{d['cuda']}, cuDNN {d['cudnn']}). CUDA events, {WARMUP} warm-ups, median of {REPEATS}. Random data.",
        "",
        "## GEMM per DiT block linear",
        "",
        "| M | linear | K | N | bf16 TFLOP/s | FP8 per-tensor TFLOP/s |",
        "|---|---|---|---|---|---|",
        *(
            f"| {r['M']} | {r['linear']} | {r['K']} | {r['N']} | {r['bf16_tflops']:.0f} | {r['fp8_tflops']:.0f} |"
            for r in result["gemm"]
        ),
        "",
        *(
            f"- FLOP-weighted over the four linears at M = {m}: bf16 {weighted(result['gemm'], m, 'bf16_tflops'):.1f}, "
            f"FP8 {weighted(result['gemm'], m, 'fp8_tflops'):.1f} TFLOP/s."
            for m in TOKENS
        ),
        "",
        f"## Attention, bf16, [1, {HEADS} heads, L, {HEAD_DIM}], no mask (FLOPs 4·L²·{HEAD_DIM}·{HEADS})",
        "",
        "| L | backend | ms | TFLOP/s |",
        "|---|---|---|---|",
        *(
            f"| {r['L']} | {r['backend']} | {r['ms']:.2f} | {r['tflops']:.0f} |"
            if "ms" in r
            else f"| {r['L']} | {r['backend']} | skipped: {r['skipped']} | - |"
            for r in result["attention"]
        ),
        "",
        "## Memory",
        "",
        f"Device-to-device copy of {COPY_BYTES >> 30} GiB: {result['copy']['tbps']:.2f} TB/s counting bytes read and "
        "written.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", type=Path, help="write every raw number here")
    parser.add_argument("--markdown", type=Path, help="write the tables here (default: print them)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("kernel_rates: no CUDA GPU found (torch.cuda.is_available() is False); run it on a GPU", file=sys.stderr)
        return 2
    with torch.inference_mode():
        result = {"device": device(), "gemm": gemms(), "attention": attention(), "copy": copy()}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(markdown(result))
    else:
        print(markdown(result), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
