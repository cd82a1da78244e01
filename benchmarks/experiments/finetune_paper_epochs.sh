#!/usr/bin/env bash
# SimXIR with ALL the paper's defaults, 20 epochs included (recipes/finetune/simxir-cifar.yaml),
# test split, standard or raw-anchor variant.
# Usage (repo root): bash benchmarks/experiments/finetune_paper_epochs.sh [ENCODER_RUN] [VARIANT]
set -euo pipefail
ENC=${1:-moco}; VARIANT=${2:-standard}
export OMP_NUM_THREADS=1 SIMXIR_QUIET=1
name="ft-$ENC-$VARIANT-20ep"
rm -rf "runs/$name"
start=$(date +%s)
simxir finetune --recipe recipes/finetune/simxir-cifar.yaml --encoder "runs/pre-$ENC/encoder.safetensors" \
  --data npz:../shared/data/cifar10-12k.npz --out "runs/$name" --linear-epochs 50 --variant "$VARIANT" \
  monitor.every=5 --json > "runs/$name.json" 2> "runs/$name.err"
echo "{\"run\": \"$name\", \"rc\": 0, \"wall_s\": $(( $(date +%s) - start ))}" > "runs/$name.wall.json"
echo "$name wall=$(( $(date +%s) - start ))s"
