"""fit(): the loss falls on real images; checkpoints resume exactly; bad resumes are refused clearly."""
import numpy as np
import pytest
import torch

from nsh import checkpoint as ckpt_io
from nsh.config import load_config
from nsh.training import (Evaluator, LocalSession, best_checkpoint, build_loss, fit, load_data, training_data,
                          validation_k)

from conftest import REPO


def tiny(tmp_path, *overrides):
    return load_config(REPO / "conf" / "test_tiny.yaml",
                       [f"output_dir={tmp_path}/run", f"data.split_file={tmp_path}/split.json", *overrides])


@pytest.mark.parametrize("sorter", ["softsort", "torchsort"])
def test_loss_falls_on_real_cifar10_features(tmp_path, sorter):
    cfg = tiny(tmp_path, "train.epochs=6", f"loss.sorter={sorter}", "train.lr=0.003")
    history = fit(cfg, log=lambda *_: None).history
    assert history[-1]["loss"] < history[0]["loss"] - 0.1
    assert all(0 <= h["val_map"] <= 1 for h in history)


@pytest.mark.parametrize("augment_on", ["loader", "device"])
def test_online_augmentation_trains_a_fine_tuned_backbone_on_real_images(tmp_path, augment_on):
    cfg = tiny(tmp_path, "data.cache_views=0", "model.freeze_backbone=false", "train.epochs=2", "train.batch_size=16",
               "data.train_per_class=8", "data.image_size=32", f"data.augment_on={augment_on}")
    before = {k: v.clone() for k, v in ckpt_io.build_model(cfg).backbone.state_dict().items()}
    fit(cfg, log=lambda *_: None)
    _, _, saved = ckpt_io.load_model(LocalSession(cfg.output_dir).latest_checkpoint())
    changed = [k for k, v in saved["model"].items() if k.startswith("backbone.") and v.dtype.is_floating_point
               and not torch.equal(v, before[k[len("backbone."):]])]
    assert changed, "fine-tuning must update backbone weights"


def test_fine_tuning_starts_from_frozen_backbone_heads_with_a_slower_backbone(tmp_path):
    frozen = tiny(tmp_path / "a", "train.epochs=1")
    fit(frozen, log=lambda *_: None)
    heads = ckpt_io.load(LocalSession(frozen.output_dir).latest_checkpoint())["model"]
    assert not any(k.startswith("backbone.") for k in heads)  # a frozen run stores its heads only
    tuned = tiny(tmp_path / "b", "data.cache_views=0", "model.freeze_backbone=false", "train.epochs=1",
                 "train.batch_size=16", "data.train_per_class=8", "data.image_size=32", "train.lr=0.003",
                 "train.backbone_lr=0.0001", f"train.resume_from={LocalSession(frozen.output_dir).latest_checkpoint()}")
    model = ckpt_io.build_model(tuned)
    ckpt_io.restore_model(model, heads)
    assert torch.equal(model.hash_head.net[0].weight, heads["hash_head.net.0.weight"])
    lines = []
    fit(tuned, log=lines.append)
    assert any("fine-tuning from" in l for l in lines)
    saved = ckpt_io.load(LocalSession(tuned.output_dir).latest_checkpoint())
    assert [g["initial_lr"] for g in saved["optimizer"]["param_groups"]] == [0.003, 0.0001]


def test_every_loss_setting_reaches_the_loss(tmp_path):
    cfg = tiny(tmp_path, "loss.sorter=torchsort", "loss.own_positive=true", "loss.m=3", "loss.mined_weight=0.25",
               "loss.code_weight=0.7", "loss.code_tau=0.15", "loss.tau=0.45", "loss.steepness=0.2")
    loss = build_loss(cfg)
    assert (loss.sorter.name, loss.sorter.steepness, loss.m, loss.own_positive, loss.mined_weight, loss.code_weight,
            loss.code_tau, loss.tau) == ("torchsort", 0.2, 3, True, 0.25, 0.7, 0.15, 0.45)


