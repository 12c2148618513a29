"""bench/paired.py: seeds pooled over sections are paired by seed, and the bar is the mean lead above both spreads."""
import json

import pytest

from bench.paired import compare, main, ranked, scores
from bench.quality import FINETUNED

NSH, BASE = "NSH torchsort, own view", "NT-Xent on codes"


def section(folder, tag, rows):
    folder.mkdir(exist_ok=True)
    (folder / f"{tag}.json").write_text(json.dumps({"rows": rows}))


def row(method, bits, seed, value):
    return {"method": method, "bits": bits, "seed": seed, "map": value}


def test_seeds_from_two_sections_pair_up_and_a_lead_that_one_seed_reverses_does_not_clear_the_spread(tmp_path):
    section(tmp_path, "first", [row(NSH + FINETUNED, 16, 0, 0.72), row(NSH, 16, 0, 0.10),  # the frozen row stays out
                                row(BASE + FINETUNED, 16, 0, 0.70), row(NSH + FINETUNED, 16, 1, 0.71),
                                row(BASE + FINETUNED, 16, 1, 0.70)])
    section(tmp_path, "more_seeds", [row(NSH + FINETUNED, 16, 2, 0.69), row(BASE + FINETUNED, 16, 2, 0.70),
                                     row(NSH + FINETUNED, 16, 3, 0.74)])  # no baseline for seed 3: not paired
    a = scores(["first", "more_seeds"], NSH, finetuned=True, folder=tmp_path)
    b = scores(["first", "more_seeds"], BASE, finetuned=True, folder=tmp_path)
    c = compare(a, b, 16)
    assert c["seeds"] == [0, 1, 2]
    assert c["lead"] == pytest.approx([0.02, 0.01, -0.01])
    assert c["mean_lead"] == pytest.approx(0.02 / 3)
    assert c["std_a"] == pytest.approx(0.015275, abs=1e-6) and c["std_b"] == pytest.approx(0.0)
    assert not c["clears_spread"]  # +0.0067 against NSH's own spread of 0.0153

    section(tmp_path, "steady", [row(NSH, 32, s, 0.75 + 0.001 * s) for s in range(3)]
            + [row(BASE, 32, s, 0.74 - 0.001 * s) for s in range(3)])
    c = compare(scores(["steady"], NSH, False, tmp_path), scores(["steady"], BASE, False, tmp_path), 32)
    assert c["mean_lead"] == pytest.approx(0.012) and c["clears_spread"]  # +0.012 against spreads of 0.001


def test_a_name_start_that_matches_two_methods_in_one_section_is_refused_and_the_matches_are_named(tmp_path):
    section(tmp_path, "two_forms", [row(NSH + " + 2 mined", 16, 0, 0.7), row(NSH + " + 3 mined", 16, 0, 0.7)])
    with pytest.raises(SystemExit, match=r"matches 2 methods in two_forms.*\+ 2 mined.*\+ 3 mined"):
        scores(["two_forms"], NSH, False, tmp_path)


def test_a_seed_that_scored_differently_in_two_sections_is_refused_rather_than_one_score_kept(tmp_path):
    section(tmp_path, "one", [row(NSH, 16, 0, 0.70)])
    section(tmp_path, "other", [row(NSH, 16, 0, 0.71)])
    with pytest.raises(SystemExit, match="seed 0 scored 0.7000 and 0.7100"):
        scores(["one", "other"], NSH, False, tmp_path)
    with pytest.raises(SystemExit, match="no section missing"):
        scores(["missing"], NSH, False, tmp_path)


def val_row(method, seed, val, test, bits=16):
    return row(method, bits, seed, test) | {"best_val_map": val}


