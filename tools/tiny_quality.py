"""Measure the trained tiny checkpoint on the held-out captions (docs/TINY_MODEL.md §5.1): build an ONNX Runtime
engine set of one recipe, draw every held-out caption (or every k-th) at each preset, judge the images with the
pixel checker, and write the pass rates to JSON and a gallery of references and drawings to a PNG.

    python tools/tiny_quality.py --out quality-out                      # bf16, all 222, three presets (~6 min)
    python tools/tiny_quality.py --model DIR --out q --preset V4_FAST_20  # another export, e.g. the repeat run's:
                                   # train_tiny.py export --work R --then R2 --out DIR

Runs on the CPU; never in CI (tests/test_quality_gates.py holds the gates on a subset).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from ideogram_trt.cli import main as cli
from ideogram_trt.quality import checker, shapes
from ideogram_trt.runtime import Pipeline

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ("V4_FAST_20", "V4_DEFAULT_20", "V4_TURBO_12")
GALLERY = 12  # captions in the picture: the first of each (shape, size) pair, then more until this many


def gallery_captions(captions: list[shapes.Caption]) -> list[int]:
    """Indices of a few captions covering every shape and size."""
    picked, seen = [], set()
    for i, c in enumerate(captions):
        if (c.shape, c.size) not in seen:
            seen.add((c.shape, c.size))
            picked.append(i)
    step = max(1, len(captions) // GALLERY)
    for i in range(0, len(captions), step):
        if len(picked) >= GALLERY:
            break
        if i not in picked:
            picked.append(i)
    return sorted(picked[:GALLERY])


def gallery(strips: dict[str, list[np.ndarray]], results: dict[str, dict[str, object]]) -> Image.Image:
    """One row of tiles per strip, at half size, with its name and pass rate in a left margin."""
    from PIL import ImageDraw

    tile, margin = 128, 150
    count = len(next(iter(strips.values())))
    picture = Image.new("RGB", (margin + count * tile, len(strips) * tile), "white")
    draw = ImageDraw.Draw(picture)
    for row, (name, images) in enumerate(strips.items()):
        for col, image in enumerate(images):
            picture.paste(Image.fromarray(image).resize((tile, tile), Image.LANCZOS), (margin + col * tile, row * tile))
        label = name if name not in results else f"{name}\npass {results[name]['passed']:.3f}"
        draw.multiline_text((8, row * tile + tile // 2 - 12), label, fill="black")
    return picture


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "checkpoints" / "tiny-shapes")
    parser.add_argument("--out", type=Path, required=True, help="folder for the engine set, results and gallery")
    parser.add_argument("--every", type=int, default=1, help="judge every k-th held-out caption")
    parser.add_argument("--preset", action="append", help=f"repeatable (default: {', '.join(PRESETS)})")
    args = parser.parse_args(argv)
    presets = args.preset or list(PRESETS)
    engines = args.out / "engines"
    code = cli(["build-engines", "--model", str(args.model), "--out", str(engines), "--recipe", "bf16",
                "--flavor", "onnxruntime", "--buckets", "256x256"])  # fmt: skip
    if code:
        return code
    captions = shapes.held_out_captions()[:: args.every]
    pipe = Pipeline.from_engines(engines)
    results, rows = {}, {}
    for preset in presets:
        start = time.perf_counter()
        images = pipe([c.prompt for c in captions], height=256, width=256, preset=preset, seed=0).images
        verdicts = [checker.check(image, caption) for image, caption in zip(images, captions, strict=True)]
        by_shape = Counter(c.shape.value for c in captions)
        passed = Counter(c.shape.value for c, v in zip(captions, verdicts, strict=True) if v.passed)
        summary = checker.Summary.of(verdicts)
        results[preset] = {
            "captions": len(captions),
            "passed": summary.passed,
            "by_check": {k: getattr(summary, k) for k in ("background", "color", "shape", "position", "size")},
            "by_shape": {s: f"{passed[s]}/{n}" for s, n in sorted(by_shape.items())},
            "seconds": round(time.perf_counter() - start, 1),
        }
        print(f"{preset}: {summary.passed:.3f} of {len(captions)} ({results[preset]['by_shape']})", flush=True)
        rows[preset] = images
    record = {"model": str(args.model), "recipe": "bf16", "seed": 0, "every": args.every, "presets": results}
    (args.out / "quality.json").write_text(json.dumps(record, indent=2) + "\n")
    picked = gallery_captions(captions)
    reference = np.asarray(shapes.to_uint8(shapes.render([captions[i] for i in picked])))
    strips = {"reference": list(reference), **{p: [rows[p][i] for i in picked] for p in presets}}
    gallery(strips, results).save(args.out / "gallery.png")
    print(f"wrote {args.out / 'quality.json'} and {args.out / 'gallery.png'} (rows: reference, {', '.join(presets)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
