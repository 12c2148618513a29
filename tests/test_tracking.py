"""MLflow on a real sqlite store: the champion alias rule, the pyfunc encoder, secrets kept out of params."""
from pathlib import Path

import numpy as np
import pytest

from nsh import tracking
from nsh.checkpoint import load_model
from nsh.codes import pack
from nsh.config import load_config

from conftest import REPO


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(REPO / "conf" / "test_tiny.yaml", [f"mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db"])
    client, _ = tracking.setup(cfg)
    return cfg, client


def test_champion_alias_moves_only_to_a_better_validation_map_not_an_equal_one(store, trained_tiny):
    cfg, client = store
    _, ckpt = trained_tiny
    # the rule reads only the versions' tags, so one logged model (logging takes seconds) is registered per trial run
    uri = tracking.log_model(tracking.start_run(cfg), ckpt / "checkpoint.pt", cfg, np.zeros((2, 32, 32, 3), np.uint8))
    # the last one ties the champion at a precision beyond 6 decimals: a rerun of the same sweep
    versions = [tracking.register(client, uri, "nsh_test", tracking.start_run(cfg), val_map, cfg)
                for val_map in (0.30, 0.25, 0.4434700851407051, 0.4434700851407051)]
    assert [(r.version, r.promoted) for r in versions] == [(1, True), (2, False), (3, True), (4, False)]
    assert "0.3000 is not below this model's 0.2500" in versions[1].why
    champion = client.get_model_version_by_alias("nsh_test", "champion")
    assert int(champion.version) == 3 and champion.tags["nbits"] == "16" and champion.tags["sorter"] == "softsort"


@pytest.mark.parametrize("task", [["model.nbits=32"], ["data.dataset=fashion_mnist"]])
def test_champion_is_never_displaced_by_a_model_of_another_task(store, trained_tiny, task):
    cfg, client = store
    _, ckpt = trained_tiny
    first = tracking.start_run(cfg)
    uri = tracking.log_model(first, ckpt / "checkpoint.pt", cfg, np.zeros((2, 32, 32, 3), np.uint8))
    tracking.register(client, uri, "nsh_task", first, 0.3, cfg)
    # the same model again, only the tags differ: what register compares is the task its config names, not the weights
    other = load_config(REPO / "conf" / "test_tiny.yaml", [f"mlflow.tracking_uri={cfg.mlflow.tracking_uri}", *task])
    reg = tracking.register(client, uri, "nsh_task", tracking.start_run(other), 0.9, other)
    assert (reg.version, reg.promoted) == (2, False)
    assert "cifar10 at 16 bits" in reg.why and "mlflow.registered_model" in reg.why
    assert int(client.get_model_version_by_alias("nsh_task", "champion").version) == 1


def test_registered_pyfunc_returns_the_checkpoints_packed_codes(store, trained_tiny):
    import mlflow
    import torch

    from nsh.data import eval_view
    from PIL import Image

    cfg, client = store
    _, ckpt = trained_tiny
    run_id = tracking.start_run(cfg)
    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    uri = tracking.log_model(run_id, ckpt / "checkpoint.pt", cfg, images)
    tracking.register(client, uri, "nsh_pyfunc", run_id, 0.1, cfg)
    codes = mlflow.pyfunc.load_model("models:/nsh_pyfunc@champion").predict(images)
    model, mcfg, _ = load_model(ckpt)
    t = eval_view(mcfg.data.image_size, model.mean, model.std)
    expected = pack(model.encode(torch.stack([t(Image.fromarray(im)) for im in images])))
    assert codes.dtype == np.uint8 and np.array_equal(codes, expected)
    assert tracking.resolve_model("models:/nsh_pyfunc@champion").name == "checkpoint.pt"
    # logged as code: loading it runs nsh/pyfunc_model.py and unpickles nothing
    local = Path(mlflow.artifacts.download_artifacts("models:/nsh_pyfunc@champion"))
    assert not list(local.rglob("*.pkl")) and "model_code_path" in (local / "MLmodel").read_text()


def test_unknown_model_uri_is_a_clear_error(store):
    with pytest.raises(FileNotFoundError, match="MLflow model 'models:/nope/7' not found"):
        tracking.resolve_model("models:/nope/7")


