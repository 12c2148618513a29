#!/usr/bin/env bash
# Set up from scratch (idempotent) and run the test suite. This is the command CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
# One thread per process: on a 2-core machine OpenMP spin-waiting makes everything slower.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 MLFLOW_DISABLE_TELEMETRY=true
exec python -m pytest tests "$@"
