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


def test_killed_sweep_driver_resumes_without_rerunning_finished_trials(ray_head, tmp_path, cifar_root):
    import os
    import signal
    import sqlite3
    import subprocess
    import sys
    import time

    db = tmp_path / "mlflow.db"
    cmd = [sys.executable, str(REPO / "pipelines" / "tune.py"), "--config", str(REPO / "conf" / "test_tiny.yaml"),
           f"output_dir={tmp_path}/sweep", "name=resumed_sweep", f"data.root={cifar_root}",
           f"mlflow.tracking_uri=sqlite:///{db}", f"ray.address={ray_head['address']}", "train.epochs=2",
           "tune.num_samples=1", "tune.scheduler=fifo", "tune.max_concurrent=1", "mlflow.register_best=false",
           "tune.space={loss.tau: {type: grid, values: [0.2, 0.3, 0.5]}}"]

    def finished_trials():
        if not db.exists():
            return []
        with sqlite3.connect(db) as con:
            return con.execute("select run_uuid, end_time from runs where status='FINISHED' and name like 'trial %'").fetchall()

    driver = subprocess.Popen(cmd, env=ray_head["env"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not finished_trials() and time.time() < deadline and driver.poll() is None:
        time.sleep(1)
    assert finished_trials(), "no trial finished before the deadline"
    os.kill(driver.pid, signal.SIGKILL)  # the driver dies mid-sweep
    driver.wait()
    done_before = dict(finished_trials())
    assert len(done_before) < 3

    resumed = subprocess.run(cmd + ["--resume"], env=ray_head["env"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert "resuming sweep" in resumed.stdout
    after = dict(finished_trials())
    assert len(after) == 3  # every trial once: one MLflow run each, none duplicated
    assert all(after[run] == end for run, end in done_before.items())  # finished trials were not run again
    for run in after:  # and no epoch was trained or logged twice
        with sqlite3.connect(db) as con:
            steps = [s for (s,) in con.execute("select step from metrics where run_uuid=? and key='val_map'", (run,))]
        assert sorted(steps) == [0, 1]
    rows = list(csv.DictReader(open(tmp_path / "sweep" / "sweep_summary.csv")))
    assert sorted(float(r["loss.tau"]) for r in rows) == [0.2, 0.3, 0.5] and all(r["epochs"] == "2" for r in rows)
