#!/usr/bin/env bash
# On the GPU machine, in one call: train the tiny shapes checkpoint (run A, shipped) and repeat the first steps of
# each stage from the same command and seed (run B, the reproduction check, docs/TINY_MODEL.md §4). Wheels travel
# in .whl (diffusers, transformers); results come back under $OUT, then `train_tiny.py export` runs anywhere.
#   bash tools/device_train.sh [SECONDS]   # wall budget of the whole call (default 540)
# The DiT step count is chosen from a short timing run so that the call ends inside its budget; the count is
# recorded in the settings, so the command that retrains the same model is in training.json.
set -euo pipefail
budget=${1:-540}
start=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
out=${OUT:-/tmp/out}
mkdir -p "$out"
nvidia-smi -L
python3 -c 'import torch, diffusers, transformers; print("torch", torch.__version__, "diffusers", diffusers.__version__, "transformers", transformers.__version__)'
for run in A B; do
    [ -d /tmp/$run/base ] || python3 tools/train_tiny.py base --work /tmp/$run
done
sha256sum /tmp/A/base/text_encoder/model.safetensors /tmp/B/base/text_encoder/model.safetensors
check=${CHECK_STEPS:-300}
python3 tools/train_tiny.py vae --work /tmp/A >"$out/vae_A.txt" 2>&1 &
a=$!
python3 tools/train_tiny.py vae --work /tmp/B --stop-after "$check" >"$out/vae_B.txt" 2>&1 &
wait $a
wait
for f in "$out"/vae_A.txt "$out"/vae_B.txt; do tail -n 3 "$f"; done
# DiT timing on a throwaway copy with a small bank.
rm -rf /tmp/C && mkdir -p /tmp/C && cp -r /tmp/A/base /tmp/A/vae.safetensors /tmp/C/
python3 tools/train_tiny.py dit --work /tmp/C --dit-steps 80 --log-every 40 --bank 1024 >"$out/dit_timing.txt" 2>&1
ms=$(tail -1 /tmp/C/dit_log.jsonl | python3 -c 'import json, sys; print(json.loads(sys.stdin.read())["ms_per_step"])')
left=$((budget - ($(date +%s) - start) - 60))
steps=$(python3 -c "print(max(1000, min(40000, int($left * 1000 / ($ms * 1.35) / 500) * 500)))")
echo "dit: ${ms} ms per step alone, ${left} s left: ${steps} steps"
python3 tools/train_tiny.py dit --work /tmp/A --dit-steps "$steps" --max-minutes $(((left + 30) / 60)) >"$out/dit_A.txt" 2>&1 &
a=$!
python3 tools/train_tiny.py dit --work /tmp/B --dit-steps "$steps" --stop-after "$check" >"$out/dit_B.txt" 2>&1 &
wait $a || true
wait || true
for f in "$out"/dit_A.txt "$out"/dit_B.txt; do tail -n 3 "$f"; done
mkdir -p /tmp/logs
for run in A B; do
    cp /tmp/$run/vae_log.jsonl /tmp/logs/vae_log_$run.jsonl
    cp /tmp/$run/dit_log.jsonl /tmp/logs/dit_log_$run.jsonl
    cp /tmp/$run/times.json /tmp/logs/times_$run.json
    cp /tmp/$run/*_settings.json /tmp/logs/ 2>/dev/null || true
done
cp /tmp/C/dit_log.jsonl /tmp/logs/dit_log_timing.jsonl
mv "$out"/*.txt /tmp/logs/
tar -C /tmp -cf "$out/logs.tar" logs
cp /tmp/A/vae.safetensors /tmp/A/transformer.safetensors /tmp/A/unconditional_transformer.safetensors "$out/" || true
echo "call: $(($(date +%s) - start)) s"
