"""Sharded encoding: Parquet output, exactly-once resume, bad items reported while the rest encodes."""

import numpy as np
import pytest
import torch

from nsh.checkpoint import load_model
from nsh.codes import pack
from nsh.data import eval_view
from nsh.codes_io import read_codes
from nsh.encoding import CorpusSpec, ShardEncoder, encode_local, plan
from nsh.training import load_data

from conftest import BAD_FILES


def test_codes_match_the_model_and_carry_metadata(tmp_path, trained_tiny):
    cfg, ckpt = trained_tiny
    corpus, split = load_data(cfg)
    enc = ShardEncoder(ckpt, CorpusSpec("cifar10"), "ckpt://tiny", batch_size=64)
    encode_local(enc, split["query"], tmp_path / "q", shard_size=16, log=lambda *_: None)
    table = read_codes(tmp_path / "q")
    assert table.ids.tolist() == corpus.ids[split["query"]].tolist()
    assert table.labels.tolist() == corpus.labels[split["query"]].tolist()
    direct, _, _ = enc.encode_indices(split["query"])
    assert np.array_equal(table.codes, direct) and table.nbits == 16 and table.model_uri == "ckpt://tiny"
    assert len(list((tmp_path / "q").glob("part-*.parquet"))) == -(-len(split["query"]) // 16)


def test_image_codes_equal_the_model_applied_to_eval_view_tensors(trained_tiny):
    # the encoder normalises uint8 batches itself (on the device): its codes must be the reference ones
    cfg, ckpt = trained_tiny
    corpus, split = load_data(cfg)
    enc = ShardEncoder(ckpt, CorpusSpec("cifar10"), "m", batch_size=32)
    codes, good, _ = enc.encode_indices(split["query"])
    model, mcfg, _ = load_model(ckpt)
    view = eval_view(mcfg.data.image_size, model.mean, model.std)
    with torch.no_grad():
        expected = pack(model.encode(torch.stack([view(corpus.load(int(i))) for i in good])))
    assert len(good) == len(split["query"]) and np.array_equal(codes, expected)


def test_rerun_after_a_crash_encodes_only_missing_shards_exactly_once(tmp_path, trained_tiny):
    cfg, ckpt = trained_tiny
    _, split = load_data(cfg)
    idx = split["database"][:100]
    enc = ShardEncoder(ckpt, CorpusSpec("cifar10"), "m", batch_size=32)
    encode_local(enc, idx, tmp_path / "ref", shard_size=24, log=lambda *_: None)
    out = tmp_path / "crashed"
    encode_local(enc, idx, out, shard_size=24, log=lambda *_: None)
    for victim in ("part-00001.parquet", "part-00003.parquet"):  # shards that a crash never finished
        (out / victim).unlink()
    assert [s.number for s in plan(out, enc.corpus.ids[idx], 24, "m")] == [1, 3]
    encode_local(enc, idx, out, shard_size=24, log=lambda *_: None)
    done, ref = read_codes(out), read_codes(tmp_path / "ref")
    assert sorted(done.ids) == sorted(set(done.ids)) == sorted(enc.corpus.ids[idx])
    assert np.array_equal(done.codes, ref.codes)


def test_folder_of_another_job_is_refused(tmp_path, trained_tiny):
    cfg, ckpt = trained_tiny
    enc = ShardEncoder(ckpt, CorpusSpec("cifar10"), "m1")
    encode_local(enc, np.arange(10), tmp_path, shard_size=8, log=lambda *_: None)
    with pytest.raises(ValueError, match="holds codes of another job \\(different model_uri\\)"):
        plan(tmp_path, enc.corpus.ids[np.arange(10)], 8, "m2")


def test_bad_images_are_reported_by_name_and_the_rest_encodes(tmp_path, trained_tiny, image_folder):
    _, ckpt = trained_tiny
    enc = ShardEncoder(ckpt, CorpusSpec("image_folder", str(image_folder)), "m", batch_size=8)
    result = encode_local(enc, np.arange(len(enc.corpus)), tmp_path / "out", shard_size=10, log=lambda *_: None)
    assert {e["id"] for e in result["errors"]} == BAD_FILES
    assert result["rows"] == len(enc.corpus) - len(BAD_FILES)
    assert {"cat/grey.png", "ship/rgba.png"} <= set(read_codes(tmp_path / "out").ids)
    assert any("0 bytes" in e["error"] for e in result["errors"])


def test_feature_width_that_does_not_match_the_model_is_refused(tmp_path, trained_tiny):
    from nsh.config import load_config
    from nsh.training import fit, LocalSession

    feats = np.random.default_rng(0).normal(size=(300, 12)).astype(np.float32)
    np.savez(tmp_path / "train.npz", features=feats, labels=np.arange(300) % 3)
    from conftest import REPO
    cfg = load_config(REPO / "conf" / "test_tiny.yaml", [
        "data.dataset=features", f"data.root={tmp_path}/train.npz", "model.backbone=features", "data.cache_views=0",
        f"output_dir={tmp_path}/run", f"data.split_file={tmp_path}/split.json", "train.epochs=1",
        "data.database_per_class=null"])
    fit(cfg, log=lambda *_: None)
    ckpt = LocalSession(cfg.output_dir).latest_checkpoint()
    np.save(tmp_path / "wide.npy", np.zeros((4, 20), np.float32))
    with pytest.raises(ValueError, match="features in .*wide.npy are 20-d but the model expects 12-d"):
        ShardEncoder(ckpt, CorpusSpec("features", str(tmp_path / "wide.npy")), "m")
    nan = feats[:6].copy()
    nan[2, 0] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    enc = ShardEncoder(ckpt, CorpusSpec("features", str(tmp_path / "nan.npy")), "m")
    result = encode_local(enc, np.arange(6), tmp_path / "nan_out", shard_size=4, log=lambda *_: None)
    assert result["rows"] == 5 and [e["id"] for e in result["errors"]] == ["2"]
