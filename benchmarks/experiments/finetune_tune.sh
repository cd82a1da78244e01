#!/usr/bin/env bash
# Tune what the SimXIR paper leaves open on ONE encoder, on a validation split (10% of the train
# data, stratified; never the test split): lr 5e-4 / 5e-3 / 5e-2 (l2, target BN batch), then
# target_bn=running and loss=cosine at lr 5e-3; lr 0 as a control (only the BatchNorm running
# statistics move: re-estimated on this data); 5 epochs of the best. kNN only (selection by validation kNN).
# Usage (repo root): [ONLY="lr0|lr5e-3"] bash benchmarks/experiments/finetune_tune.sh [ENCODER_RUN] [EPOCHS] [JOBS]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ENC=${1:-byol}; EPOCHS=${2:-2}; JOBS=${3:-4}
export OMP_NUM_THREADS=1 SIMXIR_QUIET=1
DATA=npz:../shared/data/cifar10-12k.npz
cat > runs/tune_jobs.txt <<JOBS
lr5e-4|optim.lr=5e-4
lr5e-3|optim.lr=5e-3
lr5e-2|optim.lr=5e-2
lr5e-3-running|optim.lr=5e-3 method.target_bn=running
lr5e-3-cosine|optim.lr=5e-3 method.loss=cosine
lr0|optim.lr=0
lr5e-3-running-5ep|optim.lr=5e-3 method.target_bn=running epochs=5 monitor.every=5
JOBS
if [ -n "${ONLY:-}" ]; then grep -E "^(${ONLY})\|" runs/tune_jobs.txt > runs/tune_jobs.only || true; mv runs/tune_jobs.only runs/tune_jobs.txt; fi
run_one() {
  IFS='|' read -r tag extra <<< "$1"
  name="tune-$ENC-$tag"
  timed_run "$name" simxir finetune --recipe recipes/finetune/simxir-cifar.yaml \
    --encoder "runs/pre-$ENC/encoder.safetensors" --data "$DATA" --out "runs/$name" --val-fraction 0.1 \
    --no-linear epochs="$EPOCHS" monitor.every="$EPOCHS" $extra --json || true
}
export -f run_one; export DATA EPOCHS ENC
tr '\n' '\0' < runs/tune_jobs.txt | xargs -0 -P "$JOBS" -I{} bash -c 'run_one "$@"' _ {}