def test_mined_warmup_leaves_mined_positives_out_of_the_first_epoch_then_lets_them_in(tmp_path):
    def losses(name, *overrides):
        cfg = tiny(tmp_path / name, "loss.sorter=torchsort", "loss.own_positive=true", "loss.m=3", *overrides)
        return [h["loss"] for h in fit(cfg, log=lambda *_: None).history]

    light, full = losses("a", "loss.mined_weight=0.25", "loss.mined_warmup=2"), losses("b", "loss.mined_warmup=2")
    assert light[0] == full[0]  # weight 0 in epoch 0, whatever the weight warmed up to
    assert light[1] != full[1]  # weight 0.125 against 0.5 in epoch 1
    assert losses("c", "loss.mined_weight=0.25")[0] != full[0]  # without a warm-up the weight acts at once


class CrashAfter(LocalSession):
    """A real LocalSession that dies (raises) right after it has stored the checkpoint of epoch `n`."""

    def __init__(self, output_dir, n):
        super().__init__(output_dir)
        self.n = n

    def report(self, metrics, checkpoint_dir):
        super().report(metrics, checkpoint_dir)
        if metrics["epoch"] == self.n:
            raise RuntimeError("worker killed")


@pytest.mark.parametrize("ema", [[], ["train.ema_decay=0.9"]], ids=["trained", "averaged"])
def test_interrupted_training_resumes_from_its_last_checkpoint_to_the_same_result(tmp_path, ema):
    whole = tiny(tmp_path / "a", "train.epochs=4", *ema)
    full = fit(whole, log=lambda *_: None)
    crashed = tiny(tmp_path / "b", "train.epochs=4", *ema)
    with pytest.raises(RuntimeError, match="worker killed"):
        fit(crashed, CrashAfter(crashed.output_dir, 1), log=lambda *_: None)
    lines = []
    resumed = fit(crashed, log=lines.append)
    assert any("resuming" in l and "at epoch 2" in l for l in lines)
    assert [h["epoch"] for h in resumed.history] == [0, 1, 2, 3]
    np.testing.assert_allclose([h["loss"] for h in resumed.history], [h["loss"] for h in full.history], rtol=1e-5)
    assert resumed.history[-1]["val_map"] == pytest.approx(full.history[-1]["val_map"], abs=1e-9)
    exported = [ckpt_io.load(LocalSession(c.output_dir).latest_checkpoint())["model"] for c in (whole, crashed)]
    for k, v in exported[0].items():
        torch.testing.assert_close(exported[1][k], v, rtol=1e-5, atol=1e-6)


def test_weight_averaging_validates_and_exports_the_average_and_keeps_the_trained_weights_to_resume(tmp_path):
    cfg = tiny(tmp_path, "train.epochs=2", "train.ema_decay=0.9")
    history = fit(cfg, log=lambda *_: None).history
    saved = ckpt_io.load(LocalSession(cfg.output_dir).latest_checkpoint())
    weight = "hash_head.net.0.weight"
    assert not torch.allclose(saved["model"][weight], saved["trained_model"][weight])
    model, _, _ = ckpt_io.load_model(LocalSession(cfg.output_dir).latest_checkpoint())
    corpus, split = load_data(cfg)
    assert Evaluator(cfg, model, corpus, split, "cpu", log=lambda *_: None)(model) == pytest.approx(
        history[-1]["val_map"], abs=1e-9)  # the weights encoding uses are the ones validation scored


def test_rerun_with_another_loss_in_the_same_output_dir_is_refused_with_the_fix(tmp_path):
    fit(tiny(tmp_path), log=lambda *_: None)
    with pytest.raises(ValueError, match=r"loss\.tau: 0\.3 -> 0\.5.*new output_dir, or train\.resume_from"):
        fit(tiny(tmp_path, "loss.tau=0.5"), log=lambda *_: None)
    assert len(fit(tiny(tmp_path, "train.epochs=3"), log=lambda *_: None).history) == 3  # more epochs: allowed


def test_rerun_on_another_draw_of_the_cached_views_is_refused_but_the_same_draw_named_explicitly_resumes(tmp_path):
    fit(tiny(tmp_path, "train.seed=3"), log=lambda *_: None)  # view seed None: drawn with train.seed
    with pytest.raises(ValueError, match=r"data\.view_seed: 3 -> 0.*new output_dir"):
        fit(tiny(tmp_path, "train.seed=3", "data.view_seed=0"), log=lambda *_: None)
    assert len(fit(tiny(tmp_path, "train.seed=3", "data.view_seed=3"), log=lambda *_: None).history) == 2


