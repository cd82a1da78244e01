#!/usr/bin/env bash
# SimXIR fine-tuning table (results/finetune): the moco, simclr, byol, simsiam encoders of
# pretrain_all.sh, paper defaults (recipes/finetune/simxir-cifar.yaml: SGD lr 5e-4, wd 1e-6,
# batch 512, constant lr, l2 loss, target BN in batch mode) except EPOCHS (CPU budget), standard
# and raw-anchor variants, evaluated on the test split (kNN k=5..21 cos/euc + linear probe).
# Usage (repo root): bash benchmarks/experiments/finetune_all.sh [EPOCHS] [JOBS] [LINEAR_EPOCHS]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
EPOCHS=${1:-3}; JOBS=${2:-3}; LINEAR_EPOCHS=${3:-50}
export OMP_NUM_THREADS=1 SIMXIR_QUIET=1
DATA=npz:../shared/data/cifar10-12k.npz
mkdir -p runs
: > runs/finetune_jobs.txt
for m in moco simclr byol simsiam; do
  for v in standard raw-anchor; do echo "$m|$v" >> runs/finetune_jobs.txt; done
done
run_one() {
  IFS='|' read -r m v <<< "$1"
  name="ft-$m-$v"
  timed_run "$name" simxir finetune --recipe recipes/finetune/simxir-cifar.yaml \
    --encoder "runs/pre-$m/encoder.safetensors" --data "$DATA" --out "runs/$name" --variant "$v" \
    --linear-epochs "$LINEAR_EPOCHS" epochs="$EPOCHS" monitor.every="$EPOCHS" --json || true
}
export -f run_one; export DATA EPOCHS LINEAR_EPOCHS
tr '\n' '\0' < runs/finetune_jobs.txt | xargs -0 -P "$JOBS" -I{} bash -c 'run_one "$@"' _ {}
