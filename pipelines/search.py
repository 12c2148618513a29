"""Which items are nearest to this image, this id, or this code? Hamming search over a Parquet code corpus.

    python pipelines/search.py --codes runs/cifar10_quick/codes/database --id test/cat/0003.jpg -k 10
    python pipelines/search.py --codes runs/cifar10_quick/codes/database --image my.jpg --picture hits.png
    python pipelines/search.py --codes runs/cifar10_quick/codes/database --code 9f3a61c0 --json

The faiss index (exact `flat`, or sub-linear `multihash`) is built on first use and saved beside the codes,
then reused while the codes are unchanged. Images are encoded with --model, or by default with the model
the codes were made with (their nsh.model_uri metadata: a checkpoint path or an MLflow model URI).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from nsh.code_index import CodeIndex  # noqa: E402


def encode_images(paths: list[str], model_uri: str) -> np.ndarray:
    import torch

    from nsh import tracking
    from nsh.checkpoint import load_model
    from nsh.codes import pack
    from nsh.data import eval_view, load_image

    tracking.mlflow.set_tracking_uri(tracking.tracking_uri())
    model, cfg, _ = load_model(tracking.resolve_model(model_uri))
    t = eval_view(cfg.data.image_size, model.mean, model.std)
    with torch.no_grad():
        return pack(model.encode(torch.stack([t(load_image(p)) for p in paths])))


def format_hits(hits) -> str:
    rows = [("query", "rank", "id", "hamming", "label", "path")] + \
           [(h.query, str(h.rank), h.id, str(h.distance), str(h.label), h.path or "") for h in hits]
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows)


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--codes", required=True, help="folder of part-*.parquet codes (pipelines/encode.py output)")
    p.add_argument("--id", action="append", default=[], help="query by an id of the corpus (repeatable)")
    p.add_argument("--image", action="append", default=[], help="query by an image file (repeatable)")
    p.add_argument("--code", action="append", default=[], help="query by a packed code as hex (repeatable)")
    p.add_argument("-k", type=int, default=10, help="hits per query")
    p.add_argument("--index", choices=["flat", "multihash"], default="flat", help="exact or sub-linear search")
    p.add_argument("--model", help="model for --image queries (default: the codes' nsh.model_uri)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--picture", help="write a PNG of each query and its hits (image corpora)")
    a = p.parse_args(argv)
    if not (a.id or a.image or a.code):
        p.error("give at least one query: --id, --image or --code")
    corpus = CodeIndex(a.codes, a.index)
    names, codes = list(a.id), [corpus.code_of(i) for i in a.id]
    names += list(a.code)
    codes += [corpus.parse_hex(c) for c in a.code]
    if a.image:
        model = a.model or corpus.table.model_uri
        if not model:
            p.error("the codes carry no nsh.model_uri: pass --model (checkpoint path or models:/nsh@champion)")
        names += list(a.image)
        codes += list(encode_images(a.image, model))
    hits = corpus.search(np.stack(codes), names, a.k)
    print(json.dumps([asdict(h) for h in hits], indent=1) if a.json else format_hits(hits))
    if a.picture:
        picture(corpus, a, names, hits)
    return [asdict(h) for h in hits]


def picture(corpus: CodeIndex, a, names: list[str], hits) -> None:
    from nsh import plots
    from nsh.data import load_image

    t = corpus.table
    if t.paths is None:
        raise ValueError(f"{a.codes} has no image paths (a feature corpus?): no picture to draw")
    by_query = [[h for h in hits if h.query == n] for n in names]
    k = min(len(b) for b in by_query)
    query_paths = [t.paths[corpus.position[n]] if n in a.id else n for n in names if n not in a.code]
    rows = [b[:k] for n, b in zip(names, by_query) if n not in a.code]
    grid = np.array([[h.path for h in b] for b in rows], dtype=object)
    correct = None
    if t.labels is not None and a.id and not a.image:
        q_labels = [t.labels[corpus.position[n]].tolist() for n in a.id]
        correct = np.array([[_relevant(q, h.label) for h in b] for q, b in zip(q_labels, rows)], dtype=object)
    plots.retrieval_grid(query_paths, grid, correct, load_image, a.picture, "nearest codes (Hamming)")
    print(f"picture: {a.picture}")


def _relevant(q, hit) -> bool:
    if isinstance(q, list):
        return bool(np.logical_and(q, hit).any())
    return q == hit


if __name__ == "__main__":
    main()
