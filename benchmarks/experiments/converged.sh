#!/usr/bin/env bash
# The converged-encoder SimXIR experiment (results/finetune/converged/README.md), one worker.
# Start one or two workers from the repo root; each takes the next unfinished unit (method, seed)
# and runs its stages in order, skipping every stage whose marker exists, resuming any stage that
# was interrupted (--resume). Run folders live in ROOT (outside the checkout):
#   pre-M-sS    EPOCHS epochs of M's own method (convnet-small, simsiam-cifar augmentation,
#               batch 256, SGD lr 0.05 wd 5e-4 cosine, MoCo ema 0.99: pretrain_all.sh's settings),
#               kNN monitor (k=20, all 2,000 test images, 10,000 train) every 10 epochs
#   ft-M-sS-standard / ft-M-sS-raw-anchor   SimXIR, recipes/finetune/simxir-cifar.yaml: the paper's
#               one round of 20 epochs, SGD lr 5e-4 momentum 0.9 wd 1e-6, batch 512, l2 loss
#   cont-M-sS   the control: pre-M-sS resumed to EPOCHS+20 epochs (the cosine schedule stretched to
#               EPOCHS+20: the extra 20 epochs run from lr 0.05*(1+cos(pi*E/(E+20)))/2 down to 0)
#   lr0-M-sS    the lr = 0 control (issue 32): SimXIR's recipe and epochs with optim.lr=0, so only
#               BatchNorm's running statistics move; for the methods in LR0_METHODS (moco simclr)
#   base-M-sS   (an evaluation only) pre-M-sS trained again in a later session because its run folder
#               was lost but a new arm needs the encoder; evaluated under its own name so the committed
#               pre-M-sS stays the encoder the committed arms were trained from (the table says
#               whether the two are identical)
#   rounds-M-sS SimXIR with T=4 rounds of 5 epochs (same 20-epoch budget), for ROUNDS_METHOD and the
#               seeds in ROUNDS_SEEDS only (default byol, seed 1: byol-s0's run folder was lost
#               with its machine before its rounds arm ran, and its other arms are committed;
#               byol-s2's was left out to finish the last units within one session)
#   A unit (method, seed) runs all its stages in one go; a unit whose evaluations are committed in
#   results/finetune/converged/runs/ is skipped, so the experiment goes on across sessions whose
#   run folders are lost (commit each finished unit: converged_table.py, then git add results/).
#   eval/NAME.json  converged_eval.py of every encoder (kNN k=5..21 cos/euc, 100-epoch fast linear
#               probe, per-image outcomes, class geometry)
# Usage (repo root, venv active): [ROOT=/work/runs-converged] [EPOCHS=60] bash benchmarks/experiments/converged.sh start N
#   `start N` snapshots the committed code (git archive HEAD -> ROOT/code, so that later edits of the
#   checkout do not change a running experiment), clears stale claims and starts N background
#   workers there (nohup; logs in ROOT/log.txt); run it again after an interruption to resume.
set -uo pipefail
ROOT=${ROOT:-/work/runs-converged}; EPOCHS=${EPOCHS:-60}
ROUNDS_METHOD=${ROUNDS_METHOD:-byol}; ROUNDS_SEEDS=${ROUNDS_SEEDS:-1}; LR0_METHODS=${LR0_METHODS:-moco simclr}
if [ "${1:-}" = start ]; then
  shared=$(cd ../shared/data && pwd) || { echo "../shared/data: not found" >&2; exit 2; }
  mkdir -p "$ROOT"; rm -rf "$ROOT/code" "$ROOT/claims"; mkdir -p "$ROOT/code"
  git archive HEAD | tar -x -C "$ROOT/code"
  for i in $(seq 1 "${2:-1}"); do
    (cd "$ROOT/code" && SHARED=$shared PYTHONPATH="$ROOT/code/src" ROOT=$ROOT EPOCHS=$EPOCHS \
      ROUNDS_METHOD=$ROUNDS_METHOD ROUNDS_SEEDS="$ROUNDS_SEEDS" LR0_METHODS="$LR0_METHODS" DATA_SPEC=${DATA_SPEC:-} UNITS_ONLY=${UNITS_ONLY:-} setsid nohup bash benchmarks/experiments/converged.sh "$i" \
      >> "$ROOT/worker-$i.out" 2>&1 &)
    sleep 2
  done
  echo "started ${2:-1} worker(s) on $(git rev-parse --short HEAD) in $ROOT/code"; exit 0
