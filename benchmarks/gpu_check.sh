#!/usr/bin/env bash
# The prepared device check: one JSON line on stdout, under 6 minutes on one GPU.
#   bash benchmarks/gpu_check.sh > results/gpu/gpu_check.json
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
timeout 360 "$PY" benchmarks/gpu_check.py "$@" 2> "${TMPDIR:-/tmp}/gpu_check.log" | tail -1
