"""Retrieval metrics on packed binary codes, as the hashing literature computes them.

Every metric here ranks the database by Hamming distance to each query. Relevance: same class id
(1-D labels) or at least one shared label (2-D multi-hot labels).

- `map_at_k`: over the top k, AP = mean of precision@t at each relevant position t (divided by the
  number of relevant items inside the top k); a query with none scores 0. Hamming ties are broken by
  database index (stable), so the figure is deterministic.
- `tie_aware_map_at_k`: the expectation of the same AP over uniformly random orders inside every group of
  tied distances (McSherry & Najork, ECIR 2008), computed exactly, not sampled.
- `pr_curve`, `precision_at_radius`: precision and recall of the set within Hamming radius r.
- `pr_area`: the area under such a curve, one number per run for what the curve shows over the whole
  database, where mAP@k sees only the top k.

All of them share one vectorised pass (`evaluate`), so asking for everything costs one distance matrix per
chunk of queries.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln

from nsh.codes import CodeLengthError, hamming_matrix

QUERY_CHUNK = 128  # query rows per chunk at most: bounded memory for any database size


@dataclass
class RetrievalMetrics:
    map_at_k: float
    tie_aware_map_at_k: float
    precision_at_radius2: float
    pr_precision: np.ndarray  # by Hamming radius 0..nbits; NaN where no query retrieves anything
    pr_recall: np.ndarray
    k: int

    @property
    def pr_area(self) -> float:
        return pr_area(self.pr_precision, self.pr_recall)

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        return {
            f"{prefix}map_at_{self.k}": self.map_at_k,
            f"{prefix}map_at_{self.k}_tie_aware": self.tie_aware_map_at_k,
            f"{prefix}precision_h2": self.precision_at_radius2,
            f"{prefix}pr_area": self.pr_area,
        }


def relevance(query_labels: np.ndarray, db_labels: np.ndarray) -> np.ndarray:
    """(len(q), len(db)) boolean matrix: same class for 1-D labels, a shared label for multi-hot ones."""
    query_labels, db_labels = np.asarray(query_labels), np.asarray(db_labels)
    if query_labels.ndim != db_labels.ndim:
        raise ValueError(
            f"query labels are {query_labels.ndim}-D but database labels are {db_labels.ndim}-D; "
            "use class ids (1-D) or multi-hot rows (2-D) for both"
        )
    if query_labels.ndim == 1:
        return query_labels[:, None] == db_labels[None, :]
    if query_labels.shape[1] != db_labels.shape[1]:
        raise ValueError(
            f"query labels have {query_labels.shape[1]} classes but database labels have {db_labels.shape[1]}"
        )
    return (query_labels.astype(np.float32) @ db_labels.astype(np.float32).T) > 0


def _chunks(n_query: int, n_db: int) -> list[slice]:
    # ~32M distances per chunk: the stable ranking's int64 index array stays near 256 MB for any database size.
    rows = max(1, min(QUERY_CHUNK, 2**25 // max(n_db, 1)))
    return [slice(lo, lo + rows) for lo in range(0, n_query, rows)]


def _map_chunks(fn, query_codes, db_codes, query_labels, db_labels) -> list:
    """fn(dist, rel) over query chunks, in threads: popcount and radix sort release the GIL."""
    query_labels = np.asarray(query_labels)

    def one(sl):
        return fn(hamming_matrix(query_codes[sl], db_codes), relevance(query_labels[sl], db_labels))

    chunks = _chunks(len(query_codes), len(db_codes))
    if len(chunks) == 1:
        return [one(chunks[0])]
    with ThreadPoolExecutor(min(len(chunks), os.cpu_count() or 1)) as pool:
        return list(pool.map(one, chunks))


def evaluate(query_codes, db_codes, query_labels, db_labels, k: int, nbits: int | None = None) -> RetrievalMetrics:
    """All metrics of this module in one pass over the (query x database) Hamming distances."""
    query_codes, db_codes = np.asarray(query_codes, np.uint8), np.asarray(db_codes, np.uint8)
    _check(query_codes, db_codes, query_labels, db_labels, k)
    nbits = nbits or db_codes.shape[1] * 8

    def chunk(dist, rel):
        h_all, h_rel = _histograms(dist, rel, nbits)
        return _ap_stable(dist, rel, k), _ap_tie_aware(h_all, h_rel, k), h_all, h_rel, rel.sum(1)

    ap, ap_tie, hist_all, hist_rel, n_relevant = zip(*_map_chunks(chunk, query_codes, db_codes, query_labels, db_labels))
    h_all, h_rel = np.concatenate(hist_all), np.concatenate(hist_rel)
    precision, recall = _pr_from_histograms(h_all, h_rel, np.concatenate(n_relevant))
    return RetrievalMetrics(
        map_at_k=float(np.concatenate(ap).mean()),
        tie_aware_map_at_k=float(np.concatenate(ap_tie).mean()),
        precision_at_radius2=_precision_within(h_all, h_rel, 2),
        pr_precision=precision,
        pr_recall=recall,
        k=k,
    )


def map_at_k(query_codes, db_codes, query_labels, db_labels, k: int) -> float:
    """mAP@k with Hamming ties broken by database index."""
    query_codes, db_codes = np.asarray(query_codes, np.uint8), np.asarray(db_codes, np.uint8)
    _check(query_codes, db_codes, query_labels, db_labels, k)
    ap = _map_chunks(lambda dist, rel: _ap_stable(dist, rel, k), query_codes, db_codes, query_labels, db_labels)
    return float(np.concatenate(ap).mean())


def tie_aware_map_at_k(query_codes, db_codes, query_labels, db_labels, k: int) -> float:
    """Expected mAP@k over random orders inside groups of tied Hamming distances."""
    return evaluate(query_codes, db_codes, query_labels, db_labels, k).tie_aware_map_at_k


def pr_curve(query_codes, db_codes, query_labels, db_labels) -> tuple[np.ndarray, np.ndarray]:
    """Mean precision and recall of the set within Hamming radius r, for r = 0..nbits."""
    m = evaluate(query_codes, db_codes, query_labels, db_labels, k=1)
    return m.pr_precision, m.pr_recall


def pr_area(precision, recall) -> float:
    """Area under a P-R curve given radius by radius (`pr_curve`): trapezoids between radii, and below the first
    radius's recall that radius's precision, which is what retrieving its set first earns there. Radii whose
    precision is NaN (no query retrieves anything) are left out. 1.0 when every query's classmates, and only
    they, sit at distance 0; for random codes about the share of relevant items."""
    precision, recall = np.asarray(precision, float), np.asarray(recall, float)
    if precision.shape != recall.shape or precision.ndim != 1:
        raise ValueError(f"precision {precision.shape} and recall {recall.shape} must be 1-D curves of one length, "
                         "radius by radius, as pr_curve returns them")
    known = ~np.isnan(precision)
    if not known.any():
        raise ValueError("no radius retrieves anything (precision is NaN at every radius): the curve has no area")
    p, r = precision[known], recall[known]
    return float(p[0] * r[0] + np.sum((p[1:] + p[:-1]) / 2 * np.diff(r)))


def precision_at_radius(query_codes, db_codes, query_labels, db_labels, radius: int = 2) -> float:
    """Mean precision of the set within Hamming radius `radius`; a query that retrieves nothing scores 0."""
    q, db = np.asarray(query_codes, np.uint8), np.asarray(db_codes, np.uint8)
    _check(q, db, query_labels, db_labels, 1)
    nbits = db.shape[1] * 8
    hists = _map_chunks(lambda dist, rel: _histograms(dist, rel, nbits), q, db, query_labels, db_labels)
    return _precision_within(np.concatenate([h[0] for h in hists]), np.concatenate([h[1] for h in hists]), radius)


def _check(query_codes, db_codes, query_labels, db_labels, k):
    if query_codes.ndim != 2 or db_codes.ndim != 2:
        raise CodeLengthError("codes must be packed uint8 arrays of shape (n, nbits/8)")
    if query_codes.shape[1] != db_codes.shape[1]:
        raise CodeLengthError(
            f"query codes have {query_codes.shape[1] * 8} bits but database codes have {db_codes.shape[1] * 8}; "
            "encode queries and database with the same model"
        )
    if len(query_labels) != len(query_codes) or len(db_labels) != len(db_codes):
        raise ValueError(
            f"labels and codes differ in length: {len(query_labels)} query labels for {len(query_codes)} codes, "
            f"{len(db_labels)} database labels for {len(db_codes)} codes"
        )
    if not 1 <= k <= len(db_codes):
        raise ValueError(f"k={k} must be between 1 and the database size ({len(db_codes)}); lower k")


def _ap_stable(dist: np.ndarray, rel: np.ndarray, k: int) -> np.ndarray:
    return _ap_of_ranking(np.take_along_axis(rel, _top_k_stable(dist, k), 1))


def _top_k_stable(dist: np.ndarray, k: int) -> np.ndarray:
    """Per row, the k nearest database indices ordered by distance, then by index: what a stable full sort gives,
    without sorting everything. Distances are small integers, so a binary search over them finds the radius r
    that the k-th item sits at; only the items within r (in index order) are sorted, stably."""
    top = np.empty((len(dist), k), dtype=np.int64)
    for i, row in enumerate(dist):
        r = _radius_of_kth(row, k)
        within = np.flatnonzero(row <= r)
        top[i] = within[np.argsort(row[within], kind="stable")[:k]]
    return top


def _radius_of_kth(row: np.ndarray, k: int):
    """The smallest r with at least k items at distance <= r, as row's dtype: comparing a uint8 row with a
    Python int upcasts the whole row and costs 15x; a few counting passes beat one bincount (which widens too)."""
    lo, hi = 0, int(row.max())
    while lo < hi:
        mid = (lo + hi) // 2
        if np.count_nonzero(row <= row.dtype.type(mid)) >= k:
            hi = mid
        else:
            lo = mid + 1
    return row.dtype.type(lo)


def _ap_of_ranking(hits: np.ndarray) -> np.ndarray:
    """(q, k) relevance of each query's top k, best first -> AP@k per query (0 when nothing relevant)."""
    cum = np.cumsum(hits, axis=1)
    prec_at_hits = np.where(hits, cum / np.arange(1, hits.shape[1] + 1), 0.0).sum(1)
    return np.where(cum[:, -1] > 0, prec_at_hits / np.maximum(cum[:, -1], 1), 0.0)


