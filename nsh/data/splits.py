"""The evaluation protocol's splits, made once from a seed and saved, so every run uses the same items.

Single-label data with an official test split (CIFAR-10, Fashion-MNIST), DeepHash-pytorch protocol:
queries = `query_per_class` per class from the test split; train = `train_per_class` per class from the
rest; database = everything else. Validation (for model selection; test queries are never used for it):
`val_query_per_class` queries and a `val_db_per_class` database, both drawn from the database, disjoint.
Other data (multi-label, no test split): the same counts times the number of classes, drawn at random.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from nsh.data.sources import Corpus

SPLITS = ("query", "train", "database", "val_query", "val_db")


def make_split(corpus: Corpus, seed: int, query_per_class: int, train_per_class: int,
               val_query_per_class: int, val_db_per_class: int, database_per_class: int | None = None
               ) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = corpus.labels
    if labels.ndim == 1 and labels.min() >= 0:
        classes = np.unique(labels)

        def per_class(pool: np.ndarray, count: int) -> np.ndarray:
            picked = []
            for c in classes:
                members = pool[labels[pool] == c]
                if len(members) < count:
                    raise ValueError(f"{corpus.name}: class {c} has {len(members)} items left, {count} needed; "
                                     "lower the per-class counts in data.*_per_class")
                picked.append(rng.choice(members, count, replace=False))
            return np.sort(np.concatenate(picked))

        everything = np.arange(len(corpus))
        query_pool = everything[corpus.is_test] if corpus.is_test is not None else everything
        query = per_class(query_pool, query_per_class)
        rest = np.setdiff1d(everything, query)
        train = per_class(rest, train_per_class)
        database = np.setdiff1d(rest, train)
        if database_per_class is not None:
            database = per_class(database, database_per_class)
        val_query = per_class(database, val_query_per_class)
        val_db = per_class(np.setdiff1d(database, val_query), val_db_per_class)
    else:
        n_classes = labels.shape[1] if labels.ndim == 2 else 1
        perm = rng.permutation(len(corpus))
        counts = [query_per_class * n_classes, train_per_class * n_classes]
        if sum(counts) >= len(corpus):
            raise ValueError(f"{corpus.name}: {len(corpus)} items cannot hold {counts[0]} queries and {counts[1]} "
                             "training items; lower data.query_per_class / data.train_per_class")
        query, train = np.sort(perm[: counts[0]]), np.sort(perm[counts[0]: sum(counts)])
        database = np.sort(perm[sum(counts):])
        if database_per_class is not None:
            database = np.sort(rng.choice(database, min(len(database), database_per_class * n_classes), replace=False))
        vq = rng.permutation(database)
        val_query = np.sort(vq[: val_query_per_class * n_classes])
        val_db = np.sort(vq[val_query_per_class * n_classes: (val_query_per_class + val_db_per_class) * n_classes])
    return dict(query=query, train=train, database=database, val_query=val_query, val_db=val_db)


def load_or_make_split(corpus: Corpus, path: str | Path, seed: int, **counts) -> dict[str, np.ndarray]:
    """The split saved at `path` (ids per split), or a new one made from `seed` and saved there."""
    path = Path(path)
    if path.is_file():
        saved = json.loads(path.read_text())
        position = {item: i for i, item in enumerate(corpus.ids)}
        try:
            split = {s: np.array([position[i] for i in saved["ids"][s]], dtype=np.int64) for s in SPLITS}
        except KeyError as err:
            raise ValueError(f"split file {path} names item {err} that is not in {corpus.name}; delete the file "
                             "to make a new split, or point data.root at the data it was made from") from None
        return split
    split = make_split(corpus, seed, **counts)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"dataset": corpus.name, "seed": seed, "counts": counts,
              "sizes": {s: int(len(v)) for s, v in split.items()},
              "ids": {s: corpus.ids[v].tolist() for s, v in split.items()}}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record))
    tmp.replace(path)
    return split


def split_digest(split: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for s in SPLITS:
        h.update(np.asarray(split[s], dtype=np.int64).tobytes())
    return h.hexdigest()[:12]
