"""Metrics against naive, loop-based reference implementations of the same definitions."""
import itertools

import numpy as np
import pytest

from nsh import metrics
from nsh.codes import CodeLengthError, pack


def naive_hamming(q, db):
    return [[bin(int.from_bytes(a.tobytes(), "big") ^ int.from_bytes(b.tobytes(), "big")).count("1") for b in db] for a in q]


def naive_rel(ql, dl):
    if np.ndim(ql) == 1:
        return [[ql[i] == dl[j] for j in range(len(dl))] for i in range(len(ql))]
    return [[bool(np.any(np.logical_and(ql[i], dl[j]))) for j in range(len(dl))] for i in range(len(ql))]


def naive_ap_of_order(rel_row, order, k):
    hits, total = 0, 0.0
    for t, j in enumerate(order[:k], start=1):
        if rel_row[j]:
            hits += 1
            total += hits / t
    return total / hits if hits else 0.0


def naive_map(q, db, ql, dl, k):
    dist, rel = naive_hamming(q, db), naive_rel(ql, dl)
    aps = []
    for i in range(len(q)):
        order = sorted(range(len(db)), key=lambda j: (dist[i][j], j))
        aps.append(naive_ap_of_order(rel[i], order, k))
    return float(np.mean(aps))


def naive_tie_aware_map(q, db, ql, dl, k):
    """Average AP over every order inside tied groups (exhaustive: tiny inputs only)."""
    dist, rel = naive_hamming(q, db), naive_rel(ql, dl)
    aps = []
    for i in range(len(q)):
        groups = {}
        for j in range(len(db)):
            groups.setdefault(dist[i][j], []).append(j)
        perms = [list(itertools.permutations(groups[d])) for d in sorted(groups)]
        vals = [naive_ap_of_order(rel[i], [j for g in combo for j in g], k) for combo in itertools.product(*perms)]
        aps.append(np.mean(vals))
    return float(np.mean(aps))


def random_case(rng, nq, ndb, nbits, nclass, multilabel=False):
    q = pack(rng.integers(0, 2, (nq, nbits)) * 2 - 1)
    db = pack(rng.integers(0, 2, (ndb, nbits)) * 2 - 1)
    if multilabel:
        ql, dl = rng.integers(0, 2, (nq, nclass)), rng.integers(0, 2, (ndb, nclass))
    else:
        ql, dl = rng.integers(0, nclass, nq), rng.integers(0, nclass, ndb)
    return q, db, ql, dl


def test_map_hand_computed_case_with_stable_tie_rule():
    # One query; distances 0,1,1,2 to four items; relevant items 0 and 3 (tie at distance 1 kept in index order).
    q = pack(np.array([[1] * 8]))
    db = pack(np.array([[1] * 8, [-1] + [1] * 7, [1, -1] + [1] * 6, [-1, -1] + [1] * 6]))
    ql, dl = np.array([0]), np.array([0, 1, 1, 0])
    # ranks: item0 (rel, P=1), item1, item2, item3 (rel, P=2/4) -> AP@4 = (1 + 0.5)/2
    assert metrics.map_at_k(q, db, ql, dl, k=4) == pytest.approx(0.75)
    # top-2 holds one relevant item at rank 1 -> AP@2 = 1
    assert metrics.map_at_k(q, db, ql, dl, k=2) == pytest.approx(1.0)


@pytest.mark.parametrize("multilabel", [False, True])
@pytest.mark.parametrize("nbits,k", [(8, 5), (16, 30), (24, 60)])
def test_map_matches_naive_reference(multilabel, nbits, k):
    rng = np.random.default_rng(nbits + k)
    q, db, ql, dl = random_case(rng, 13, 60, nbits, 4, multilabel)
    assert metrics.map_at_k(q, db, ql, dl, k) == pytest.approx(naive_map(q, db, ql, dl, k), abs=1e-12)


@pytest.mark.parametrize("k", [1, 7, 40])
def test_cosine_map_matches_naive_full_sort(k):
    rng = np.random.default_rng(k)
    q, db = rng.normal(size=(9, 5)), rng.normal(size=(40, 5)) * rng.uniform(0.5, 3, (40, 1))  # norms must not matter
    ql, dl = rng.integers(0, 3, 9), rng.integers(0, 3, 40)
    cos = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (db / np.linalg.norm(db, axis=1, keepdims=True)).T
    want = np.mean([naive_ap_of_order([ql[i] == d for d in dl], list(np.argsort(-cos[i])), k) for i in range(9)])
    assert metrics.cosine_map_at_k(q, db, ql, dl, k) == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("k", [1, 3, 5, 7])
def test_tie_aware_map_equals_exhaustive_average_over_tie_orders(k):
    rng = np.random.default_rng(k)
    # 8-bit codes drawn from a few patterns: many ties, and a tied group straddles rank k.
    q, db, ql, dl = random_case(rng, 6, 7, 8, 2)
    db = pack(np.where(rng.integers(0, 2, (7, 8)) * (np.arange(8) < 2), 1, -1))
    assert metrics.tie_aware_map_at_k(q, db, ql, dl, k) == pytest.approx(naive_tie_aware_map(q, db, ql, dl, k), abs=1e-12)