def cosine_map_at_k(query_feats, db_feats, query_labels, db_labels, k: int) -> float:
    """mAP@k ranking the database by cosine similarity of float features: the ceiling that codes approach."""
    q = np.asarray(query_feats, np.float32)
    db = np.asarray(db_feats, np.float32)
    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    db = db / np.maximum(np.linalg.norm(db, axis=1, keepdims=True), 1e-12)
    if not 1 <= k <= len(db):
        raise ValueError(f"k={k} must be between 1 and the database size ({len(db)}); lower k")
    ap = []
    for sl in _chunks(len(q), len(db)):
        sim = q[sl] @ db.T
        top = np.argpartition(-sim, k - 1, axis=1)[:, :k] if k < len(db) else np.broadcast_to(np.arange(len(db)), sim.shape)
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(sim, top, 1), axis=1, kind="stable"), 1)
        rel = relevance(np.asarray(query_labels)[sl], db_labels)
        ap.append(_ap_of_ranking(np.take_along_axis(rel, top, 1)))
    return float(np.concatenate(ap).mean())


def _histograms(dist: np.ndarray, rel: np.ndarray, nbits: int) -> tuple[np.ndarray, np.ndarray]:
    """Per query, how many database items (and how many relevant ones) sit at each distance 0..nbits."""
    q = dist.shape[0]
    flat = (dist + (nbits + 1) * np.arange(q)[:, None]).ravel()
    size = q * (nbits + 1)
    h_all = np.bincount(flat, minlength=size).reshape(q, nbits + 1)
    h_rel = np.bincount(flat[rel.ravel()], minlength=size).reshape(q, nbits + 1)
    return h_all, h_rel


