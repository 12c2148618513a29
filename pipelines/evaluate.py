"""Evaluate encoded codes: mAP@k (stable and tie-aware), P@H<=2, the P-R curve and a retrieval grid.

    python pipelines/evaluate.py --config conf/cifar10_quick.yaml

Reads <output_dir>/codes/query and <output_dir>/codes/database, writes metrics.json, pr_curve.png and
retrieval_grid.png to <output_dir>/eval, and logs them to the MLflow run that trained the model.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nsh import tracking  # noqa: E402
from nsh.config import load_config  # noqa: E402
from nsh.evaluation import METRIC_PREFIXES, format_table, report  # noqa: E402
from nsh.training import load_data  # noqa: E402
from pipelines.ray_runtime import log, script_args  # noqa: E402


def main(argv=None) -> dict:
    args = script_args(argv, __doc__)
    cfg = load_config(args.config, args.overrides)
    out = Path(cfg.output_dir)
    corpus = None if cfg.encode.input else load_data(cfg)[0]
    result = report(out / "codes" / "query", out / "codes" / "database", out / "eval", cfg.eval.k, corpus,
                    cfg.eval.grid_queries, cfg.eval.grid_hits)
    log(f"{cfg.data.dataset}: {result['queries']} queries vs {result['database']} database items, "
        f"{result['nbits']} bits ({result['model_uri']})")
    log(format_table(result))
    run_file = out / "mlflow_run_id"
    if run_file.is_file():
        tracking.setup(cfg)
        run_id = run_file.read_text().strip()
        client = tracking.MlflowClient()
        tracking.RunLogger(run_id, tracking.tracking_uri(cfg.mlflow.tracking_uri)).log_metrics(
            {f"test_{k}": v for k, v in result.items() if k.startswith(METRIC_PREFIXES)})
        for f in result["files"]:
            client.log_artifact(run_id, f, artifact_path="eval")
        result["run_id"] = run_id
        log(f"logged to MLflow run {run_id}")
    log(f"plots and metrics: {out / 'eval'}")
    (out / "eval" / "summary.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
