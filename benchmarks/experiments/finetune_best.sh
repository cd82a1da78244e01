#!/usr/bin/env bash
# The setting selected on the validation split by finetune_tune.sh (best validation kNN mean over
# cos/euc k=5..21: lr 5e-3, target BN running, l2, standard, 2 epochs), run ONCE on the test split.
# Usage (repo root): bash benchmarks/experiments/finetune_best.sh [ENCODER_RUN]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ENC=${1:-byol}
export OMP_NUM_THREADS=1 SIMXIR_QUIET=1
name="ft-$ENC-tuned"
timed_run "$name" simxir finetune --recipe recipes/finetune/simxir-cifar.yaml \
  --encoder "runs/pre-$ENC/encoder.safetensors" --data npz:../shared/data/cifar10-12k.npz --out "runs/$name" \
  --linear-epochs 50 epochs=2 monitor.every=2 optim.lr=5e-3 method.target_bn=running --json
