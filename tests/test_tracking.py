"""MLflow on a real sqlite store: the champion alias rule, the pyfunc encoder, secrets kept out of params."""
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


def test_champion_alias_moves_only_to_a_better_validation_map(store, trained_tiny):
    cfg, client = store
    _, ckpt = trained_tiny
    versions = []
    for val_map in (0.30, 0.25, 0.40):
        run_id = tracking.start_run(cfg)
        uri = tracking.log_model(run_id, ckpt / "checkpoint.pt", cfg, np.zeros((2, 32, 32, 3), np.uint8))
        versions.append(tracking.register(client, uri, "nsh_test", run_id, val_map, cfg))
    assert versions == [(1, True), (2, False), (3, True)]
    champion = client.get_model_version_by_alias("nsh_test", "champion")
    assert int(champion.version) == 3 and champion.tags["nbits"] == "16" and champion.tags["sorter"] == "softsort"


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
