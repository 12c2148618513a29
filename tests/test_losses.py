"""SortedNCE against a naive loop over the paper's formula, and its gradient paths."""
import math

import pytest
import torch
import torch.nn.functional as F

from nsh.losses import (CodeNTXent, SortedNCE, hamming_distance, mined_weight_at, nce_over_slots, nt_xent,
                        sorted_nce)
from nsh.models import Hasher
from nsh.sorters import SoftSort, TorchSort


def naive_sorted_nce(dist, z_anchor, z_cand, m, tau, near=0, near_weight=0.0):
    """The paper's formula, one anchor and one positive position at a time (hard sort); the `near` positions
    after the positives weigh near_weight as negatives."""
    terms = []
    for i in range(dist.shape[0]):
        order = sorted(range(dist.shape[1]), key=lambda j: dist[i, j].item())
        c = [F.cosine_similarity(z_cand[j], z_anchor[i], dim=0).item() for j in order]
        neg = sum(near_weight * math.exp(ck / tau) for ck in c[m:m + near])
        neg += sum(math.exp(ck / tau) for ck in c[m + near:])
        for r in range(m):
            terms.append(-math.log(math.exp(c[r] / tau) / (math.exp(c[r] / tau) + neg)))
    return sum(terms) / len(terms)


def distinct_distances(n, c, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randperm(c, generator=g).double() for _ in range(n)])


@pytest.mark.parametrize("sorter", [SoftSort(200.0), TorchSort(200.0)], ids=lambda s: s.name)
@pytest.mark.parametrize("m", [1, 2, 3])
@pytest.mark.parametrize("near,near_weight", [(0, 0.0), (2, 0.0), (2, 3.0)])
def test_both_sorters_equal_naive_formula_with_hard_ranks(sorter, m, near, near_weight):
    torch.manual_seed(m)
    dist = distinct_distances(5, 7, seed=m)
    za, zc = F.normalize(torch.randn(5, 4, dtype=torch.float64), dim=1), F.normalize(torch.randn(7, 4, dtype=torch.float64), dim=1)
    got = nce_over_slots(sorter.arrange(dist, za, zc, m, near=near, near_weight=near_weight), tau=0.5).item()
    assert got == pytest.approx(naive_sorted_nce(dist, za, zc, m, 0.5, near, near_weight), rel=1e-6)


def test_sorted_nce_from_codes_equals_naive_formula():
    # Candidate j has its first j bits flipped: seen from the two end codes, all distances are distinct.
    codes_c = torch.tensor([[-1.0] * j + [1.0] * (8 - j) for j in range(8)], dtype=torch.float64)
    codes_a = codes_c[[0, 7]]
    za, zc = F.normalize(torch.randn(2, 6, dtype=torch.float64), dim=1), F.normalize(torch.randn(8, 6, dtype=torch.float64), dim=1)
    dist = hamming_distance(codes_a, codes_c)
    for sorter in (SoftSort(200.0), TorchSort(200.0)):
        got = sorted_nce(codes_a, za, codes_c, zc, sorter, m=2, tau=0.2).item()
        assert got == pytest.approx(naive_sorted_nce(dist, za, zc, 2, 0.2), rel=1e-6)


def test_m1_is_infonce_on_the_sorted_list():
    dist = distinct_distances(6, 9, seed=3)
    za, zc = F.normalize(torch.randn(6, 5, dtype=torch.float64), dim=1), F.normalize(torch.randn(9, 5, dtype=torch.float64), dim=1)
    slots = SoftSort(200.0).arrange(dist, za, zc, 1)
    infonce = F.cross_entropy(slots.sim / 0.3, torch.zeros(6, dtype=torch.long))
    assert nce_over_slots(slots, 0.3).item() == pytest.approx(infonce.item(), rel=1e-9)


def test_hamming_distance_of_sign_codes():
    a = torch.tensor([[1.0, 1, 1, 1, 1, 1, 1, 1]])
    b = torch.tensor([[1.0, -1, 1, -1, 1, 1, 1, 1], [-1.0] * 8])
    assert hamming_distance(a, b).tolist() == [[2.0, 8.0]]


