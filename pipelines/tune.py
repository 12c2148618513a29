"""Sweep NSH's hyperparameters with Ray Tune: the NCE temperature, the sorter steepness, and more.

    python pipelines/tune.py --config conf/sweep_cifar10.yaml [key=value ...]
    python pipelines/tune.py --config conf/sweep_cifar10.yaml --resume     # finish an interrupted sweep

Each trial runs the training function of pipelines/train.py (nsh.training.fit) with its own values from
tune.space; ASHA stops weak trials early on validation mAP. Every trial is an MLflow run nested under one
parent run for the sweep. The sweep writes <output_dir>/sweep_summary.csv and sweep_map.png (validation mAP
over the tau x steepness plane), logs both to the parent run, and registers the best trial's model, which
becomes champion only if it beats the current one on validation mAP.
"""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines import ray_runtime  # noqa: E402
from pipelines.train import keep_best, register_best  # noqa: E402
from nsh import plots, tracking  # noqa: E402
from nsh.config import load_config  # noqa: E402
from nsh.training import cache_dir, default_split_path  # noqa: E402

log = ray_runtime.log


def summarise(grid, keys: list[str]) -> list[dict]:
    rows = []
    for r in grid:
        history = r.metrics_dataframe
        best = float(history["val_map"].max()) if history is not None and "val_map" in history else float("nan")
        rows.append({"trial_id": r.metrics.get("trial_id", "") if r.metrics else "",
                     **{k: r.config.get(k) for k in keys}, "best_val_map": best,
                     "epochs": int(len(history)) if history is not None else 0,
                     "status": "ERROR" if r.error else "OK"})
    return sorted(rows, key=lambda row: -row["best_val_map"] if row["best_val_map"] == row["best_val_map"] else 1)


def main(argv=None) -> dict:
    args = ray_runtime.script_args(argv, __doc__)
    cfg = load_config(args.config, args.overrides)
    if not cfg.tune.space:
        raise ValueError("tune.space is empty: name at least one key to search, e.g. loss.tau")
    # Every trial reads the same split and the same cached features.
    cfg.data.split_file = str(default_split_path(cfg))
    cfg.data.cache_dir = str(cache_dir(cfg))
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    uri = tracking.tracking_uri(cfg.mlflow.tracking_uri)
    client, _ = tracking.setup(cfg)
    marker = out / "mlflow_sweep_run_id"
    parent = marker.read_text().strip() if marker.is_file() else tracking.start_run(cfg, f"{cfg.name} sweep")
    marker.write_text(parent)
    log(f"MLflow parent run {parent} in {tracking.redact(uri)}")

    ray_runtime.connect(cfg)
    ray_runtime.prepare(cfg)
    grid = ray_runtime.tune(cfg, parent, uri, args.resume)

    keys = list(cfg.tune.space)
    rows = summarise(grid, keys)
    with open(out / "sweep_summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    log("\n" + "\n".join(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items())
                         for r in rows))
    files = [out / "sweep_summary.csv"]
    if {"loss.tau", "loss.steepness"} <= set(keys):
        ok = [r for r in rows if r["best_val_map"] == r["best_val_map"]]
        files.append(plots.heatmap([r["loss.tau"] for r in ok], [r["loss.steepness"] for r in ok],
                                   [r["best_val_map"] for r in ok], out / "sweep_map.png", "tau (SortedNCE temperature)",
                                   "sorter steepness (per bit)", f"{cfg.name}: validation mAP by trial"))
    for f in files:
        client.log_artifact(parent, str(f))

    best = grid.get_best_result(metric=cfg.tune.metric, mode="max", scope="all")
    val_map, best_file = keep_best(cfg, best.best_checkpoints)
    trial_cfg = load_config(args.config, args.overrides + [f"{k}={json.dumps(v)}" for k, v in best.config.items()])
    run_file = out / "trials" / best.metrics["trial_id"] / "mlflow_run_id"
    best_run = run_file.read_text().strip()
    client.log_metric(parent, "best_val_map", val_map)
    summary = {"parent_run_id": parent, "best_trial": best.metrics["trial_id"], "best_run_id": best_run,
               "best_config": best.config, "best_val_map": val_map, "trials": rows, "checkpoint": str(best_file),
               **register_best(cfg, client, best_run, best_file, val_map, trial_cfg)}
    client.set_terminated(parent, "FINISHED")
    (out / "sweep_summary.json").write_text(json.dumps(summary, indent=2, default=str))
    log(f"best trial {summary['best_trial']}: val mAP {val_map:.4f} with {best.config}; summary {out / 'sweep_summary.csv'}")
    return summary


if __name__ == "__main__":
    main()
