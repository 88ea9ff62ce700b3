"""Modeled (not measured) Ideogram 4 times per card and recipe from the full-size plans' anatomy (issue 15).

Reads the anatomy files `tools/full_size.py` kept from the 34-block TensorRT-RTX builds (docs/bench/anatomy/), and
prints the anatomy table and the modeled 1024² V4_DEFAULT_20 times per card and recipe for docs/BENCHMARKS.md §6.
Nothing runs on a GPU: every time here is the step model's (engines/step_model.py).

    python tools/model_full_size.py --anatomy docs/bench/anatomy --markdown docs/bench/modeled_full_size.md
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

from ideogram_trt.core.buckets import Bucket
from ideogram_trt.core.cards import CARDS, Source
from ideogram_trt.core.components import Component
from ideogram_trt.core.flops import request_flops
from ideogram_trt.core.schedule import get_preset
from ideogram_trt.engines.anatomy import EngineAnatomy
from ideogram_trt.engines.anatomy_report import model_report, summarize

RECIPES = {"fp8": "fp8", "fp8-qa": "fp8 --quantize-attention", "fp8-wo": "fp8-wo", "bf16": "bf16"}
BUCKET, PRESET, TEXT = Bucket(1024, 1024), "V4_DEFAULT_20", 512


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--anatomy", type=Path, default=Path("docs/bench/anatomy"))
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    load = {p.name.removesuffix(".anatomy.json"): EngineAnatomy.load(p) for p in sorted(args.anatomy.glob("*.json"))}
    lines = ["| plan | kernels per run | per class | per DiT block (GEMMs and attention) | other kernels per block "
             "(first / middle / last) | non-GEMM MB per run |", "|---|---|---|---|---|---|"]  # fmt: skip
    summaries = {}
    for key, anatomy in load.items():
        summary = summarize(anatomy, BUCKET, TEXT)
        summaries[key] = summary
        classes = ", ".join(f"{k} {v}" for k, v in summary["classes"].items())
        blocks, pattern, others = summary["blocks"], "–", "–"
        if blocks:
            group = summary["patterns"][len(summary["patterns"]) // 2]
            shown = [
                f"{k} {p} {m}".strip() for k, p, m in group["kernels"] if k in ("gemm", "dequant_gemm", "attention")
            ]
            pattern = "; ".join(shown)
            counts = Counter(b["other"] for b in blocks.values())
            middle = counts.most_common(1)[0][0]
            others = f"{blocks['0']['other']} / {middle} / {blocks[str(len(blocks) - 1)]['other']}"
        mb = summary["non_gemm_bytes_per_run"] / 1e6
        lines.append(f"| {key} | {summary['kernels']} | {classes} | {pattern} | {others} | {mb:,.0f} |")

    modeled: dict[str, Any] = {}
    table = ["| card | rates | recipe | cond pass ms | uncond pass ms | step ms | end to end s | gemm s | attention s "
             "| elementwise s | launch s | kernel-ceiling floor s | FLOP floor s |", "|" + "---|" * 13]  # fmt: skip
    for card in CARDS.values():
        for source in (Source.MEASURED, Source.DATASHEET):
            if source is Source.MEASURED and card.measured is None:
                continue
            for recipe, label in RECIPES.items():
                anatomies = {Component.DIT_COND: load[f"dit_cond.{recipe}"],
                             Component.TEXT_ENCODER: load["text_encoder.fp8-wo"],
                             Component.VAE_DECODER: load["vae_decoder.fp8-wo"]}  # fmt: skip
                report = model_report(anatomies, BUCKET, PRESET, TEXT, card, source is Source.DATASHEET)
                modeled[f"{card.key}.{source.value}.{recipe}"] = report
                b, st = report["breakdown_s"], report["stages"]
                table.append(
                    f"| {card.name} | {source.value} | {label} | {st['dit_cond_pass']['ms']:.1f} | "
                    f"{st['dit_uncond_pass']['ms']:.1f} | {report['step_ms']:.1f} | **{report['end_to_end_s']:.2f}** | "
                    f"{b['gemm']:.2f} | {b['attention']:.2f} | {b['elementwise']:.2f} | {b['launch']:.2f} | "
                    f"{report['kernel_ceiling_floor_s']:.2f} | {report['flop_floor_s']:.2f} |"
                )
    flops = request_flops(BUCKET, get_preset(PRESET), TEXT)
    text = "\n".join(
        [
            "## Anatomy of the full-size plans (1024x1024 profile, batch 1, 512 text tokens)",
            "",
            *lines,
            "",
            f"## MODELED {BUCKET.name} {PRESET}, {TEXT} text tokens (formula: {flops.total / 1e12:,.1f} TFLOP)",
            "",
            *table,
            "",
        ]
    )
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    if args.json:
        args.json.write_text(json.dumps({"anatomy": summaries, "modeled": modeled}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
