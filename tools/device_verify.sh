#!/usr/bin/env bash
# On the lent GPU machine (no TensorRT there): `verify` with its PyTorch reference on the GPU against ONNX Runtime
# engine sets at tiny size, and tools/verify_bounds.py (bf16/fp16 against fp32) at tiny size and at the release's
# depth and head width. Wheels it lacks travel in .whl (polygraphy, colored, diffusers); reports land in $OUT.
set -euo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
cli() { python3 -m ideogram_trt "$@"; }
w=/tmp/w && rm -rf "$w" && mkdir -p "$w"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv,noheader | tee "$OUT/gpu.txt"
for size in ${SIZES:-tiny deep}; do
    if [ "$size" = tiny ]; then widths=(); buckets=256x256,256x384; else
        widths=(--layers 34 --heads 2 --head-dim 256 --intermediate-size 1536 --text-hidden 256 --latent-channels 32)
        buckets=512x512; fi
    cli make-tiny "$w/$size" --seed 0 "${widths[@]}" > /dev/null
    cli calibrate --model "$w/$size" --out "$w/$size.cal.json" --resolution "${buckets%%,*}" --preset V4_TURBO_12 \
        --limit 4 --device cuda > /dev/null
    for recipe in ${RECIPES:-fp8-wo fp8}; do
        cal=(); [ "$recipe" = fp8 ] && cal=(--calibration "$w/$size.cal.json")
        set_dir="$w/$size-$recipe"
        cli build-engines --model "$w/$size" --out "$set_dir" --recipe "$recipe" "${cal[@]}" --flavor onnxruntime \
            --buckets "$buckets" --max-text-tokens 512 > /dev/null
        if [ "$size" = tiny ]; then
            cli verify "$set_dir" --model "$w/$size" "${cal[@]}" --device cuda --bucket all \
                --json "$OUT/verify_${size}_${recipe}.json" --markdown "$OUT/verify_${size}_${recipe}.md" | tail -3
        fi
        python3 tools/verify_bounds.py --engines "$set_dir" --model "$w/$size" "${cal[@]}" --device cuda \
            --out "$OUT/bounds_${size}_${recipe}.json" | tail -1
    done
done
