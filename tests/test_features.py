"""The backbone-feature cache: seeded views reproduce, bad images become NaN rows, the cache is reused and shared."""
import threading

import numpy as np

from nsh.data import build_corpus
from nsh.features import backbone_features
from nsh.models import Hasher

from conftest import BAD_FILES


def test_cached_views_are_reproducible_with_or_without_loader_workers_and_bad_images_are_nan_rows(tmp_path, image_folder):
    corpus = build_corpus("image_folder", str(image_folder))
    model = Hasher("efficientnet_lite0", nbits=16, hidden=32)
    idx = np.arange(len(corpus))
    lines = []
    feats = backbone_features(model, corpus, idx, tmp_path / "a", size=32, views=2, seed=3, log=lines.append)
    again = backbone_features(model, corpus, idx, tmp_path / "b", size=32, views=2, seed=3, workers=2,
                              log=lambda *_: None)
    assert feats.shape == (len(corpus), 2, 1280) and np.array_equal(feats, again, equal_nan=True)
    bad = {str(corpus.ids[i]) for i in idx if np.isnan(feats[i]).all()}
    assert bad == BAD_FILES and np.isfinite(feats[[i for i in idx if corpus.ids[i] not in BAD_FILES]]).all()
    assert sum("skipping bad item" in l for l in lines) == len(BAD_FILES)
    assert not np.array_equal(feats[0, 0], feats[0, 1])  # two different augmented views
    cached = backbone_features(model, corpus, idx, tmp_path / "a", size=32, views=2, seed=3, log=lines.append)
    assert np.array_equal(cached, feats, equal_nan=True) and len(lines) == len(BAD_FILES) + 1  # no recompute


def test_runs_sharing_a_cache_folder_compute_each_entry_once_and_read_the_same_features(tmp_path, image_folder):
    corpus = build_corpus("image_folder", str(image_folder))
    model = Hasher("efficientnet_lite0", nbits=16, hidden=32)
    idx = np.arange(len(corpus))
    lines, results = [], {}

    def run(name):
        results[name] = backbone_features(model, corpus, idx, tmp_path, size=32, views=2, seed=5,
                                          log=lambda m: lines.append((name, m)))

    threads = [threading.Thread(target=run, args=(name,)) for name in ("first", "second")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert np.array_equal(results["first"], results["second"], equal_nan=True)
    computed = [name for name, m in lines if m.startswith("backbone features:")]
    assert len(computed) == 1  # one chunk of a small folder, computed by whichever run took the lock first