fi
ID=${1:-0}
DATA=${DATA_SPEC:-npz:${SHARED:-../shared/data}/cifar10-12k.npz}
SIMXIR=${SIMXIR:-simxir}; PY=${PY:-python}
export OMP_NUM_THREADS=1 SIMXIR_QUIET=1
mkdir -p "$ROOT/eval" "$ROOT/claims" "$ROOT/done"
COMMON="batch_size=256 backbone=convnet-small augment=simsiam-cifar threads=1 schedule.warmup_epochs=2
monitor.every=10 monitor.knn_every=10 monitor.eval_size=2000 monitor.save_predictor=false tensorboard=false
optim.name=sgd optim.lr=0.05 optim.weight_decay=5e-4"
UNITS=""   # seeds 1 and 2 first: their committed encoders ran with this machine's bf16, so a rerun can match
for s in 1 2 0; do for m in moco simclr byol simsiam; do UNITS="$UNITS $m-s$s"; done; done
UNITS=${UNITS_ONLY:-$UNITS}   # a smoke test: e.g. UNITS_ONLY="moco-s0"
# evaluations committed by earlier sessions (converged_table.py copies ROOT/eval there): a unit whose
# evaluations are all there is done, even when ROOT was lost with its machine
RESULTS=${RESULTS:-results/finetune/converged/runs}

note() { echo "$(date -u +%FT%TZ) worker $ID $*" | tee -a "$ROOT/log.txt"; }

# stage NAME CMD...: skip when done/NAME exists; else run CMD, stdout -> ROOT/NAME.json, stderr ->
# ROOT/NAME.err (appended), record {"run", "rc", "wall_s"} (wall time summed over attempts)
stage() {
  local name=$1 start rc=0 prev=0
  shift
  [ -e "$ROOT/done/$name" ] && return 0
  [ -e "$ROOT/$name.wall" ] && prev=$(cat "$ROOT/$name.wall")
  note "start $name"
  start=$(date +%s)
  "$@" > "$ROOT/$name.json" 2>> "$ROOT/$name.err" || rc=$?
  echo $(( prev + $(date +%s) - start )) > "$ROOT/$name.wall"
  note "end $name rc=$rc wall=$(cat "$ROOT/$name.wall")s"
  [ "$rc" = 0 ] && echo "{\"run\": \"$name\", \"wall_s\": $(cat "$ROOT/$name.wall")}" > "$ROOT/done/$name"
  return "$rc"
}

resume_flag() { [ -e "$1/checkpoint.pt" ] && echo --resume; }

pretrain() {   # NAME METHOD SEED
  local extra=""
  [ "$2" = moco ] && extra="method.ema=0.99"
  $SIMXIR pretrain --method "$2" --data "$DATA" --out "$ROOT/$1" $(resume_flag "$ROOT/$1") epochs="$EPOCHS" \
    seed="$3" $COMMON $extra --json
}

finetune() {   # NAME ENCODER_RUN VARIANT ROUNDS [KEY=VALUE...]
  local name=$1 enc=$2 variant=$3 rounds=$4
  shift 4
  $SIMXIR finetune --recipe recipes/finetune/simxir-cifar.yaml --encoder "$ROOT/$enc/encoder.safetensors" \
    --data "$DATA" --out "$ROOT/$name" --variant "$variant" --rounds "$rounds" --knn none --no-linear \
    $(resume_flag "$ROOT/$name") threads=1 tensorboard=false "$@" --json
}

