"""The sweep end to end on the shared Ray head: 2 tiny trials, nested MLflow runs, summary, champion rule."""
import csv

import pytest
from mlflow.tracking import MlflowClient

from conftest import REPO


def test_two_trial_sweep_logs_nested_runs_writes_a_summary_and_respects_the_champion(ray_head, tmp_path, cifar_root):
    from pipelines import tune

    args = ["--config", str(REPO / "conf" / "test_tiny.yaml"), f"output_dir={tmp_path}/sweep", "name=tiny_sweep",
            f"data.root={cifar_root}", f"mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db",
            f"ray.address={ray_head['address']}", "train.epochs=2", "tune.num_samples=1", "tune.scheduler=fifo",
            "tune.space={loss.tau: {type: grid, values: [0.2, 0.5]}, loss.steepness: {type: choice, values: [0.5]}}"]
    summary = tune.main(args)
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    parent = client.get_run(summary["parent_run_id"])
    children = client.search_runs([parent.info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{summary['parent_run_id']}'")
    # a grid over 2 taus: 2 trials, each one MLflow run with its own tau and a val_map curve
    assert len(children) == 2
    assert sorted(float(r.data.params["loss.tau"]) for r in children) == [0.2, 0.5]
    for r in children:
        assert [m.step for m in client.get_metric_history(r.info.run_id, "val_map")] == [0, 1]
    rows = list(csv.DictReader(open(tmp_path / "sweep" / "sweep_summary.csv")))
    assert len(rows) == 2 and float(rows[0]["best_val_map"]) == pytest.approx(summary["best_val_map"], abs=1e-9)
    assert (tmp_path / "sweep" / "sweep_map.png").stat().st_size > 0
    assert {a.path for a in client.list_artifacts(summary["parent_run_id"])} >= {"sweep_summary.csv", "sweep_map.png"}
    assert summary["champion"] is True  # first model in this registry

    # A second sweep cannot take the alias unless it beats the champion's validation mAP.
    again = tune.main(args[:2] + [a.replace("/sweep", "/sweep2").replace("tiny_sweep", "tiny_sweep2") for a in args[2:]])
    assert again["champion"] == (again["best_val_map"] > summary["best_val_map"])
