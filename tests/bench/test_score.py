"""bench/score.py: a checkpoint's test scores, through its Parquet codes, agree with an independent in-memory path,
and a second call reuses the codes."""
import pytest

from bench.score import encode_splits, scores_on_test
from nsh.checkpoint import load_model
from nsh.metrics import map_at_k
from nsh.training import Evaluator, load_data


def test_test_scores_from_parquet_codes_match_the_in_memory_evaluator_on_the_same_splits(tmp_path, trained_tiny):
    cfg, ckpt = trained_tiny
    cfg = cfg.model_copy(deep=True)
    cfg.output_dir = str(tmp_path / "run")  # the codes land here, not in the shared fixture's folder
    first = []
    _, rates = encode_splits(cfg, ckpt, log=first.append)
    assert any(line.startswith("encoded shard") for line in first)
    scores = scores_on_test(cfg)
    k = cfg.eval.k

    model, _, _ = load_model(ckpt)
    corpus, split = load_data(cfg)
    as_validation = dict(split, val_query=split["query"], val_db=split["database"])
    evaluator = Evaluator(cfg, model, corpus, as_validation, "cpu", log=lambda *_: None)
    (q, q_labels), (db, db_labels) = evaluator.codes(model, "val_query"), evaluator.codes(model, "val_db")
    assert len(q_labels) == len(split["query"]) and len(db_labels) == len(split["database"])
    assert scores[f"test_map_at_{k}"] == pytest.approx(map_at_k(q, db, q_labels, db_labels, k), abs=0.01)
    assert 0 < scores[f"test_map_at_{k}"] < 1 and rates["database"] > 0

    encode_splits(cfg, ckpt, log=(lines := []).append)  # every shard is done: nothing is encoded again
    assert scores_on_test(cfg) == scores
    assert not any(line.startswith("encoded shard") for line in lines)