def _hash_head_grads(sorter, detach_sort_input=False):
    torch.manual_seed(0)
    model = Hasher("features", nbits=32, latent_dim=16, hidden=64, feature_dim=20)
    f1, f2 = torch.randn(32, 20), torch.randn(32, 20)
    (c1, z1), (c2, z2) = model(f1, is_feature=True), model(f2, is_feature=True)
    if detach_sort_input:  # cut the only road from the codes to the loss: the distances fed to the sorter
        c1, c2 = c1.detach(), c2.detach()
    SortedNCE(sorter, m=1, tau=0.3)(c1, z1, c2, z2).backward()
    return [p.grad for p in model.hash_head.parameters()]


@pytest.mark.parametrize("sorter", [SoftSort(0.5), TorchSort(0.5)], ids=lambda s: s.name)
def test_hash_head_learns_only_through_the_sorter_and_gets_nonzero_gradient(sorter):
    grads = _hash_head_grads(sorter)
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
    assert all(g is None or g.abs().sum() == 0 for g in _hash_head_grads(sorter, detach_sort_input=True))


@pytest.mark.parametrize("sorter", [SoftSort(0.5), TorchSort(0.5)], ids=lambda s: s.name)
def test_own_view_positive_variant_counts_own_view_and_mines_the_rest(sorter):
    torch.manual_seed(1)
    codes = torch.where(torch.randn(6, 16) > 0, 1.0, -1.0)
    z1, z2 = F.normalize(torch.randn(6, 8), dim=1), F.normalize(torch.randn(6, 8), dim=1)
    # With m = 1 the own view is the only positive and every other candidate a negative: InfoNCE.
    loss = sorted_nce(codes, z2, codes, z1, sorter, m=1, tau=0.3, own_positive=True)
    assert loss.item() == pytest.approx(F.cross_entropy((z2 @ z1.T) / 0.3, torch.arange(6)).item(), rel=1e-5)
    assert torch.isfinite(sorted_nce(codes, z2, codes, z1, sorter, m=3, tau=0.3, own_positive=True))


def test_mined_weight_weighs_each_mined_positive_against_the_own_view_by_hand():
    # Candidates 0..3; the anchor's own view is candidate 0, so the sort mines among candidates 1..3.
    codes_c = torch.tensor([[1.0] * d + [-1.0] * (8 - d) for d in (5, 3, 1, 4)], dtype=torch.float64)
    codes_a = torch.ones(1, 8, dtype=torch.float64)
    assert hamming_distance(codes_a, codes_c).tolist() == [[3.0, 5.0, 7.0, 4.0]]  # 8 - d bits differ
    za = F.normalize(torch.randn(1, 5, dtype=torch.float64), dim=1)
    zc = F.normalize(torch.randn(4, 5, dtype=torch.float64), dim=1)
    c = (zc @ za.T).flatten().tolist()
    tau = 0.4

    def term(p, negs, weights=None):
        neg = sum(w * math.exp(c[k] / tau) for k, w in zip(negs, weights or [1.0] * len(negs)))
        return -math.log(math.exp(c[p] / tau) / (math.exp(c[p] / tau) + neg))

    # distances 3, 5, 7, 4: of the others (1, 2, 3) the nearest is candidate 3 (distance 4); 1 and 2 are negatives
    # weight 0 (a warm-up's first epoch): the mined neighbour is neither a positive nor a negative
    for w in (1.0, 0.5, 0.25, 0.0):
        expected = (term(0, [1, 2]) + w * term(3, [1, 2])) / (1 + w)
        got = sorted_nce(codes_a, za, codes_c, zc, SoftSort(200.0), m=2, tau=tau, own_positive=True,
                         mined_weight=w).item()
        assert got == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="mined_weight must be >= 0"):
        sorted_nce(codes_a, za, codes_c, zc, SoftSort(200.0), m=2, own_positive=True, mined_weight=-0.5)

    # near: of the others by distance (3 at 4, 1 at 5, 2 at 7) the ones right after the mined ones weigh near_weight
    # as negatives (0: left out); with m = 1 nothing is mined and the near band starts at the nearest other
    for sorter in (SoftSort(200.0), TorchSort(200.0)):
        def loss(m, near, near_weight):
            return sorted_nce(codes_a, za, codes_c, zc, sorter, m=m, tau=tau, own_positive=True, mined_weight=0.5,
                              near=near, near_weight=near_weight).item()
        assert loss(2, 1, 0.0) == pytest.approx((term(0, [2]) + 0.5 * term(3, [2])) / 1.5, rel=1e-6)
        assert loss(2, 1, 2.0) == pytest.approx((term(0, [1, 2], [2, 1]) + 0.5 * term(3, [1, 2], [2, 1])) / 1.5,
                                                rel=1e-6)
        assert loss(1, 1, 0.0) == pytest.approx(term(0, [1, 2]), rel=1e-6)
        assert loss(1, 2, 0.0) == pytest.approx(term(0, [2]), rel=1e-6)
        assert loss(1, 1, 3.0) == pytest.approx(term(0, [3, 1, 2], [3, 1, 1]), rel=1e-6)
    with pytest.raises(ValueError, match="near and near_weight must be >= 0"):
        sorted_nce(codes_a, za, codes_c, zc, SoftSort(200.0), m=2, own_positive=True, near=-1)


