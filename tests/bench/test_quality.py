"""The quality bench's run log: a trained method's view-caching progress shows, its epoch lines do not."""
from bench.quality import feature_progress


def test_a_run_passes_on_its_feature_progress_with_its_name_and_drops_epoch_lines():
    seen = []
    log = feature_progress(seen.append, "NSH, 32 bits, seed 1")
    log("backbone features: 2048/5000 items x 6 view(s), 41 images/s")
    log("epoch 3/60: loss 4.1000, val mAP@1000 0.4100")
    assert seen == ["NSH, 32 bits, seed 1: backbone features: 2048/5000 items x 6 view(s), 41 images/s"]
