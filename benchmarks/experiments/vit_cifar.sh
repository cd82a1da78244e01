#!/usr/bin/env bash
# SimXIR on a small-image ViT (results/finetune/vit-cifar/README.md): MoCo pretraining with
# RECIPE (recipes/pretrain/cpu-cifar10/vit-moco.yaml), then SimXIR fine-tuning (recipes/finetune/simxir-cifar.yaml:
# one round, SGD lr 5e-4 momentum 0.9 wd 1e-6, l2 loss, the class token), both variants, and the
# control (the pretraining resumed for the same number of extra epochs), each encoder evaluated by
# converged_eval.py (kNN k=5..21 cos/euc, fast linear probe, per-image outcomes); vit_cifar_table.py
# writes the before/after tables with paired 95% intervals over the test images.
# The CPU budget: BACKBONE (default vit-tiny-p8-32: patch 8 at 32 px, 17 tokens, 4x cheaper than
# the recipe's vit-tiny-cifar), EPOCHS of pretraining, FT_EPOCHS of SimXIR and of the control.
# Usage (repo root, venv active): [ROOT=/work/runs-vit] bash benchmarks/experiments/vit_cifar.sh
# Every stage resumes (--resume) or is skipped when its output exists. ONLY="ft-standard" (or
# ft-raw-anchor, cont) runs that arm alone once pre exists, so the three arms can run side by side.
set -euo pipefail
ROOT=${ROOT:-/work/runs-vit}; EPOCHS=${EPOCHS:-6}; FT_EPOCHS=${FT_EPOCHS:-3}; THREADS=${THREADS:-1}
BACKBONE=${BACKBONE:-vit-tiny-p8-32}
DATA=${DATA:-npz:../shared/data/cifar10-12k.npz}
export OMP_NUM_THREADS=$THREADS SIMXIR_QUIET=1
mkdir -p "$ROOT/eval"
log() { echo "$(date -u +%FT%TZ) $*" | tee -a "$ROOT/log.txt"; }
resume() { [ -e "$1/checkpoint.pt" ] && echo --resume || true; }
want() { [ -z "${ONLY:-}" ] || [ "$ONLY" = "$1" ]; }
timed() {   # NAME CMD...: run unless ROOT/NAME.wall exists; wall seconds -> ROOT/NAME.wall
  local name=$1 start; shift
  [ -e "$ROOT/$name.wall" ] && return 0
  log "start $name"; start=$(date +%s)
  "$@" > "$ROOT/$name.json" 2>> "$ROOT/$name.err"
  echo $(( $(date +%s) - start )) > "$ROOT/$name.wall"; log "end $name $(cat "$ROOT/$name.wall")s"
}
evaluate() { timed "eval-$1" python benchmarks/experiments/converged_eval.py "$ROOT/$1/encoder.safetensors" "$DATA" \
  "$ROOT/eval/$1.json"; }

[ -n "${ONLY:-}" ] && [ ! -e "$ROOT/pre.wall" ] && { echo "ONLY=$ONLY: pre is not done" >&2; exit 2; }
timed pre simxir pretrain --recipe ${RECIPE:-recipes/pretrain/cpu-cifar10/vit-moco.yaml} --data "$DATA" --out "$ROOT/pre" \
  $(resume "$ROOT/pre") backbone="$BACKBONE" epochs="$EPOCHS" threads="$THREADS" monitor.knn_every=2 \
  monitor.eval_size=2000 tensorboard=false --json
{ [ -z "${ONLY:-}" ] || [ "$ONLY" = ft-standard ]; } && evaluate pre
for v in standard raw-anchor; do
  want "ft-$v" || continue
  timed "ft-$v" simxir finetune --recipe recipes/finetune/simxir-cifar.yaml --encoder "$ROOT/pre/encoder.safetensors" \
    --data "$DATA" --out "$ROOT/ft-$v" --variant "$v" --knn none --no-linear $(resume "$ROOT/ft-$v") \
    epochs="$FT_EPOCHS" threads="$THREADS" tensorboard=false --json
  evaluate "ft-$v"
done
if want cont; then
if [ ! -e "$ROOT/cont.wall" ] && [ ! -e "$ROOT/cont/checkpoint.pt" ]; then rm -rf "$ROOT/cont"; cp -r "$ROOT/pre" "$ROOT/cont"; fi
timed cont simxir pretrain --out "$ROOT/cont" --resume epochs=$(( EPOCHS + FT_EPOCHS )) --json
evaluate cont
fi
[ -n "${ONLY:-}" ] || python benchmarks/experiments/vit_cifar_table.py --root "$ROOT"
