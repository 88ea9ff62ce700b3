#!/usr/bin/env bash
# On the GPU machine: train the tiny shapes checkpoint twice from the same commands and seed — run A is shipped,
# run B is the reproduction check of docs/TINY_MODEL.md §4.2. One call per phase, so that no stage spans two calls
# and no optimizer state has to cross between them (a paused stage can resume only on the same, still warm machine):
#   bash tools/device_train.sh vae            # base + VAE for A and B; meanwhile a compiled DiT timing pair (C1, C2)
#   bash tools/device_train.sh dit STEPS      # DiT run (1) of A and B, STEPS steps (chosen from the timing pair)
#   bash tools/device_train.sh dit2 STEPS LR  # DiT run (2): continue A's and B's DiTs in A2, B2 (--init-from)
# The shipped checkpoint ran `RUNS=A … dit 3500`, then `RUNS=B … dit 3500`, then `dit2 3000 6e-4` (both at once).
# Wheels travel in .whl (diffusers, transformers). Each call returns its work folders (weights, logs, the stage
# commands; no optimizer states) as tars under $OUT; the dit call restores the vae call's tars from .carry-train
# when it lands on a fresh machine. `train_tiny.py export` then runs anywhere.
# Environment: EXTRA_VAE / EXTRA_DIT add arguments to those stages (a dry run on the CPU uses them to shrink the
# work); MINUTES bounds each DiT process (it saves and pauses past it).
set -euo pipefail
phase=${1:?usage: device_train.sh vae | dit STEPS | dit2 STEPS LR}
start=$(date +%s)
if [ -z "${SKIP_WHEELS:-}" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
out=${OUT:-/tmp/out}
root=${TRAIN_ROOT:-/tmp/train}
mkdir -p "$out" "$root"
command -v nvidia-smi >/dev/null && nvidia-smi -L
python3 -c 'import torch, diffusers, transformers; print("torch", torch.__version__, "diffusers", diffusers.__version__, "transformers", transformers.__version__)'
train() { python3 tools/train_tiny.py "$@"; }
# dit_runs SUFFIX ARGS...: the dit stage in $root/<run>SUFFIX for every run at once ({run} in ARGS names the run),
# then a tar of each work folder (no optimizer states) under $out; sets status.
dit_runs() {
    local suffix=$1 run p
    shift
    local pids=()
    for run in ${RUNS:-A B}; do
        # shellcheck disable=SC2086
        train dit --work "$root/$run$suffix" "${@//\{run\}/$run}" --max-minutes "${MINUTES:-9}" ${EXTRA_DIT:-} \
            >"$root/dit_$run$suffix.txt" 2>&1 &
        pids+=($!)
    done
    status=0
    for p in "${pids[@]}"; do wait "$p" || status=$?; done
    for run in ${RUNS:-A B}; do
        tail -n 3 "$root/dit_$run$suffix.txt"
        tar -C "$root" -cf "$out/$run$suffix.tar" --exclude='*_state.pt' --exclude=base "$run$suffix" "dit_$run$suffix.txt"
    done
}

case $phase in
vae)
    for run in A B; do
        [ -d "$root/$run/base" ] || train base --work "$root/$run"
    done
    sha256sum "$root"/A/base/text_encoder/model.safetensors "$root"/B/base/text_encoder/model.safetensors
    pids=()
    for run in A B; do
        # shellcheck disable=SC2086
        train vae --work "$root/$run" ${EXTRA_VAE:-} >"$root/vae_$run.txt" 2>&1 &
        pids+=($!)
    done
    # The timing pair: two compiled DiT runs at once on a random VAE, as A and B will run in the dit call.
    for c in C1 C2; do
        rm -rf "${root:?}/$c" && mkdir -p "$root/$c" && cp -r "$root/A/base" "$root/$c/"
        python3 -c "
import sys, torch
sys.path.insert(0, 'tools')
import train_tiny
from safetensors.torch import save_file
vae = train_tiny.new_vae(torch.device('cpu'))
save_file({k: v.contiguous() for k, v in vae.state_dict().items()}, '$root/$c/vae.safetensors')"
    done
    # shellcheck disable=SC2086
    for c in C1 C2; do
        train dit --work "$root/$c" --dit-steps 400 --log-every 100 --bank 2048 ${EXTRA_DIT:-} >"$root/timing_$c.txt" 2>&1 &
        pids+=($!)
    done
    status=0
    for p in "${pids[@]}"; do wait "$p" || status=$?; done
    for f in "$root"/*.txt; do echo "== $f"; tail -n 4 "$f"; done
    tar -C "$root" -cf "$out/vae.tar" --exclude='*_state.pt' --exclude=base A B vae_A.txt vae_B.txt timing_C1.txt timing_C2.txt C1/dit_log.jsonl C2/dit_log.jsonl
    ;;
dit)
    steps=${2:?usage: device_train.sh dit STEPS}
    for run in ${RUNS:-A B}; do
        if [ ! -f "$root/$run/vae.safetensors" ]; then
            tar -C "$root" -xf .carry-train/vae.tar "$run"
            echo "$run: restored the vae call's work folder from .carry-train/vae.tar"
        fi
        [ -d "$root/$run/base" ] || train base --work "$root/$run"
    done
    dit_runs "" --dit-steps "$steps"
    ;;
dit2)
    steps=${2:?usage: device_train.sh dit2 STEPS LR}
    lr=${3:?usage: device_train.sh dit2 STEPS LR}
    for run in ${RUNS:-A B}; do
        # Run (1) must have finished here: a paused run also writes its weights so far.
        tail -n 1 "$root/$run/commands.jsonl" 2>/dev/null | grep -q '"stage": "dit", .*"finished": true' ||
            { echo "$run: no finished DiT run (1) on this machine (run the dit phase first)" >&2; exit 9; }
        rm -rf "${root:?}/${run}2" && mkdir -p "$root/${run}2" && cp -r "$root/$run/base" "$root/$run/vae.safetensors" "$root/${run}2/"
    done
    dit_runs 2 --init-from "$root/{run}" --dit-steps "$steps" --dit-lr "$lr"
    ;;
*)
    echo "device_train.sh: unknown phase '$phase' (vae, dit or dit2)" >&2
    exit 2
    ;;
esac
echo "call: $(($(date +%s) - start)) s"
exit "$status"
