#!/usr/bin/env bash
# Control for the SimXIR table: instead of fine-tuning with SimXIR for 5 epochs, continue the
# encoder's own pretraining for 5 more epochs (copy runs/pre-M to runs/cont-M, --resume with
# epochs=8: the cosine schedule is stretched to 8 epochs, so epochs 4-8 run at lr 0.035 -> 0),
# then evaluate with the same protocol (kNN k=5..21 + 50-epoch linear probe, test split).
# Usage (repo root): bash benchmarks/experiments/continue_pretrain.sh M [M ...]
set -euo pipefail
export OMP_NUM_THREADS=1 SIMXIR_QUIET=1
for m in "$@"; do
  (
    rm -rf "runs/cont-$m"; cp -r "runs/pre-$m" "runs/cont-$m"; rm -f "runs/cont-$m/eval.json"
    start=$(date +%s)
    simxir pretrain --out "runs/cont-$m" --resume epochs=8 --json > "runs/cont-$m.json" 2> "runs/cont-$m.err"
    simxir eval --encoder "runs/cont-$m/encoder.safetensors" --data npz:../shared/data/cifar10-12k.npz \
      --linear-epochs 50 --json > "runs/cont-$m/eval.json" 2>> "runs/cont-$m.err"
    echo "cont-$m wall=$(( $(date +%s) - start ))s"
  ) &
done
wait
