#!/usr/bin/env bash
# SimXIR with ALL the paper's defaults, 20 epochs included (recipes/finetune/simxir-cifar.yaml),
# test split, standard or raw-anchor variant.
# Usage (repo root): bash benchmarks/experiments/finetune_paper_epochs.sh [ENCODER_RUN] [VARIANT]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ENC=${1:-moco}; VARIANT=${2:-standard}
export OMP_NUM_THREADS=1 SIMXIR_QUIET=1
name="ft-$ENC-$VARIANT-20ep"
timed_run "$name" simxir finetune --recipe recipes/finetune/simxir-cifar.yaml \
  --encoder "runs/pre-$ENC/encoder.safetensors" --data npz:../shared/data/cifar10-12k.npz --out "runs/$name" \
  --linear-epochs 50 --variant "$VARIANT" monitor.every=5 --json
