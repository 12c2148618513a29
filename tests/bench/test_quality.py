"""The quality bench: a trained method's view-caching progress shows, its epoch lines do not; the forms chosen on
validation are chosen by validation alone; --finetune adds a fine-tuned row per trained method; --add joins a
section."""
from pathlib import Path

import pytest

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


def test_finetune_adds_a_whole_model_row_per_method_from_its_best_frozen_epoch_and_add_keeps_the_section(
        tmp_path, monkeypatch):
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
    assert all(0 < r["pr_area"] <= 1 for r in rows.values() if r["bits"])  # every seed's, not only the plotted one's

    frozen_dir = tmp_path / "runs" / "quality" / "tiny_ft" / f"{quality.slug(baseline)}_b16_s0"
    state = ckpt_io.load(LocalSession(f"{frozen_dir}_ft1").best_checkpoint())
    assert state["config"]["train"]["resume_from"] == str(LocalSession(frozen_dir).best_checkpoint())
    assert any(k.startswith("backbone.") for k in state["model"])  # the backbone trained, and was saved
    assert "then fine-tuned" in (tmp_path / "docs" / "results.md").read_text()
    assert "**area under the P–R curve (whole database)**" in (tmp_path / "docs" / "results.md").read_text()

    quality.main()  # a rerun reuses both stages and the fine-tuned run's codes: the same scores
    again = {r["method"]: r for r in json.loads((tmp_path / "docs" / "results" / "tiny_ft.json").read_text())["rows"]}
    assert again[baseline + quality.FINETUNED]["map"] == tuned["map"]
    # and reports the training time the reused runs took, not the seconds it spent reusing them
    for method in (baseline, baseline + quality.FINETUNED):
        assert again[method]["train_seconds"] == rows[method]["train_seconds"] > 0

    # --add: a method at another length joins the section; the rows and P-R curves already there stay
    monkeypatch.setattr(sys, "argv", argv[:argv.index("--bits")] + ["--bits", "32", "--add"] + argv[
        argv.index("--bits") + 2: argv.index("--methods")] + ["--methods", "PCA + sign"])
    quality.main()
    added = json.loads((tmp_path / "docs" / "results" / "tiny_ft.json").read_text())
    assert {(r["method"], r["bits"]) for r in added["rows"]} == {(m, 16) for m in list(rows)[1:]} | {
        ("float features (cosine)", None), ("PCA + sign", 32)}
    assert added["bits"] == [16, 32] and added["command"].count("; then ") == 1
    assert added["plots"] == ["tiny_ft_pr_16bits.png", "tiny_ft_pr_32bits.png"]
    assert set(quality.pr_curves(added["rows"])[16]) == set(list(rows)[1:])  # the 16-bit plot still has every curve
    assert "| PCA + sign |  | " in (tmp_path / "docs" / "results.md").read_text()


def test_add_refuses_a_section_whose_runs_mean_something_else_and_names_the_difference():
    from bench.quality import merged

    old = {"tag": "t", "config": "c.yaml", "backbone": "lite0 at 160 px", "protocol": {"k": 1000}, "val_k": 78,
           "epochs": 60, "bits": [16], "seeds": [0], "command": "a", "wall_seconds": 1.0, "mlflow_run_id": "x",
           "rows": [{"method": "NSH", "bits": 16, "seed": 0, "map": 0.7}]}
    new = {**old, "epochs": 20, "command": "b", "rows": [{"method": "NSH", "bits": 32, "seed": 0, "map": 0.8}]}
    with pytest.raises(ValueError, match=r"another epochs \(60; this call: 20\).*use another --tag"):
        merged(old, new)
    both = merged(old, {**new, "epochs": 60})
    assert [(r["bits"], r["map"]) for r in both["rows"]] == [(16, 0.7), (32, 0.8)] and both["command"] == "a; then b"
    rerun = merged(old, {**old, "command": "b", "rows": [{"method": "NSH", "bits": 16, "seed": 0, "map": 0.71}]})
    assert [r["map"] for r in rerun["rows"]] == [0.71]  # a run again replaces its row, never doubles it


def test_add_refuses_rows_scored_on_another_build_of_the_feature_cache_unless_they_replace_every_old_row():
    from bench.quality import merged

    old = {"tag": "t", "config": "c.yaml", "backbone": "lite0 at 160 px", "protocol": {"k": 1000}, "val_k": 78,
           "epochs": 60, "bits": [16], "seeds": [0], "command": "a", "wall_seconds": 1.0, "mlflow_run_id": "x",
           "plain_features": "p1", "rows": [{"method": "NSH", "bits": 16, "seed": 0, "map": 0.7, "features": "v1"}]}
    rebuilt = {**old, "command": "b", "plain_features": "p2",
               "rows": [{"method": "NT-Xent", "bits": 16, "seed": 0, "map": 0.69, "features": "v2"}]}
    with pytest.raises(ValueError, match=r"plain-view features with digest p1, this call's are p2.*rebuilt; restore"):
        merged(old, rebuilt)
    with pytest.raises(ValueError, match=r"one seed trained on different features \(digests by seed: \{0: \['v1', "
                                         r"'v2'\]\}\)"):
        merged(old, {**rebuilt, "plain_features": "p1"})
    other_seed = {**rebuilt, "plain_features": "p1", "rows": [{**rebuilt["rows"][0], "seed": 1}]}
    assert len(merged(old, other_seed)["rows"]) == 2  # each seed its own draw of the views: its own digest
    rerun = {**rebuilt, "rows": [{**old["rows"][0], "map": 0.71, "features": "v2"}]}
    assert [r["map"] for r in merged(old, rerun)["rows"]] == [0.71]  # every old row replaced: one build again
    unrecorded = {k: v for k, v in old.items() if k != "plain_features"}
    unrecorded["rows"] = [{k: v for k, v in old["rows"][0].items() if k != "features"}]
    assert len(merged(unrecorded, rebuilt)["rows"]) == 2  # sections older than the digests cannot be checked

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