control() {   # NAME FROM
  if [ ! -e "$ROOT/$1/checkpoint.pt" ]; then rm -rf "$ROOT/$1"; cp -r "$ROOT/$2" "$ROOT/$1"; fi
  $SIMXIR pretrain --out "$ROOT/$1" --resume epochs=$(( EPOCHS + 20 )) --json
}

evaluate() {   # RUN [EVAL_NAME]
  $PY benchmarks/experiments/converged_eval.py "$ROOT/$1/encoder.safetensors" "$DATA" "$ROOT/eval/${2:-$1}.json"
}

committed() { [ -e "$RESULTS/$1.json" ]; }   # RUN: its evaluation is committed

has_rounds() {   # UNIT: the unit has a T=4 rounds arm
  local m=${1%-s*} s=${1##*-s}
  [ "$m" = "$ROUNDS_METHOD" ] && [[ " $ROUNDS_SEEDS " == *" $s "* ]]
}

has_lr0() { [[ " $LR0_METHODS " == *" ${1%-s*} "* ]]; }

runs_of() {   # UNIT: the runs whose evaluations make the unit
  echo "pre-$1 ft-$1-standard ft-$1-raw-anchor cont-$1"
  if has_rounds "$1"; then echo "rounds-$1"; fi
  if has_lr0 "$1"; then echo "lr0-$1"; fi
}

evaluated() {   # DIR UNIT: all the unit's evaluations are in DIR
  local r
  for r in $(runs_of "$2"); do [ -e "$1/$r.json" ] || return 1; done
}

unit() {   # the arms whose evaluations are committed are not run again
  local u=$1
  local m=${u%-s*} s=${u##*-s}
  stage "pre-$u" pretrain "pre-$u" "$m" "$s" || return 1
  if committed "pre-$u"; then stage "eval-base-$u" evaluate "pre-$u" "base-$u"
  else stage "eval-pre-$u" evaluate "pre-$u"; fi
  for v in standard raw-anchor; do
    committed "ft-$u-$v" || { stage "ft-$u-$v" finetune "ft-$u-$v" "pre-$u" "$v" 1 && stage "eval-ft-$u-$v" evaluate "ft-$u-$v"; }
  done
  committed "cont-$u" || { stage "cont-$u" control "cont-$u" "pre-$u" && stage "eval-cont-$u" evaluate "cont-$u"; }
  if has_rounds "$u" && ! committed "rounds-$u"; then   # T=4 rounds of 5 epochs (the same 20-epoch budget)
    stage "rounds-$u" finetune "rounds-$u" "pre-$u" standard 4 && stage "eval-rounds-$u" evaluate "rounds-$u"
  fi
  if has_lr0 "$u" && ! committed "lr0-$u"; then   # lr = 0: only BatchNorm's running statistics move
    stage "lr0-$u" finetune "lr0-$u" "pre-$u" standard 1 optim.lr=0 && stage "eval-lr0-$u" evaluate "lr0-$u"
  fi
  evaluated "$ROOT/eval" "$u" || evaluated_mixed "$u"
}

evaluated_mixed() {   # UNIT: every run evaluated, here or committed
  local r
  for r in $(runs_of "$1"); do [ -e "$ROOT/eval/$r.json" ] || committed "$r" || return 1; done
}

for u in $UNITS; do
  key=${u//:/_}
  [ -e "$ROOT/done/unit-$key" ] && continue
  if evaluated "$RESULTS" "$u"; then note "unit $u: committed in $RESULTS"; touch "$ROOT/done/unit-$key"; continue; fi
  mkdir "$ROOT/claims/$key" 2>/dev/null || continue   # another worker has it
  note "unit $u"
  if unit "$u"; then touch "$ROOT/done/unit-$key"; fi
done
note "no units left"
