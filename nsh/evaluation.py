"""Evaluation of encoded query and database codes: metrics, a printed table, and pictures."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nsh import plots
from nsh.codes_io import CodeTable, read_codes
from nsh.metrics import evaluate, relevance
from nsh.search import HammingIndex

METRIC_PREFIXES = ("map_at_", "precision_h", "pr_area")


def evaluate_tables(query: CodeTable, database: CodeTable, k: int):
    if query.labels is None or database.labels is None:
        raise ValueError("evaluation needs labels in both code tables; encode labelled splits (query, database)")
    if query.nbits != database.nbits:
        raise ValueError(f"query codes have {query.nbits} bits, database codes {database.nbits}; "
                         "encode both with the same model")
    return evaluate(query.codes, database.codes, query.labels, database.labels, min(k, len(database)))


def report(query_dir: str | Path, db_dir: str | Path, out_dir: str | Path, k: int = 1000, corpus=None,
           grid_queries: int = 8, grid_hits: int = 10, title: str = "") -> dict:
    """Metrics + metrics.json + pr_curve.png (+ retrieval_grid.png when `corpus` can load the images)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    q, db = read_codes(query_dir), read_codes(db_dir)
    m = evaluate_tables(q, db, k)
    result = {**m.as_dict(), "nbits": q.nbits, "queries": len(q), "database": len(db), "k": m.k,
              "model_uri": db.model_uri}
    (out / "metrics.json").write_text(json.dumps(result, indent=2))
    np.savez(out / "pr_curve.npz", precision=m.pr_precision, recall=m.pr_recall)
    files = [out / "metrics.json", plots.pr_curve({f"{q.nbits} bits": (m.pr_precision, m.pr_recall)},
                                                  out / "pr_curve.png", title or f"P-R by Hamming radius, {q.nbits} bits")]
    if corpus is not None and corpus.kind == "image" and grid_queries:
        files.append(_grid(q, db, corpus, out / "retrieval_grid.png", grid_queries, grid_hits))
    result["files"] = [str(f) for f in files]
    return result


def _grid(q: CodeTable, db: CodeTable, corpus, path: Path, n: int, k: int) -> Path:
    position = {item: i for i, item in enumerate(corpus.ids)}
    rng = np.random.default_rng(0)
    pick = np.sort(rng.choice(len(q), min(n, len(q)), replace=False))
    _, hits = HammingIndex.build(db.codes, q.nbits).search(q.codes[pick], min(k, len(db)))
    correct = relevance(q.labels[pick], db.labels)[np.arange(len(pick))[:, None], hits].astype(object)
    to_corpus = np.vectorize(lambda i: position[db.ids[i]])
    return plots.retrieval_grid([position[q.ids[i]] for i in pick], to_corpus(hits), correct,
                                lambda i: corpus.load(int(i)), path, "top hits by Hamming distance (red x: different class)")


def format_table(result: dict) -> str:
    keys = [k for k in result if k.startswith(METRIC_PREFIXES)]
    width = max(len(k) for k in keys)
    lines = [f"{'metric'.ljust(width)}  value", f"{'-' * width}  ------"]
    lines += [f"{k.ljust(width)}  {result[k]:.4f}" for k in keys]
    return "\n".join(lines)
