#!/usr/bin/env bash
# Pretraining table (results/pretrain): every method on the shared CIFAR-10 12k subset under ONE
# CPU budget: convnet-small, simsiam-cifar augmentation, batch 256, EPOCHS epochs, seed 0.
# Runs JOBS runs at a time, each on one intra-op thread (OMP_NUM_THREADS=1: on the shared,
# oversubscribed 2-core CPU a 2-thread step was 5.6x slower than a 1-thread one, see time_step.py).
# PREFIX (default pre) names the run folders runs/PREFIX-NAME.
# JOBFILE=FILE runs the "name|method|overrides" lines of FILE instead of the built-in list below.
# Usage (repo root): [ONLY="bridge|simsiam"] [PREFIX=pre10] [JOBFILE=F] bash benchmarks/experiments/pretrain_all.sh [EPOCHS] [JOBS]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
EPOCHS=${1:-3}; JOBS=${2:-4}; PREFIX=${PREFIX:-pre}
export OMP_NUM_THREADS=1 SIMXIR_QUIET=1
DATA=npz:../shared/data/cifar10-12k.npz
COMMON="epochs=$EPOCHS batch_size=256 backbone=convnet-small augment=simsiam-cifar seed=0 monitor.every=1 schedule.warmup_epochs=0.5"
SGD="optim.name=sgd optim.lr=0.05 optim.weight_decay=5e-4"
# LARS as solo-learn's CIFAR recipes for Barlow Twins / VICReg (lr 0.3, eta 0.02, clipped, wd 1e-4);
# SGD 0.05 made Barlow Twins nearly collapse (feat_erank 6.9 after 1 epoch).
LARS="optim.name=lars optim.lr=0.3 optim.eta=0.02 optim.clip_lars_lr=true optim.weight_decay=1e-4"
mkdir -p runs
# bridge: LARS 0.3 with the default 2048-2048-2048 projector gave loss ~8e3, feat_erank 3.6 and a
# 10% online probe after one epoch, and the stop-gradient/I-PRED ablation hit an inf loss at step
# 16; so bridge runs with AdamW 1e-3 and a 512-512-128 projector (output d=128 < batch 256, so the
# batch covariance is full rank), as the digits ablation of results/analysis does (128^3).
BRIDGE_OPT="optim.name=adamw optim.lr=1e-3 optim.weight_decay=1e-4"
BRIDGE="$BRIDGE_OPT method.proj_sizes=[512,512,128]"
# byol-linear collapsed its projector output with SGD 0.05; two follow-ups (added after the table):
# AdamW 1e-3 as bridge, and SGD at lr 0.02.
# name | method | extra overrides
cat > runs/pretrain_jobs.txt <<JOBS
bridge|bridge|$BRIDGE
bridge-sg-nostd-ipred|bridge|$BRIDGE method.stop_gradient=true method.standardize=false method.predictor=identity
bridge-sg-nostd-ipred-nocov|bridge|$BRIDGE method.stop_gradient=true method.standardize=false method.predictor=identity method.c_cov=0
barlow_twins|barlow_twins|$LARS method.scale_loss=0.1
vicreg|vicreg|$LARS
byol|byol|$SGD
byol-linear|byol|$SGD method.predictor=linear
byol-linear-adamw|byol|$BRIDGE_OPT method.predictor=linear
byol-linear-lr0.02|byol|optim.name=sgd optim.lr=0.02 optim.weight_decay=5e-4 method.predictor=linear
simsiam|simsiam|$SGD
moco|moco|$SGD method.ema=0.99
simclr|simclr|$SGD
JOBS
if [ -n "${JOBFILE:-}" ]; then cp "$JOBFILE" runs/pretrain_jobs.txt; fi
if [ -n "${ONLY:-}" ]; then grep -E "^(${ONLY})\|" runs/pretrain_jobs.txt > runs/pretrain_jobs.only || true; mv runs/pretrain_jobs.only runs/pretrain_jobs.txt; fi
run_one() {
  IFS='|' read -r name method extra <<< "$1"
  timed_run "$PREFIX-$name" simxir pretrain --method "$method" --data "$DATA" --out "runs/$PREFIX-$name" \
    $COMMON $extra --json || true
}
export -f run_one; export DATA COMMON PREFIX
tr '\n' '\0' < runs/pretrain_jobs.txt | xargs -0 -P "$JOBS" -I{} bash -c 'run_one "$@"' _ {}
