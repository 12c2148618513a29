"""The GPU runs' table in docs/results.md: a setting's seeds are found by file name, a seed run twice counts once,
and a first stage without test scores is listed but left out of the means."""
import json

import pytest

from bench.gpu_results import by_setting, gpu_runs, section


def _run(folder, name, overrides, val, test=None):
    record = {"device": "NVIDIA H200", "config": "conf/cifar10_full.yaml", "overrides": overrides, "epochs_run": 10,
              "best_epoch": 4, "best_val_map": val}
    if test is not None:
        record |= {"test_map_at_1000": test, "test_map_at_1000_tie_aware": test + 0.01, "test_precision_h2": 0.5}
    (folder / f"{name}.json").write_text(json.dumps(record))


@pytest.fixture
def folder(tmp_path):
    tuned = ["model.nbits=32", "train.resume_from=/tmp/heads/checkpoints/epoch_040"]
    _run(tmp_path, "nsh_32bit_tuned", [*tuned, "train.seed=0"], 0.60, test=0.50)
    _run(tmp_path, "nsh_32bit_seed1_tuned", [*tuned, "train.seed=1"], 0.61, test=0.60)
    _run(tmp_path, "nsh_32bit_session20_tuned", [*tuned, "train.seed=0"], 0.62, test=0.70)  # seed 0 again
    _run(tmp_path, "nsh_32bit_seed2_heads", ["model.nbits=32", "train.seed=2", "model.freeze_backbone=false",
                                             "model.freeze_backbone=true"], 0.55)  # stopped after training
    (tmp_path / "augment_rate.json").write_text(json.dumps({"views_per_s": 1900.0}))  # no training run
    return tmp_path


def test_runs_are_read_with_their_stage_seed_and_bits_and_timings_are_skipped(folder):
    runs = {r["name"]: r for r in gpu_runs(folder)}
    assert sorted(runs) == ["nsh_32bit_seed1_tuned", "nsh_32bit_seed2_heads", "nsh_32bit_session20_tuned",
                            "nsh_32bit_tuned"]
    heads = runs["nsh_32bit_seed2_heads"]
    # the last of a repeated override is the one the run used
    assert (heads["stage"], heads["bits"], heads["seed"], heads["best_epoch"]) == ("heads, frozen backbone", 32, 2, 5)
    assert runs["nsh_32bit_tuned"]["stage"] == "fine-tuned from the heads"
    assert {r["setting"] for r in runs.values()} == {"nsh_32bit_tuned", "nsh_32bit_heads"}


def test_a_seed_run_twice_is_averaged_before_the_seeds_and_runs_without_test_scores_are_left_out(folder):
    agg = by_setting(gpu_runs(folder))
    assert list(agg) == ["nsh_32bit_tuned"]  # the heads run has no test scores
    assert agg["nsh_32bit_tuned"]["seeds"] == [0, 1]
    mean, std = agg["nsh_32bit_tuned"]["test_map_at_1000"]
    # seed 0: (0.50 + 0.70) / 2 = 0.60, seed 1: 0.60; counting seed 0 twice would give 0.60 ± 0.10
    assert mean == pytest.approx(0.60) and std == pytest.approx(0.0)


def test_the_section_lists_every_run_and_states_no_spread_for_a_single_seed(folder, tmp_path_factory):
    text = "\n".join(section(folder))
    assert text.count("| nsh_32bit_") == 5  # one setting row, four run rows
    assert "| nsh_32bit_seed2_heads | NVIDIA H200 | heads, frozen backbone | 32 | 2 | 0.5500 (5 of 10) |  |  |  |" in text
    lone = tmp_path_factory.mktemp("lone")
    _run(lone, "base_64bit_tuned", ["train.resume_from=x"], 0.5, test=0.4)
    assert "| base_64bit_tuned | 0 | 0.4000 | 0.4100 | 0.5000 |" in "\n".join(section(lone))
    assert section(tmp_path_factory.mktemp("empty")) == []