def test_a_run_on_a_rebuilt_feature_cache_that_differs_is_refused_and_an_identical_rebuild_resumes(tmp_path):
    first = fit(tiny(tmp_path), log=lambda *_: None)
    assert first.features is not None
    assert ckpt_io.load(LocalSession(tiny(tmp_path).output_dir).latest_checkpoint())["features"] == first.features
    entries = sorted((tmp_path / "cache").glob("*/features.npy"))
    assert len(entries) == 3  # the training views, the validation queries and the validation database
    saved = {e: np.load(e) for e in entries}
    for e in entries:  # rebuilt from scratch: the same backbone on the same CPU gives bit-identical features
        e.unlink()
    assert len(fit(tiny(tmp_path, "train.epochs=3"), log=lambda *_: None).history) == 3
    views = next(e for e, f in saved.items() if f.ndim == 3)
    nudged = np.load(views)
    nudged[0, 0, 0] = np.nextafter(nudged[0, 0, 0], np.float16(np.inf))  # one float16 step, as another CPU may round
    np.save(views, nudged)
    with pytest.raises(ValueError, match=rf"other features \(digest {first.features}, now [0-9a-f]{{16}}\).*"
                                         "Restore the cache.*or delete the run folder"):
        fit(tiny(tmp_path, "train.epochs=4"), log=lambda *_: None)


def test_fine_tuning_starts_from_another_runs_weights(tmp_path):
    first = tiny(tmp_path / "a")
    fit(first, log=lambda *_: None)
    ckpt = LocalSession(first.output_dir).latest_checkpoint()
    lines = []
    fit(tiny(tmp_path / "b", f"train.resume_from={ckpt}", "train.epochs=1"), log=lines.append)
    assert any("fine-tuning from" in l for l in lines)


def test_checkpoint_of_another_code_length_is_refused_with_the_fix(tmp_path):
    first = tiny(tmp_path / "a")
    fit(first, log=lambda *_: None)
    ckpt = LocalSession(first.output_dir).latest_checkpoint()
    with pytest.raises(ckpt_io.CheckpointError, match="holds 16-bit codes but the model is configured for 32 bits"):
        fit(tiny(tmp_path / "b", f"train.resume_from={ckpt}", "model.nbits=32"), log=lambda *_: None)


def test_checkpoints_load_with_weights_only(tmp_path):
    cfg = tiny(tmp_path, "train.epochs=1")
    fit(cfg, log=lambda *_: None)
    path = LocalSession(cfg.output_dir).latest_checkpoint() / ckpt_io.CHECKPOINT_FILE
    state = torch.load(path, weights_only=True)  # raises on anything but tensors and primitives
    assert state["config"]["model"]["nbits"] == 16 and not any(k.startswith("backbone.") for k in state["model"])


def test_model_selection_keeps_the_best_validation_epoch():
    history = [{"epoch": 0, "val_map": 0.2}, {"epoch": 1, "val_map": 0.4}, {"epoch": 2, "val_map": 0.4}]
    assert best_checkpoint(history) == 1


def test_validation_cutoff_reaches_as_deep_into_each_class_as_the_test_cutoff(tmp_path):
    # CIFAR-10's protocol: mAP@1000 of 54,000 database items; validation has 5,000, so 1000 * 5000 / 54000
    split = {"database": np.arange(54_000), "val_db": np.arange(5_000)}
    assert validation_k(tiny(tmp_path, "eval.k=1000"), split) == 93
    assert validation_k(tiny(tmp_path, "eval.k=1000", "train.val_k=300"), split) == 300
    small = {"database": np.arange(500), "val_db": np.arange(50)}  # test k capped at the database: 500 * 50 / 500
    assert validation_k(tiny(tmp_path, "eval.k=1000"), small) == 50
    assert validation_k(tiny(tmp_path, "train.val_k=80"), small) == 50


