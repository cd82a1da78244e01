#!/usr/bin/env bash
# The prepared device check: one JSON line per section as it finishes (benchmarks/gpu_check.py), each
# section guarded, within the device's 10-minute command limit; lines and log also under $OUT.
#   bash benchmarks/gpu_check.sh [--quick] [--only preflight,syncs]
set -uo pipefail
cd "$(dirname "$0")/.."
timeout 590 "${PYTHON:-python}" benchmarks/gpu_check.py "$@"
