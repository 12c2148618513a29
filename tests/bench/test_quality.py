"""The quality bench: a trained method's view-caching progress shows, its epoch lines do not; the forms chosen on
validation are chosen by validation alone."""
from bench.quality import feature_progress, summarize, validation_choice


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
