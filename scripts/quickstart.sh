#!/usr/bin/env bash
# The main job on a fresh machine: set up, then train NSH on CIFAR-10 (quick preset) with Ray Train,
# encode the database and queries to Parquet with Ray Data, evaluate, and print mAP@1000.
# Extra arguments are config overrides, e.g.  bash scripts/quickstart.sh model.nbits=64
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export MLFLOW_DISABLE_TELEMETRY=true
CONFIG=${NSH_CONFIG:-conf/cifar10_quick.yaml}
start=$(date +%s)
python pipelines/train.py --config "$CONFIG" "$@"
python pipelines/encode.py --config "$CONFIG" "$@"
python pipelines/evaluate.py --config "$CONFIG" "$@"
out=$(python -c "import sys; from nsh.config import load_config; print(load_config(sys.argv[1], sys.argv[2:]).output_dir)" "$CONFIG" "$@")
cat <<MSG

Done in $(( $(date +%s) - start )) s after setup.
  metrics and plots : $out/eval/ (metrics.json, pr_curve.png, retrieval_grid.png)
  Parquet codes     : $out/codes/{query,database}/
  best checkpoint   : $out/best/checkpoint.pt
  MLflow UI         : . .venv/bin/activate && mlflow ui --backend-store-uri sqlite:///$(pwd)/mlflow.db --host 127.0.0.1
                      then open http://127.0.0.1:5000 (registered model 'nsh', alias 'champion')
MSG
