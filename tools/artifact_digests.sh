#!/usr/bin/env bash
# Build the artifacts a refactor must leave byte-identical and print their sha256: the demo's PNG, and tiny
# engine sets (ONNX Runtime fp8, TensorRT-RTX fp8 and fp8-wo plans built on this CPU). Run it before and after a
# change and diff the two outputs.  Usage: tools/artifact_digests.sh OUT_DIR
set -euo pipefail
out=${1:?usage: tools/artifact_digests.sh OUT_DIR}
cli=${IDEOGRAM_TRT:-.venv/bin/ideogram-trt}
mkdir -p "$out"
$cli make-tiny "$out/tiny" --seed 0 --overwrite >/dev/null
$cli calibrate --model "$out/tiny" --out "$out/calibration.json" --resolution 256x256 --preset V4_TURBO_12 \
    --limit 4 --overwrite >/dev/null
$cli build-engines --model "$out/tiny" --out "$out/ort" --recipe fp8 --calibration "$out/calibration.json" \
    --flavor onnxruntime --buckets 256x256,256x384 >/dev/null
$cli generate '{"subject":"a red fox curled up in fresh snow","style":"watercolor"}' --engines "$out/ort" \
    --bucket 256x384 --preset V4_DEFAULT_20 --seed 0 -o "$out/fox.png" >/dev/null
for recipe in fp8 fp8-wo; do
    $cli build-engines --model "$out/tiny" --out "$out/rtx-$recipe" --recipe "$recipe" \
        --calibration "$out/calibration.json" --flavor tensorrt-rtx --compute-capability 8.9 \
        --buckets 256x256,256x384 >/dev/null
done
cd "$out"
find . -type f \( -name '*.plan' -o -name '*.onnx' -o -name '*.png' -o -name '*.data' -o -name 'manifest.json' \
    -o -name '*.json' \) -not -path './tiny/*' | sort | xargs sha256sum