@pytest.mark.parametrize("near_weight", [0.0, 3.0])
def test_near_band_without_its_gradient_weighs_the_same_but_sends_the_codes_none(near_weight):
    torch.manual_seed(2)
    h = torch.randn(8, 16, requires_grad=True)
    codes = torch.tanh(h)  # soft codes: distances differentiable in h
    z1 = F.normalize(torch.randn(8, 6), dim=1).requires_grad_()
    z2 = F.normalize(torch.randn(8, 6), dim=1)

    def run(near_grad):
        h.grad = None
        # own view the only positive (m = 1): the near band is the sort's only road to the codes
        loss = sorted_nce(codes, z2, codes, z1, TorchSort(0.5), m=1, tau=0.3, own_positive=True, near=3,
                          near_weight=near_weight, near_grad=near_grad)
        loss.backward(retain_graph=True)
        return loss.item(), 0.0 if h.grad is None else h.grad.abs().sum().item()

    (with_grad, g_with), (without, g_without) = run(True), run(False)
    assert with_grad == pytest.approx(without, rel=1e-9)
    assert g_with > 0 and g_without == 0


def test_mined_weight_warms_up_linearly_from_zero_by_hand():
    assert [mined_weight_at(e, 0.5, 4) for e in range(6)] == [0.0, 0.125, 0.25, 0.375, 0.5, 0.5]
    assert mined_weight_at(0, 0.5, 0) == 0.5  # no warm-up: the full weight from the first epoch


def test_nt_xent_matches_simclr_definition():
    torch.manual_seed(2)
    a, b = torch.randn(4, 8), torch.randn(4, 8)
    z = F.normalize(torch.cat([a, b]), dim=1)
    total = 0.0
    for i in range(8):
        pos = (i + 4) % 8
        den = sum(math.exp((z[i] @ z[j]).item() / 0.5) for j in range(8) if j != i)
        total += -math.log(math.exp((z[i] @ z[pos]).item() / 0.5) / den)
    assert nt_xent(a, b, 0.5).item() == pytest.approx(total / 8, rel=1e-5)
    assert CodeNTXent(0.5)(a, None, b, None).item() == pytest.approx(total / 8, rel=1e-5)


def test_negative_temperature_is_rejected():
    c = torch.ones(3, 8)
    with pytest.raises(ValueError, match="tau must be > 0"):
        sorted_nce(c, c, c, c, SoftSort(1.0), tau=-0.1)
