"""What bf16 and fp16 cost against fp32, engine by engine and end to end: the evidence behind verify's bf16/fp16
bounds (docs/VERIFY.md §3).

No TensorRT runs anywhere here, so the low-precision side is our own PyTorch modules built in bf16 (or fp16) under
the same recipe, against the same modules in fp32 — verify's reference — on verify's own probe inputs and
end-to-end requests. TensorRT's kernels round differently (fused, with fp32 accumulation and softmax), so these
numbers estimate the bounds; they do not measure an engine.

    python tools/verify_bounds.py --engines SET --model CKPT [--calibration FILE] --device cuda --out FILE.json

SET is any engine set built from CKPT (an ONNX Runtime one will do): it gives the recipe, the buckets and the
engines' inputs; its engines are not run.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from ideogram_trt.core.manifest import Manifest
from ideogram_trt.core.recipes import Recipe
from ideogram_trt.core.schedule import DEFAULT_PRESET, get_preset, preset_schedule
from ideogram_trt.export.calibration import Calibration
from ideogram_trt.model.checkpoint import open_checkpoint
from ideogram_trt.verify.reference import Reference
from ideogram_trt.verify.run import DEFAULT_PROMPTS, _engine_probes, _export_settings, _probe_inputs, psnr_db, snr_db


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--calibration", type=Path)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    manifest = Manifest.load(args.engines)
    checkpoint = open_checkpoint(args.model)
    recipe = Recipe(manifest.recipe)
    settings, _ = _export_settings(args.engines, manifest)
    calibration = Calibration.load(args.calibration) if args.calibration else None
    bucket = manifest.bucket_objects[0]
    probes = [p for p in _engine_probes(manifest, [bucket]) if p.entry.graph.spec.exported]
    results: dict[str, object] = {}
    for name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        # verify's reference of an engine set of this dtype: fp32, timesteps rounded through the dtype.
        exact = Reference(checkpoint, recipe, settings, calibration, args.device, timestep_dtype=dtype)
        low = Reference(checkpoint, recipe, settings, calibration, args.device, dtype)
        engines = {}
        for probe in probes:
            feeds = _probe_inputs(probe, manifest, exact)
            ordered = [feeds[spec.name].astype("float32") if feeds[spec.name].dtype.kind == "f" else feeds[spec.name]
                       for spec in probe.entry.inputs]  # fmt: skip
            want, got = exact.run(probe.entry.graph, ordered), low.run(probe.entry.graph, ordered)
            engines[probe.name] = round(snr_db(want, got), 2)
        preset = get_preset(DEFAULT_PRESET)
        schedule = preset_schedule(preset, bucket.height, bucket.width)
        start = time.perf_counter()
        want_run = exact.generate(list(DEFAULT_PROMPTS), bucket.grid, schedule, 0, manifest.max_text_tokens)
        got_run = low.generate(list(DEFAULT_PROMPTS), bucket.grid, schedule, 0, manifest.max_text_tokens)
        e2e = {
            f"prompt {k + 1}": {
                "latent_snr_db": round(snr_db(want_run.latents[k], got_run.latents[k]), 2),
                "image_psnr_db": round(psnr_db(want_run.images[k], got_run.images[k]), 2),
            }
            for k in range(len(DEFAULT_PROMPTS))
        }
        results[name] = {"engine_snr_db": engines, "end_to_end": e2e,
                         "end_to_end_seconds": round(time.perf_counter() - start, 1)}  # fmt: skip
        low.release()
        exact.release()
        print(name, json.dumps(results[name], indent=1), flush=True)
    dit = checkpoint.transformer
    body = {
        "what": "PyTorch modules in bf16/fp16 against the same modules in fp32 (verify's reference); no TensorRT",
        "machine": {
            "gpu": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu",
            "torch": torch.__version__,
            "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d"),
        },
        "recipe": recipe.value,
        "model": {
            "layers": dit.num_layers,
            "heads": dit.num_attention_heads,
            "head_dim": dit.attention_head_dim,
            "hidden": dit.hidden_size,
        },
        "bucket": bucket.name,
        "preset": preset.name.value,
        "results": results,
    }
    args.out.write_text(json.dumps(body, indent=1) + "\n")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
