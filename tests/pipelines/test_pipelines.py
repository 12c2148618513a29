"""The pipelines end to end on a real Ray head: train -> register -> encode (Ray Data) -> evaluate, and a
real `ray job submit` of the training job."""
import json
import subprocess

import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from nsh import checkpoint as ckpt_io

from conftest import BAD_FILES, REPO


@pytest.fixture(scope="module")
def pipeline_run(ray_head, tmp_path_factory, cifar_root):
    from pipelines import encode, evaluate, train

    root = tmp_path_factory.mktemp("pipeline")
    overrides = [f"output_dir={root}/run", f"data.split_file={root}/split.json", f"data.root={cifar_root}",
                 f"mlflow.tracking_uri=sqlite:///{root}/mlflow.db", f"ray.address={ray_head['address']}"]
    args = ["--config", str(REPO / "conf" / "test_tiny.yaml"), *overrides]
    summary = train.main(args)
    encoded = encode.main(args)
    result = evaluate.main(args)
    return root, overrides, summary, encoded, result


def test_training_job_logs_one_mlflow_run_with_epoch_metrics_and_registers_a_champion(pipeline_run):
    root, _, summary, _, _ = pipeline_run
    client = MlflowClient(f"sqlite:///{root}/mlflow.db")
    history = client.get_metric_history(summary["run_id"], "val_map")
    assert [m.step for m in history] == [0, 1]
    run = client.get_run(summary["run_id"])
    assert run.data.params["loss.sorter"] == "softsort" and run.data.params["model.nbits"] == "16"
    # the features it trained on, as its checkpoints record them: two runs with one digest saw the same inputs
    saved = ckpt_io.load(summary["checkpoint"])["features"]
    assert run.data.tags["features_digest"] == saved and len(saved) == 16
    champ = client.get_model_version_by_alias("nsh", "champion")
    assert summary["champion"] and summary["model_uri"] == f"models:/nsh/{champ.version}"
    assert float(champ.tags["val_map"]) == pytest.approx(summary["best_val_map"], abs=1e-6)
    assert summary["best_val_map"] == max(m.value for m in history)


def test_encode_writes_parquet_with_the_storage_convention(pipeline_run):
    root, _, summary, encoded, _ = pipeline_run
    assert encoded["query"] == {"rows": 50, "errors": 0, "path": f"{root}/run/codes/query"}
    assert encoded["database"]["rows"] == 400
    part = sorted((root / "run" / "codes" / "database").glob("part-*.parquet"))[0]
    schema = pq.read_schema(part)
    assert str(schema.field("code").type) == "fixed_size_binary[2]"
    assert schema.metadata[b"nsh.nbits"] == b"16" and schema.metadata[b"nsh.bit_order"] == b"msb"
    assert schema.metadata[b"nsh.model_uri"].decode() == summary["model_uri"]
    ids = pq.read_table(root / "run" / "codes" / "database").column("id").to_pylist()  # the folder reads as one table
    assert len(ids) == len(set(ids)) == 400


def test_evaluate_reports_metrics_and_pictures_and_logs_them_to_the_models_run(pipeline_run):
    root, _, summary, _, result = pipeline_run
    assert 0 < result["map_at_100"] <= 1 and 0 < result["map_at_100_tie_aware"] <= 1
    for name in ("metrics.json", "pr_curve.png", "retrieval_grid.png"):
        assert (root / "run" / "eval" / name).stat().st_size > 0
    client = MlflowClient(f"sqlite:///{root}/mlflow.db")
    run = client.get_run(summary["run_id"])
    assert run.data.metrics["test_map_at_100"] == pytest.approx(result["map_at_100"])
    assert 0 < result["pr_area"] <= 1 and run.data.metrics["test_pr_area"] == pytest.approx(result["pr_area"])
    assert {a.path for a in client.list_artifacts(summary["run_id"], "eval")} >= {"eval/pr_curve.png", "eval/retrieval_grid.png"}


def test_encode_from_registry_alias_over_an_image_folder_reports_bad_files(pipeline_run, image_folder):
    from pipelines import encode

    root, overrides, *_ = pipeline_run
    done = encode.main(["--config", str(REPO / "conf" / "test_tiny.yaml"), *overrides,
                        "encode.model=models:/nsh@champion", f"encode.input={image_folder}"])
    assert done["images"]["rows"] == 36 + 2 and done["images"]["errors"] == 3
    errors = json.loads((root / "run" / "codes" / "images" / "_errors.json").read_text())
    assert {e["id"] for e in errors} == BAD_FILES


def test_training_job_submitted_with_ray_job_submit_succeeds_and_appears_in_mlflow(ray_head, tmp_path, cifar_root):
    cmd = [ray_head["ray"], "job", "submit", "--address", ray_head["dashboard"], "--working-dir", str(REPO), "--",
           "python", "pipelines/train.py", "--config", "conf/test_tiny.yaml", f"output_dir={tmp_path}/run",
           f"data.root={cifar_root}", f"data.split_file={tmp_path}/split.json", "train.epochs=1",
           f"mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db", "mlflow.register_best=false"]
    proc = subprocess.run(cmd, env=ray_head["env"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "succeeded" in proc.stdout
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    run = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db").get_run(summary["run_id"])
    assert run.info.status in ("RUNNING", "FINISHED") and "best_val_map" in run.data.metrics


def test_two_worker_ddp_with_global_batch_torchsort_trains(ray_head, tmp_path, cifar_root):
    """Two gloo workers, each on its shard; every anchor sorted against both workers' candidates."""
    from pipelines import train

    summary = train.main(["--config", str(REPO / "conf" / "test_tiny.yaml"), f"output_dir={tmp_path}/run",
                          f"data.root={cifar_root}", f"data.split_file={tmp_path}/split.json", "train.workers=2",
                          "loss.sorter=torchsort", "loss.global_batch=true", "train.epochs=2",
                          f"mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db", "mlflow.register_best=false",
                          f"ray.address={ray_head['address']}"])
    losses = [h["loss"] for h in summary["history"]]
    assert len(losses) == 2 and all(l == l and l > 0 for l in losses)
    assert 0 < summary["best_val_map"] <= 1


def test_rerunning_a_finished_run_with_more_epochs_continues_it_in_the_same_mlflow_run(pipeline_run):
    from pipelines import train

    root, overrides, first, *_ = pipeline_run
    again = train.main(["--config", str(REPO / "conf" / "test_tiny.yaml"), *overrides, "train.epochs=3",
                        "mlflow.register_best=false"])
    assert again["run_id"] == first["run_id"]
    assert [h["epoch"] for h in again["history"]] == [0, 1, 2]
    assert again["history"][:2] == first["history"]  # epochs 0-1 were restored, not retrained
    client = MlflowClient(f"sqlite:///{root}/mlflow.db")
    assert [m.step for m in client.get_metric_history(first["run_id"], "val_map")] == [0, 1, 2]