def test_view_seed_draws_other_views_or_one_draw_per_training_seed_and_keeps_its_runs_out_of_the_default_section(
        tmp_path, monkeypatch, capsys):
    import json
    import sys

    import bench.quality as quality
    from nsh import checkpoint as ckpt_io
    from nsh.training import LocalSession

    monkeypatch.setattr(quality, "ROOT", tmp_path)
    monkeypatch.setattr(quality, "RESULTS", tmp_path / "docs" / "results")
    baseline = "NT-Xent on codes (CIBHash core)"
    common = ["quality.py", "--config", str(REPO / "conf" / "test_tiny.yaml"), "--seeds", "0", "--bits", "16",
              "--epochs", "1", f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}", "data.train_per_class=8"]
    monkeypatch.setattr(sys, "argv", common + ["--tag", "drawn", "--methods", "LSH"])
    quality.main()
    # each training seed its own draw: seed 1 trains on the views of view seed 1, not on the default's
    monkeypatch.setattr(sys, "argv", common[:common.index("--seeds")] + ["--seeds", "1"] + common[
        common.index("--bits"):] + ["--tag", "redrawn", "--view-seed", "seed", "--methods", baseline])
    quality.main()
    run = tmp_path / "runs" / "quality" / "redrawn" / f"{quality.slug(baseline)}_b16_s1"
    assert ckpt_io.load(LocalSession(run).best_checkpoint())["config"]["data"]["view_seed"] == 1
    record = json.loads((tmp_path / "docs" / "results" / "redrawn.json").read_text())
    assert "(each training seed its own draw)" in record["backbone"]
    # the section names the features it was scored on: the run's own digest, per seed, and the plain view's
    row = next(r for r in record["rows"] if r["method"] == baseline)
    assert row["features"] == ckpt_io.load(LocalSession(run).best_checkpoint())["features"]
    assert len(record["plain_features"]) == 16
    assert (f"plain view `{record['plain_features']}`; training views with the validation rows: seed 1 "
            f"`{row['features']}`") in (tmp_path / "docs" / "results.md").read_text()
    # the default section's runs trained on view seed 0: a row of another draw may not join them
    monkeypatch.setattr(sys, "argv", common + ["--tag", "drawn", "--view-seed", "1", "--add", "--methods", "PCA"])
    with pytest.raises(SystemExit):
        quality.main()
    assert "section drawn holds runs with another backbone" in capsys.readouterr().err
    monkeypatch.setattr(sys, "argv", common + ["--tag", "drawn", "--view-seed", "each", "--methods", "PCA"])
    with pytest.raises(SystemExit):  # and a view seed that is neither a number nor 'seed' is refused before any run
        quality.main()
    assert "'each' is no view seed: give a number, or 'seed'" in capsys.readouterr().err


def test_add_waits_for_another_call_writing_the_results_so_neither_calls_rows_are_lost(tmp_path, monkeypatch):
    import json
    import threading

    from filelock import FileLock

    import bench.quality as quality

    monkeypatch.setattr(quality, "ROOT", tmp_path)
    monkeypatch.setattr(quality, "RESULTS", tmp_path / "docs" / "results")
    quality.RESULTS.mkdir(parents=True)
    section = {"tag": "t", "config": "c.yaml", "backbone": "lite0", "protocol": {"k": 1000}, "val_k": 78,
               "epochs": 60, "bits": [16], "seeds": [0], "command": "a", "wall_seconds": 1.0, "mlflow_run_id": "x",
               "machine": "m", "rows": [{"method": "NSH", "bits": 16, "seed": 0, "map": 0.7}]}
    quality.written(section, add=False)
    other = {**section, "command": "b", "rows": [{"method": "NSH", "bits": 16, "seed": 1, "map": 0.8}]}
    # another call holds the lock while it merges and writes: this call must wait, then merge what that one wrote
    with FileLock(str(tmp_path / "runs" / "quality" / "results.lock")):
        call = threading.Thread(target=quality.written, args=(other, True))
        call.start()
        call.join(timeout=2)
        assert call.is_alive(), "an --add wrote the section while another call held the results lock"
        held = json.loads((quality.RESULTS / "t.json").read_text())
        held["rows"].append({"method": "NSH", "bits": 16, "seed": 2, "map": 0.9})
        (quality.RESULTS / "t.json").write_text(json.dumps(held))
    call.join(timeout=60)
    rows = json.loads((quality.RESULTS / "t.json").read_text())["rows"]
    assert sorted(r["seed"] for r in rows) == [0, 1, 2]
    assert "| NSH | 0.8000 ± 0.1000 |" in (tmp_path / "docs" / "results.md").read_text()