def test_tie_aware_map_equals_standard_map_without_ties():
    # Distinct distances 0..7 to 8 items: no ties, so both figures must agree.
    q = pack(np.ones((1, 8)))
    db = pack(np.array([[-1] * d + [1] * (8 - d) for d in range(8)]))
    ql, dl = np.array([1]), np.array([1, 0, 1, 1, 0, 0, 1, 0])
    for k in (1, 4, 8):
        assert metrics.tie_aware_map_at_k(q, db, ql, dl, k) == pytest.approx(metrics.map_at_k(q, db, ql, dl, k))


def test_pr_curve_and_radius_precision_match_naive():
    rng = np.random.default_rng(0)
    q, db, ql, dl = random_case(rng, 9, 50, 16, 3, multilabel=True)
    dist, rel = np.array(naive_hamming(q, db)), np.array(naive_rel(ql, dl))
    prec, rec = metrics.pr_curve(q, db, ql, dl)
    for r in range(17):
        inside = dist <= r
        got = [rel[i][inside[i]].mean() for i in range(len(q)) if inside[i].any()]
        assert prec[r] == pytest.approx(np.mean(got)) if got else np.isnan(prec[r])
        assert rec[r] == pytest.approx(np.mean([(rel[i] & inside[i]).sum() / max(rel[i].sum(), 1) for i in range(len(q))]))
    p2 = [rel[i][dist[i] <= 2].mean() if (dist[i] <= 2).any() else 0.0 for i in range(len(q))]
    assert metrics.precision_at_radius(q, db, ql, dl, 2) == pytest.approx(np.mean(p2))


def test_pr_area_hand_computed_with_the_first_radius_held_down_to_recall_zero_and_empty_radii_left_out():
    # radius 0 retrieves nothing; radius 1: precision 1 at recall 0.5; radius 2: precision 0.5 at recall 1
    assert metrics.pr_area([np.nan, 1.0, 0.5], [0.0, 0.5, 1.0]) == pytest.approx(1.0 * 0.5 + (1.0 + 0.5) / 2 * 0.5)
    with pytest.raises(ValueError, match="no radius retrieves anything"):
        metrics.pr_area([np.nan, np.nan], [0.0, 0.0])
    with pytest.raises(ValueError, match="1-D curves of one length"):
        metrics.pr_area([1.0, 0.5], [1.0])


def test_pr_area_is_one_for_codes_that_put_every_class_at_distance_zero_and_near_the_class_share_for_random_codes():
    bits = np.array([[1] * 8 + [-1] * 8, [-1] * 8 + [1] * 8])
    labels = np.array([0, 1] * 20)
    perfect = pack(bits[labels])
    assert metrics.evaluate(perfect, perfect, labels, labels, k=5).pr_area == pytest.approx(1.0)
    rng = np.random.default_rng(1)
    q, db, ql, dl = random_case(rng, 40, 2000, 16, 4)
    assert metrics.evaluate(q, db, ql, dl, k=5).pr_area == pytest.approx(0.25, abs=0.03)


def test_pr_area_of_evaluate_matches_a_naive_trapezoid_over_the_naive_curve():
    rng = np.random.default_rng(2)
    q, db, ql, dl = random_case(rng, 7, 60, 16, 3)
    dist, rel = np.array(naive_hamming(q, db)), np.array(naive_rel(ql, dl))
    points = []
    for r in range(17):
        inside = dist <= r
        got = [rel[i][inside[i]].mean() for i in range(len(q)) if inside[i].any()]
        if got:
            points.append((np.mean(got), np.mean([(rel[i] & inside[i]).sum() / rel[i].sum() for i in range(len(q))])))
    area = points[0][0] * points[0][1]
    for (p0, r0), (p1, r1) in zip(points, points[1:]):
        area += (p0 + p1) / 2 * (r1 - r0)
    m = metrics.evaluate(q, db, ql, dl, k=5)
    assert m.pr_area == pytest.approx(area)
    assert m.as_dict("test_")["test_pr_area"] == pytest.approx(area)


def test_query_without_relevant_items_scores_zero():
    q = pack(np.ones((1, 8)))
    db = pack(np.ones((3, 8)))
    assert metrics.map_at_k(q, db, np.array([5]), np.array([0, 1, 2]), 3) == 0.0


def test_bad_inputs_raise_clear_errors():
    q = pack(np.ones((2, 16)))
    db = pack(np.ones((4, 8)))
    with pytest.raises(CodeLengthError, match="16 bits but database codes have 8"):
        metrics.map_at_k(q, db, np.zeros(2), np.zeros(4), 2)
    with pytest.raises(ValueError, match="k=9 must be between 1 and the database size"):
        metrics.map_at_k(db, db, np.zeros(4), np.zeros(4), 9)
