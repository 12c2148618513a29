"""The backbone-feature cache: seeded views reproduce, bad images become NaN rows, the cache is reused, shared,
built by several runs at once and resumed after a crash."""
import threading
import time

import numpy as np
import pytest
import torch

from nsh.data import build_corpus
from nsh.features import backbone_features, digest
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


def test_runs_sharing_a_cache_entry_split_its_chunks_and_each_chunk_is_computed_once(tmp_path, image_folder):
    corpus = build_corpus("image_folder", str(image_folder))
    model = Hasher("efficientnet_lite0", nbits=16, hidden=32)
    idx = np.arange(len(corpus))
    alone = backbone_features(model, corpus, idx, tmp_path / "alone", size=32, views=2, seed=5, chunk=8,
                              log=lambda *_: None)
    lines, results = [], {}

    def run(name):
        def log(m):  # a slow reporter, so that neither run can finish every chunk before the other starts
            lines.append((name, m))
            time.sleep(0.3)
        results[name] = backbone_features(model, corpus, idx, tmp_path / "shared", size=32, views=2, seed=5,
                                          chunk=8, log=log)

    threads = [threading.Thread(target=run, args=(name,)) for name in ("first", "second")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    chunks = [(name, m.split()[3]) for name, m in lines if m.startswith("backbone features:")]
    assert sorted(c for _, c in chunks) == sorted(f"{c}/6" for c in range(1, 7))  # 41 items: 6 chunks, once each
    assert {name for name, _ in chunks} == {"first", "second"}
    assert all(np.array_equal(r, alone, equal_nan=True) for r in results.values())
    (entry,) = [p for p in (tmp_path / "shared").iterdir() if p.is_dir()]
    assert [p.name for p in entry.iterdir()] == ["features.npy"]  # the parts and their locks gone


def test_an_interrupted_cache_build_resumes_from_the_chunks_on_disk(tmp_path, image_folder):
    corpus = build_corpus("image_folder", str(image_folder))
    model = Hasher("efficientnet_lite0", nbits=16, hidden=32)
    idx = np.arange(len(corpus))
    computed = []

    def crash_after_two(m):
        computed.append(m)
        if sum(c.startswith("backbone features:") for c in computed) == 2:
            raise KeyboardInterrupt("killed")

    with pytest.raises(KeyboardInterrupt):
        backbone_features(model, corpus, idx, tmp_path, size=32, views=0, chunk=8, log=crash_after_two)
    computed.clear()
    feats = backbone_features(model, corpus, idx, tmp_path, size=32, views=0, chunk=8, log=computed.append)
    assert [m.split()[3] for m in computed if m.startswith("backbone features:")] == ["3/6", "4/6", "5/6", "6/6"]
    alone = backbone_features(model, corpus, idx, tmp_path / "alone", size=32, views=0, chunk=8, log=lambda *_: None)
    assert feats.shape == (len(corpus), 1280) and np.array_equal(feats, alone, equal_nan=True)


def test_digest_changes_with_any_value_dtype_or_shape_and_not_with_the_container():
    x = np.random.default_rng(0).standard_normal((4, 3, 8)).astype(np.float16)
    d = digest(x)
    assert digest(x.copy()) == d and digest(torch.from_numpy(x)) == d
    assert digest(x[:, :2]) == digest(np.ascontiguousarray(x[:, :2]))  # views hash their values, not their memory
    y = x.copy()
    y[3, 2, 7] = np.nextafter(y[3, 2, 7], np.float16(np.inf))
    assert digest(y) != d
    assert digest(x.astype(np.float32)) != d and digest(x.reshape(12, 8)) != d
    assert digest(x, x[:1]) != digest(x)
