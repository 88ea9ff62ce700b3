"""Modeled (not measured) cost of the LoRA side path per denoising step, per card and rank (docs/LORA.md §5).

No TensorRT engine runs anywhere here. The kernels are the ones TensorRT-RTX 1.7 gave the tiny LoRA-ready fp8 DiT
(`inspect --anatomy`; docs/LORA.md §5.1): per block and target, a down-projection GEMM (w1's and w3's share one)
and an up-projection GEMM with the add fused; per block and factor, a small copy (the dynamic rank padded for the
GEMM); per pass and factor, one gather of every block's slice. Each kernel is timed as the step model times one
(engines/step_model.py: the larger of FLOPs at the card's bf16 GEMM rate and bytes at its memory rate, plus the
launch floor), at the release's widths, 1024² (L = 4096 image + 512 text tokens), batch 1; the step it is
compared with is the modeled fp8 V4_DEFAULT_20 step of docs/bench/modeled_full_size.json (one conditional and one
unconditional pass; the side path runs in the conditional one only).

    python tools/lora_cost.py --json docs/bench/lora_cost.json --markdown docs/bench/lora_cost.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ideogram_trt.core.cards import CARDS, Source
from ideogram_trt.core.lora import ALL_TARGETS, LoraShape, LoraTarget
from ideogram_trt.engines.anatomy import LayerClass
from ideogram_trt.engines.step_model import layer_time

RELEASE = LoraShape(layers=34, hidden=4608, intermediate=12288, adaln=512)
TOKENS = 4096 + 512  # 1024² image tokens + a typical prompt
BF16 = 2  # bytes per element
RANKS = (16, 32, 64)


def side_path_seconds(  # type: ignore[no-untyped-def]
    rank: int, rates, shape: LoraShape = RELEASE, tokens: int = TOKENS, dynamic: bool = True
) -> dict[str, float]:
    """Modeled seconds of one conditional pass's side path, by kernel group, and the kernel count. ``dynamic``:
    the rank axis is dynamic (the per-block padding copies TensorRT-RTX adds; a profile of one rank has none)."""
    groups = {"gemm": 0.0, "copies": 0.0, "launch": 0.0}
    kernels = 0

    def kernel(group: str, flops: float, moved: float, kind: LayerClass = LayerClass.GEMM) -> None:
        nonlocal kernels
        seconds, _ = layer_time(kind, "BFloat16", flops, moved, rates)
        groups[group] += seconds
        groups["launch"] += rates.launch_us * 1e-6
        kernels += 1

    for _ in range(shape.layers):
        for target in ALL_TARGETS:
            fan_in, fan_out = shape.widths(target)
            rows = 1 if target is LoraTarget.ADALN else tokens  # the modulation runs once per image
            if target is not LoraTarget.W3:  # w1's and w3's down-projections read one input: one kernel
                width = 2 * rank if target is LoraTarget.W1 else rank
                kernel("gemm", 2 * rows * fan_in * width, BF16 * (rows * fan_in + fan_in * width + rows * width))
            # up-projection with the add: reads its input, Bᵀ and the base output, writes the sum
            kernel("gemm", 2 * rows * rank * fan_out, BF16 * (rows * rank + rank * fan_out + 2 * rows * fan_out))
            for factor in (fan_in * rank, rank * fan_out) if dynamic else ():  # the rank padding copies
                kernel("copies", 0, 2 * BF16 * factor, LayerClass.ELEMENTWISE)
    for target in ALL_TARGETS:  # one gather per factor and pass, every block's slice
        fan_in, fan_out = shape.widths(target)
        for factor in (fan_in * rank, rank * fan_out):
            kernel("copies", 0, 2 * BF16 * factor * shape.layers, LayerClass.ELEMENTWISE)
    return {**groups, "total": sum(groups.values()), "kernels": kernels}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modeled", type=Path, default=Path("docs/bench/modeled_full_size.json"))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    modeled = json.loads(args.modeled.read_text())["modeled"]
    rows = []
    for key, card in CARDS.items():
        for source in (Source.MEASURED, Source.DATASHEET):
            if source is Source.MEASURED and card.measured is None:
                continue
            step = modeled.get(f"{key}.{source.value}.fp8")
            if step is None:
                continue
            stages = step["stages"]
            step_ms = (
                stages["dit_cond_pass"]["ms"] + stages["dit_uncond_pass"]["ms"] * step["uncond_steps"] / step["steps"]
            )
            for rank, dynamic in [(r, True) for r in RANKS] + [(32, False)]:
                cost = side_path_seconds(rank, card.rates(source), dynamic=dynamic)
                rows.append({"card": card.name, "rates": source.value, "rank": rank, "rank_axis":
                             "dynamic 1…R" if dynamic else "static", "step_ms": round(step_ms, 2),
                             "side_path_ms": round(cost["total"] * 1e3, 3), "gemm_ms": round(cost["gemm"] * 1e3, 3),
                             "copies_ms": round(cost["copies"] * 1e3, 3), "launch_ms": round(cost["launch"] * 1e3, 3),
                             "kernels": cost["kernels"],
                             "percent_of_step": round(100 * cost["total"] * 1e3 / step_ms, 2)})  # fmt: skip
    body = {"modeled": True, "tokens": TOKENS, "shape": RELEASE.__dict__, "recipe": "fp8", "rows": rows}
    lines = ["| card | rates | rank | rank axis | side path ms per step | of which GEMMs / copies / launch ms | "
             "kernels | fp8 step ms | % of the step |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        lines.append(f"| {r['card']} | {r['rates']} | {r['rank']} | {r['rank_axis']} | {r['side_path_ms']:.2f} | "
                     f"{r['gemm_ms']:.2f} / "
                     f"{r['copies_ms']:.2f} / {r['launch_ms']:.2f} | {r['kernels']} | {r['step_ms']:.1f} | "
                     f"**{r['percent_of_step']:.1f}** |")  # fmt: skip
    text = "\n".join(lines) + "\n"
    print(text)
    if args.json:
        args.json.write_text(json.dumps(body, indent=1) + "\n")
    if args.markdown:
        args.markdown.write_text("MODELED, not measured (tools/lora_cost.py; docs/LORA.md §5).\n\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