def test_nan_feature_rows_are_reported_and_left_out_while_training_goes_on(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.arange(600) % 3
    feats = (rng.normal(size=(600, 16)) + labels[:, None]).astype(np.float32)
    feats[::50, 3] = np.nan  # 12 bad rows, spread over every split
    feats[7, 0] = np.inf
    np.savez(tmp_path / "f.npz", features=feats, labels=labels)
    cfg = tiny(tmp_path, "data.dataset=features", f"data.root={tmp_path}/f.npz", "model.backbone=features",
               "data.cache_views=0", "data.database_per_class=null", "train.epochs=2")
    lines = []
    history = fit(cfg, log=lines.append).history
    skipped = [l for l in lines if "NaN or Inf" in l]
    assert skipped and all(l.startswith("skipping bad item:") for l in skipped)
    assert all(np.isfinite(h["loss"]) and 0 <= h["val_map"] <= 1 for h in history)


def test_precomputed_features_train_on_two_different_views_unless_dropout_is_set_to_zero(tmp_path):
    labels = np.arange(600) % 3
    feats = (np.random.default_rng(0).normal(size=(600, 64)) + 3).astype(np.float32)
    np.savez(tmp_path / "f.npz", features=feats, labels=labels)
    common = ["data.dataset=features", f"data.root={tmp_path}/f.npz", "model.backbone=features", "data.cache_views=0",
              "data.database_per_class=null"]
    zeroed = {}
    for extra in ([], ["data.feature_dropout=0"]):
        cfg = tiny(tmp_path, *common, *extra)
        corpus, split = load_data(cfg)
        dataset, is_feature = training_data(cfg, None, corpus, split, "cpu", log=lambda *_: None)
        views = torch.stack([torch.stack(dataset[i]["x"]) for i in range(len(dataset))])
        assert is_feature
        zeroed[cfg.data.feature_dropout] = (views == 0).float().mean().item()
        assert torch.equal(views[:, 0], views[:, 1]) == (cfg.data.feature_dropout == 0)
    assert abs(zeroed[None] - 0.5) < 0.02 and zeroed[0] == 0


def write_split(path, ids_by_split):
    import json

    path.write_text(json.dumps({"ids": ids_by_split}))


def online(tmp_path, root, *overrides):
    return tiny(tmp_path, "data.dataset=image_folder", f"data.root={root}", "data.cache_views=0",
                "model.freeze_backbone=false", "train.epochs=2", "train.batch_size=8", "data.image_size=32",
                "train.val_k=10", *overrides)


def test_unreadable_images_in_training_and_validation_are_reported_once_and_left_out(tmp_path, image_folder):
    from conftest import BAD_FILES
    from nsh.data import build_corpus

    ids = sorted(build_corpus("image_folder", str(image_folder)).ids.tolist())
    good = [i for i in ids if i not in BAD_FILES]
    corrupt, truncated, empty = sorted(BAD_FILES)
    # two bad files among 16 training images (two whole batches, none dropped), one in the validation database
    write_split(tmp_path / "split.json", {"train": good[:14] + [corrupt, truncated], "query": good[14:17],
                                          "database": good[17:], "val_query": good[17:22],
                                          "val_db": good[22:] + [empty]})
    lines = []
    history = fit(online(tmp_path, image_folder), log=lines.append).history
    skipped = sorted(l for l in lines if l.startswith("skipping bad item:"))
    assert len(skipped) == 3 and all(any(f in l for l in skipped) for f in BAD_FILES)  # each once, over 2 epochs
    assert len(history) == 2 and all(np.isfinite(h["loss"]) and 0 <= h["val_map"] <= 1 for h in history)


def test_a_training_set_of_unreadable_files_fails_with_the_fix(tmp_path, image_folder):
    from nsh.data import build_corpus

    for c in ("airplane", "cat", "ship"):
        for f in sorted((image_folder / c).iterdir())[:8]:
            f.write_bytes(b"not an image")

    by_class = {}
    for i in sorted(build_corpus("image_folder", str(image_folder)).ids.tolist()):
        by_class.setdefault(i.split("/")[0], []).append(i)
    write_split(tmp_path / "split.json", {
        "train": [i for ids in by_class.values() for i in ids[:8]], "query": [ids[8] for ids in by_class.values()],
        "database": [i for ids in by_class.values() for i in ids[9:]],
        "val_query": [ids[9] for ids in by_class.values()], "val_db": [i for ids in by_class.values() for i in ids[10:]]})
    with pytest.raises(ValueError, match="every item of a training batch was unreadable.*check data.root"):
        fit(online(tmp_path, image_folder), log=lambda *_: None)
