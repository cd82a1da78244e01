#!/usr/bin/env bash
# Multi-crop against two views at about the same wall time (results/multicrop): each pair runs at
# the same time, one intra-op thread each, so both arms see the same machine.
#   byol:   recipes/pretrain/cpu-cifar10/byol.yaml, 10 epochs of 2 views, against 2 + 2 local crops
#           (16 px, scale 0.05-0.4) for 8 epochs (the local crops cost ~20% more per step)
#   simxir: recipes/finetune/simxir-cifar.yaml from a pretrained encoder (ENCODER), 20 epochs of 2
#           views, against 2 + 2 local crops for 12 epochs (the target's extra global view and the
#           local crops cost ~60% more per step)
# Then each encoder is evaluated (kNN + linear, simxir eval --json) and the pairs compared per test
# image (simxir eval --compare: bootstrap interval and McNemar's p).
# Usage (repo root): ROOT=/work/runs-mc ENCODER=RUN/encoder.safetensors bash benchmarks/experiments/multicrop.sh [byol|simxir|eval]
set -euo pipefail
ROOT=${ROOT:-runs/multicrop}
DATA=npz:../shared/data/cifar10-12k.npz
SIMXIR=${SIMXIR:-simxir}
export OMP_NUM_THREADS=1 SIMXIR_QUIET=1
mkdir -p "$ROOT"
LOCAL="multicrop.local_crops=2 multicrop.local_size=16"
resume_flag() { if [ -e "$1/checkpoint.pt" ]; then echo --resume; fi; }
timed() {   # NAME CMD...: runs CMD, stdout to ROOT/NAME.json, wall seconds to ROOT/NAME.wall
  local name=$1; shift
  local t0; t0=$(date +%s)
  "$@" > "$ROOT/$name.json" 2> "$ROOT/$name.err"
  echo $(( $(date +%s) - t0 )) > "$ROOT/$name.wall"
}
pretrain() {   # NAME EXTRA...
  local name=$1; shift
  timed "$name" $SIMXIR pretrain --recipe src/simxir/recipes/pretrain/cpu-cifar10/byol.yaml --data "$DATA" \
    --out "$ROOT/$name" $(resume_flag "$ROOT/$name") threads=1 tensorboard=false "$@" --json
}
finetune() {   # NAME EXTRA...
  local name=$1; shift
  timed "$name" $SIMXIR finetune --recipe src/simxir/recipes/finetune/simxir-cifar.yaml --encoder "$ENCODER" \
    --data "$DATA" --out "$ROOT/$name" --knn none --no-linear $(resume_flag "$ROOT/$name") threads=1 \
    tensorboard=false "$@" --json
}
evaluate() {   # RUN
  [ -e "$ROOT/eval-$1.json" ] || $SIMXIR eval --encoder "$ROOT/$1/encoder.safetensors" --data "$DATA" \
    --json > "$ROOT/eval-$1.json" 2> "$ROOT/eval-$1.err"
}
case "${1:-all}" in
  byol)
    pretrain byol-2view epochs=10 & pretrain byol-multicrop epochs=8 $LOCAL & wait ;;
  simxir)
    finetune simxir-2view epochs=20 & finetune simxir-multicrop epochs=12 $LOCAL & wait ;;
  eval)
    for r in byol-2view byol-multicrop simxir-2view simxir-multicrop; do
      if [ -e "$ROOT/$r/encoder.safetensors" ]; then evaluate "$r"; fi
    done
    for m in byol simxir; do
      if [ -e "$ROOT/eval-$m-multicrop.json" ]; then
        $SIMXIR eval --compare "$ROOT/eval-$m-2view.json" "$ROOT/eval-$m-multicrop.json" --json > "$ROOT/compare-$m.json"
      fi
    done ;;
  *) echo "usage: multicrop.sh byol|simxir|eval" >&2; exit 2 ;;
esac
