#!/usr/bin/env bash
# The bridging paper's Table 3 rows (simxir ablation --rows paper: c_inv=1, c_cov 0/1, k=1, plus the
# two stop-gradient rows without STD it does not have) on the shared CIFAR-10 12k subset, with the
# CPU pretraining budget of results/pretrain (convnet-small, EPOCHS epochs, batch 256, AdamW 1e-3,
# projector 512-512-128). Two processes of one intra-op thread each, rows split between them.
# Usage (repo root): bash benchmarks/experiments/ablation_cifar.sh [EPOCHS]
set -euo pipefail
EPOCHS=${1:-10}
export OMP_NUM_THREADS=1 SIMXIR_QUIET=1
COMMON="epochs=$EPOCHS batch_size=256 backbone=convnet-small augment=simsiam-cifar seed=0 monitor.every=1
 schedule.warmup_epochs=0.5 optim.name=adamw optim.lr=1e-3 optim.weight_decay=1e-4 tensorboard=false
 method.proj_sizes=[512,512,128]"
A=paper-no-std-no-cov,paper-no-std,paper-std-no-cov,paper-std,paper-i-pred-no-std-no-cov,paper-i-pred-no-std
B=paper-std-i-pred-no-cov,paper-std-i-pred,paper-std-i-pred-stopgrad-no-cov,extra-i-pred-stopgrad-no-std-no-cov,extra-i-pred-stopgrad-no-std
OUT=results/analysis/ablation-cifar-${EPOCHS}ep
for part in a b; do
  rows=$A; [ $part = b ] && rows=$B
  simxir ablation --out "$OUT-$part" --data npz:../shared/data/cifar10-12k.npz --rows "$rows" $COMMON \
    > "$OUT-$part.log" 2>&1 &
done
wait