def _harmonic(n: np.ndarray) -> np.ndarray:
    """H(n) = sum_{i<=n} 1/i for integer arrays n >= 0 (exact by cumulative table)."""
    top = int(n.max()) if n.size else 0
    table = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, top + 1))])
    return table[n]


def _expected_hit_precision(r, n, t0, r_before):
    """E[sum over relevant positions j of precision@j] for one tied group.

    The group occupies ranks t0+1..t0+n and holds r relevant items in a uniformly random order, with
    r_before relevant items ranked ahead of it. Position j is relevant with probability r/n, and given
    that, (j-1)(r-1)/(n-1) relevant items are expected before it inside the group.
    """
    h1 = _harmonic(t0 + n) - _harmonic(t0)  # sum_j 1/(t0+j)
    h2 = n - (t0 + 1) * h1  # sum_j (j-1)/(t0+j)
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(n > 1, (r - 1) / np.maximum(n - 1, 1), 0.0)
        out = np.where(n > 0, r / np.maximum(n, 1) * ((r_before + 1) * h1 + frac * h2), 0.0)
    return out


def _ap_tie_aware(h_all: np.ndarray, h_rel: np.ndarray, k: int) -> np.ndarray:
    t_before = np.cumsum(h_all, 1) - h_all
    r_before = np.cumsum(h_rel, 1) - h_rel
    full = t_before + h_all <= k
    # Groups wholly inside the top k contribute their expected hits deterministically.
    a = np.where(full, _expected_hit_precision(h_rel, h_all, t_before, r_before), 0.0).sum(1)
    r_full = np.where(full, h_rel, 0).sum(1)

    # The group that straddles rank k: only s of its n positions count, and the number x of relevant items
    # among them is hypergeometric. AP's denominator (relevant items in the top k) depends on x, so the
    # expectation is taken over x exactly.
    straddle = (t_before < k) & ~full
    has = straddle.any(1)
    g = straddle.argmax(1)
    rows = np.arange(len(g))
    n = np.where(has, h_all[rows, g], 1)
    r = np.where(has, h_rel[rows, g], 0)
    t0 = np.where(has, t_before[rows, g], 0)
    rb = np.where(has, r_before[rows, g], r_full)
    s = np.where(has, k - t0, 1)
    x = np.arange(k + 1)[None, :]
    valid = (x <= np.minimum(r, s)[:, None]) & (x >= np.maximum(0, s - (n - r))[:, None])
    xs = np.where(valid, x, 0)
    log_pmf = (_log_comb(r[:, None], xs) + _log_comb((n - r)[:, None], s[:, None] - xs) - _log_comb(n, s)[:, None])
    pmf = np.where(valid, np.exp(log_pmf), 0.0)
    b = _expected_hit_precision(xs, s[:, None], t0[:, None], rb[:, None])
    denom = rb[:, None] + xs
    with np.errstate(divide="ignore", invalid="ignore"):
        ap_given_x = np.where(denom > 0, (a[:, None] + b) / np.maximum(denom, 1), 0.0)
    ap_straddle = (pmf * ap_given_x).sum(1)
    ap_exact = np.where(r_full > 0, a / np.maximum(r_full, 1), 0.0)
    return np.where(has, ap_straddle, ap_exact)


def _log_comb(n, x):
    return gammaln(n + 1) - gammaln(x + 1) - gammaln(n - x + 1)


def _pr_from_histograms(h_all, h_rel, n_relevant):
    retrieved = np.cumsum(h_all, 1)
    hits = np.cumsum(h_rel, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        prec = np.where(retrieved > 0, hits / np.maximum(retrieved, 1), np.nan)
        rec = np.where(n_relevant[:, None] > 0, hits / np.maximum(n_relevant[:, None], 1), 0.0)
    counted = (retrieved > 0).sum(0)
    precision = np.where(counted > 0, np.nansum(prec, 0) / np.maximum(counted, 1), np.nan)
    return precision, rec.mean(0)


def _precision_within(h_all, h_rel, radius):
    retrieved = h_all[:, : radius + 1].sum(1)
    hits = h_rel[:, : radius + 1].sum(1)
    return float(np.where(retrieved > 0, hits / np.maximum(retrieved, 1), 0.0).mean())
