"""The quality bench: a trained method's view-caching progress shows, its epoch lines do not; the forms chosen on
validation are chosen by validation alone; --finetune adds a fine-tuned row per trained method."""
from pathlib import Path

from bench.quality import feature_progress, summarize, validation_choice

REPO = Path(__file__).resolve().parents[2]


def test_a_run_passes_on_its_feature_progress_with_its_name_and_drops_epoch_lines():
    seen = []
    log = feature_progress(seen.append, "NSH, 32 bits, seed 1")
    log("backbone features: 2048/5000 items x 6 view(s), 41 images/s")
    log("epoch 3/60: loss 4.1000, val mAP@1000 0.4100")
    assert seen == ["NSH, 32 bits, seed 1: backbone features: 2048/5000 items x 6 view(s), 41 images/s"]


def test_validation_choice_picks_per_length_the_form_with_the_best_mean_validation_map_not_the_best_test_map():
    rows = [
        {"method": "NSH a", "bits": 16, "seed": 0, "map": 0.60, "best_val_map": 0.40},
        {"method": "NSH a", "bits": 16, "seed": 1, "map": 0.60, "best_val_map": 0.44},
        {"method": "NSH b", "bits": 16, "seed": 0, "map": 0.50, "best_val_map": 0.43},
        {"method": "NSH b", "bits": 16, "seed": 1, "map": 0.50, "best_val_map": 0.43},
        {"method": "NSH b", "bits": 32, "seed": 0, "map": 0.70, "best_val_map": 0.50},
        {"method": "NSH a", "bits": 32, "seed": 0, "map": 0.80, "best_val_map": 0.49},
        {"method": "NT-Xent on codes", "bits": 16, "seed": 0, "map": 0.55, "best_val_map": 0.41},
        {"method": "ITQ", "bits": 16, "seed": 0, "map": 0.90},
    ]
    choice = validation_choice(summarize(rows))
    # b's mean validation mAP (0.43) beats a's (0.42) although a's test mAP is higher; ITQ, untrained, is no choice
    assert choice[16]["NSH"]["method"] == "NSH b" and choice[16]["NSH"]["map"][0] == 0.50
    assert choice[16]["NT-Xent"]["method"] == "NT-Xent on codes"
    assert choice[32] == {"NSH": next(a for a in summarize(rows) if a["method"] == "NSH b" and a["bits"] == 32)}


def test_finetune_adds_a_whole_model_row_per_trained_method_started_from_its_best_frozen_epoch(tmp_path, monkeypatch):
    import json
    import sys

    import bench.quality as quality
    from nsh import checkpoint as ckpt_io
    from nsh.training import LocalSession

    monkeypatch.setattr(quality, "ROOT", tmp_path)  # runs, caches and docs of this bench land in tmp_path
    monkeypatch.setattr(quality, "RESULTS", tmp_path / "docs" / "results")
    baseline = "NT-Xent on codes (CIBHash core)"
    argv = ["quality.py", "--config", str(REPO / "conf" / "test_tiny.yaml"), "--tag", "tiny_ft", "--seeds", "0",
            "--bits", "16", "--epochs", "1", "--finetune", "1", f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
            "data.train_per_class=8", "--methods", "LSH", baseline]
    monkeypatch.setattr(sys, "argv", argv)
    quality.main()
    record = json.loads((tmp_path / "docs" / "results" / "tiny_ft.json").read_text())
    rows = {r["method"]: r for r in record["rows"]}
    assert list(rows) == ["float features (cosine)", "LSH", baseline, baseline + quality.FINETUNED]
    tuned = rows[baseline + quality.FINETUNED]
    assert tuned["epochs"] == 1 and 0 < tuned["map"] <= 1 and "best_val_map" in tuned
    assert "LSH" + quality.FINETUNED not in rows  # a fitted method has no backbone to tune

    frozen_dir = tmp_path / "runs" / "quality" / "tiny_ft" / f"{quality.slug(baseline)}_b16_s0"
    state = ckpt_io.load(LocalSession(f"{frozen_dir}_ft1").best_checkpoint())
    assert state["config"]["train"]["resume_from"] == str(LocalSession(frozen_dir).best_checkpoint())
    assert any(k.startswith("backbone.") for k in state["model"])  # the backbone trained, and was saved
    assert "then fine-tuned" in (tmp_path / "docs" / "results.md").read_text()

    quality.main()  # a rerun reuses both stages and the fine-tuned run's codes: the same scores
    again = {r["method"]: r for r in json.loads((tmp_path / "docs" / "results" / "tiny_ft.json").read_text())["rows"]}
    assert again[baseline + quality.FINETUNED]["map"] == tuned["map"]
    # and reports the training time the reused runs took, not the seconds it spent reusing them
    for method in (baseline, baseline + quality.FINETUNED):
        assert again[method]["train_seconds"] == rows[method]["train_seconds"] > 0


def test_set_overrides_win_over_a_methods_own_setting_where_plain_overrides_yield_and_the_row_name_says_so():
    from bench.quality import METHODS, labelled, run_overrides
    from nsh.config import load_config

    name = "NT-Xent on codes, tau 0.3, feature dropout 0.45, lr 4e-3, batch 128"
    method = METHODS[name]
    config = str(REPO / "conf" / "fashion_mnist.yaml")
    plain = load_config(config, run_overrides(["train.batch_size=64"], method, [], 16, 0))
    forced = load_config(config, run_overrides([], method, ["train.batch_size=64"], 16, 0))
    assert plain.train.batch_size == 128 and forced.train.batch_size == 64
    assert forced.loss.tau == 0.3 and forced.model.nbits == 16  # --set changes only what it names
    # and the row says so, since the method's name promises batch 128
    assert labelled(name, []) == name and labelled(name, ["train.batch_size=64"]).endswith("[set train.batch_size=64]")