def test_pick_ranks_a_family_by_mean_validation_over_its_best_covered_seeds_and_keeps_test_scores_out_of_it(tmp_path):
    section(tmp_path, "first", [val_row(NSH + " + 2 mined", 0, 0.60, 0.50), val_row(NSH + " + 3 mined", 0, 0.58, 0.70),
                                val_row(NSH + " + 4 mined", 0, 0.70, 0.40),  # best validation, but one seed only
                                val_row(NSH + " + 2 mined", 0, 0.90, 0.90, bits=32), row("LSH", 16, 0, 0.2)])
    section(tmp_path, "more_seeds", [val_row(NSH + " + 2 mined", 1, 0.62, 0.52),
                                     val_row(NSH + " + 3 mined", 1, 0.59, 0.71)])
    got = ranked(["first", "more_seeds"], "NSH", False, 16, tmp_path)
    # the test scores would rank them the other way
    assert [c["method"] for c in got] == [NSH + " + 2 mined", NSH + " + 3 mined"]
    assert got[0]["val"] == pytest.approx(0.61)
    assert got[0]["scores"] == {(16, 0): 0.50, (16, 1): 0.52}  # the 32-bit row stays out
    on_seed_0 = ranked(["first", "more_seeds"], "NSH", False, 16, tmp_path, seeds=[0])
    assert [c["method"] for c in on_seed_0] == [NSH + " + 4 mined", NSH + " + 2 mined", NSH + " + 3 mined"]
    with pytest.raises(SystemExit, match="no method starting with 'NT-Xent' has validation scores at 16 bits"):
        ranked(["first"], "NT-Xent", False, 16, tmp_path)


def test_metric_pairs_another_test_score_on_the_seeds_that_have_it_while_validation_mAP_still_picks(tmp_path):
    section(tmp_path, "old_and_new", [
        val_row(NSH + " + 2 mined", 0, 0.61, 0.50), val_row(NSH + " + 2 mined", 1, 0.61, 0.51) | {"pr_area": 0.40},
        val_row(NSH + " + 2 mined", 2, 0.61, 0.52) | {"pr_area": 0.42},
        # the better P-R area, but validation ranks it second
        val_row(NSH + " + 3 mined", 1, 0.60, 0.50) | {"pr_area": 0.60}, val_row(NSH + " + 3 mined", 2, 0.60, 0.50),
        val_row(NSH + " + 3 mined", 0, 0.60, 0.50) | {"pr_area": 0.60},
        val_row(BASE, 0, 0.55, 0.50), val_row(BASE, 1, 0.55, 0.50) | {"pr_area": 0.30},
        val_row(BASE, 2, 0.55, 0.50) | {"pr_area": 0.31}])
    got = ranked(["old_and_new"], "NSH", False, 16, tmp_path, metric="pr_area")
    assert got[0]["method"] == NSH + " + 2 mined" and got[0]["scores"] == {(16, 1): 0.40, (16, 2): 0.42}
    assert got[0]["val_seeds"] == 3  # validation still counts every seed
    c = compare(got[0]["scores"], scores(["old_and_new"], BASE, False, tmp_path, metric="pr_area"), 16)
    assert c["seeds"] == [1, 2] and c["lead"] == pytest.approx([0.10, 0.11])  # seed 0 stored no area: left out
    with pytest.raises(SystemExit, match="1 seed.*counts only the seeds that have it"):
        compare({(16, 1): 0.4}, {(16, 1): 0.3}, 16)


def test_a_pair_of_runs_trained_on_two_builds_of_the_feature_cache_is_refused_with_the_seed_and_both_digests(
        tmp_path, monkeypatch):
    import bench.paired as paired

    monkeypatch.setattr(paired, "RESULTS", tmp_path)

    def run(method, seed, value, build):
        return {**row(method, 32, seed, value), "best_val_map": value + 0.02, "features": f"{build}_s{seed}"}

    section(tmp_path, "first", [run(NSH, 1, 0.75, "build1"), run(NSH, 2, 0.76, "build1"), run(BASE, 1, 0.74, "build1")])
    section(tmp_path, "same", [run(BASE, 2, 0.74, "build1")])  # seed 2 of the baseline later, on the same build
    section(tmp_path, "rebuilt", [run(BASE, 2, 0.74, "build2")])  # or on a rebuilt cache
    args = ["--a", NSH, "--b", BASE, "--bits", "32", "--sections", "first"]
    for pick in ([], ["--pick"]):
        assert main(args + ["same"] + pick)[0]["seeds"] == [1, 2]
        with pytest.raises(SystemExit, match=r"different features at seed\(s\) 2 \(build1_s2 against build2_s2\)"):
            main(args + ["rebuilt"] + pick)
    with pytest.raises(SystemExit, match=r"seed 2 was trained on two builds .*build1_s2, then build2_s2 in rebuilt"):
        main(args + ["same", "rebuilt"])
