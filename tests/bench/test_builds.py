"""bench/builds.py: sections group by the build of their plain features, and repeated runs are compared within and
across builds."""
import json

import pytest

from bench.builds import fingerprint, load, report

NSH, BASE = "NSH torchsort, own view", "NT-Xent on codes"


def section(folder, tag, ceiling, runs, **extra):
    record = {"tag": tag, "config": "conf/x.yaml", "backbone": "lite0", "protocol": {"k": 10}, "val_k": 5,
              "epochs": 3, "rows": [{"method": "float features (cosine)", "bits": None, "seed": None, "map": ceiling},
                                    *({"method": m, "bits": b, "seed": s, "map": v} for m, b, s, v in runs)],
              **extra}
    (folder / f"{tag}.json").write_text(json.dumps(record))


def test_sections_group_by_the_float_features_full_precision_map_and_a_run_that_differs_within_one_build_is_named(
        tmp_path):
    section(tmp_path, "ds_a", 0.7577904648706506, [(NSH, 16, 1, 0.71), (BASE, 16, 1, 0.70), ("ITQ", 16, 0, 0.5)])
    section(tmp_path, "ds_b", 0.7577904648706506, [(NSH, 16, 1, 0.71), (BASE, 16, 1, 0.69), ("ITQ", 16, 0, 0.4)])
    section(tmp_path, "ds_c", 0.7577903953750624, [(NSH, 16, 1, 0.72)])
    section(tmp_path, "ds_d", 0.7577903953750624, [(NSH, 16, 1, 0.72)], epochs=60)  # other settings: not a repeat
    section(tmp_path, "other", 0.5, [(NSH, 16, 1, 0.71)])  # another prefix

    lines = report(load("ds_", tmp_path))

    assert lines[0] == "2 build(s) of the plain features among 4 sections:"
    assert "  float mAP 0.7577904648706506: ds_a, ds_b" in lines
    assert "  float mAP 0.7577903953750624: ds_c, ds_d" in lines
    # NSH seed 1: identical in a and b, different between a/b and c; NT-Xent differs within a and b; ITQ is fitted
    assert "  one build: 1 identical, 1 different" in lines
    assert "  two builds: 0 identical, 2 different" in lines
    assert lines[-1] == f"  {BASE!r}, 16 bits, seed 1: 0.7 in ds_a, 0.69 in ds_b"


def test_a_section_with_a_features_digest_joins_the_older_sections_of_its_build_and_one_without_a_ceiling_is_refused(
        tmp_path):
    section(tmp_path, "old", 0.75, [(NSH, 64, 1, 0.70)])
    section(tmp_path, "old_new", 0.75, [(NSH, 64, 1, 0.70)], plain_features="54ab21f8968765b0")
    (tmp_path / "bare.json").write_text(json.dumps({"tag": "bare", "rows": []}))

    lines = report(load("old", tmp_path))
    assert "  float mAP 0.75: old, old_new (digest 54ab21f8968765b0)" in lines
    assert "  one build: 1 identical, 0 different" in lines
    with pytest.raises(ValueError, match="section bare holds no float features' mAP"):
        fingerprint(load("bare", tmp_path)[0])
    with pytest.raises(SystemExit, match="no section starts with 'nothing'"):
        load("nothing", tmp_path)