def test_epoch_metrics_are_logged_once_even_if_an_epoch_is_reported_twice(store):
    cfg, client = store
    run_id = tracking.start_run(cfg)
    logger = tracking.RunLogger(run_id, tracking.tracking_uri(cfg.mlflow.tracking_uri))
    for epoch in (0, 1, 1, 2):  # a restarted worker re-reports epoch 1
        logger.log_epoch(epoch, {"loss": 1.0 / (epoch + 1), "val_map": 0.1 * epoch})
    assert [m.step for m in client.get_metric_history(run_id, "val_map")] == [0, 1, 2]


def test_params_hold_the_whole_config_but_no_secrets(store):
    cfg, client = store
    cfg = cfg.model_copy(update={"mlflow": cfg.mlflow.model_copy(update={"tracking_uri": "http://u:hunter2@host"})})
    params = tracking.safe_params(cfg)
    assert params["loss.tau"] == "0.3" and "hunter2" not in str(params)
    assert params["mlflow.tracking_uri"] == "http://***@host"


def test_logged_config_artifact_and_summary_uri_hold_no_credentials(store, tmp_path):
    cfg, client = store
    cfg = cfg.model_copy(update={"ray": cfg.ray.model_copy(update={"address": "ray://admin:s3cret@head:10001"})})
    run_id = tracking.start_run(cfg)
    logged = (Path(client.download_artifacts(run_id, "config.yaml", str(tmp_path)))).read_text()
    assert "s3cret" not in logged and "ray://***@head:10001" in logged
    assert "s3cret" not in str(client.get_run(run_id).data.params)
    assert tracking.redact("https://u:p@mlflow.example:5000/x") == "https://***@mlflow.example:5000/x"
    assert tracking.redact("sqlite:////data/a@b/mlflow.db") == "sqlite:////data/a@b/mlflow.db"


def _trial_that_logs(uri: str, i: int, start_at: float) -> str:
    """What one Tune trial does to the store: create its run, log the config, 6 epochs, finish."""
    import time

    time.sleep(max(0.0, start_at - time.time()))  # all 8 hit the store at the same moment
    cfg = load_config(REPO / "conf" / "test_tiny.yaml", [f"mlflow.tracking_uri={uri}", "mlflow.experiment=concurrent",
                                                         f"train.seed={i}"])
    run_id = tracking.start_run(cfg, run_name=f"trial {i}")
    logger = tracking.RunLogger(run_id, uri)
    for epoch in range(6):
        logger.log_epoch(epoch, {"loss": 1.0 / (epoch + 1), "val_map": i + epoch / 10})
    logger.client.set_terminated(run_id)
    return run_id


def test_eight_concurrent_trials_on_one_sqlite_store_lose_nothing(tmp_path):
    import multiprocessing as mp
    import time
    from concurrent.futures import ProcessPoolExecutor

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    start_at = time.time() + 8  # after every spawned interpreter has imported mlflow
    with ProcessPoolExecutor(8, mp_context=mp.get_context("spawn")) as pool:
        run_ids = list(pool.map(_trial_that_logs, [uri] * 8, range(8), [start_at] * 8))
    client = tracking.MlflowClient(uri)
    exp = client.get_experiment_by_name("concurrent")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    assert sorted(r.info.run_id for r in runs) == sorted(run_ids) and len(set(run_ids)) == 8
    n_params = len(tracking.safe_params(load_config(REPO / "conf" / "test_tiny.yaml")))
    for r in runs:
        seed = int(r.data.params["train.seed"])
        assert len(r.data.params) == n_params and r.info.status == "FINISHED"
        for name in ("loss", "val_map"):
            steps = [m.step for m in client.get_metric_history(r.info.run_id, name)]
            assert sorted(steps) == list(range(6)), (name, steps)
        vals = sorted((m.step, m.value) for m in client.get_metric_history(r.info.run_id, "val_map"))
        assert vals == [(e, pytest.approx(seed + e / 10)) for e in range(6)]


def test_a_relative_sqlite_uri_keeps_the_store_and_its_artifacts_under_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(REPO / "conf" / "test_tiny.yaml", ["mlflow.tracking_uri=sqlite:///stores/m.db"])
    (tmp_path / "stores").mkdir()
    client, exp_id = tracking.setup(cfg)
    assert (tmp_path / "stores" / "m.db").is_file()
    assert client.get_experiment(exp_id).artifact_location == (tmp_path / "stores" / "mlartifacts").as_uri()
