"""Sorters: hard limits equal real sorting, ties share the top-m mass, gradients exist at the defaults."""
import pytest
import torch

from nsh.sorters import SoftSort, TorchSort, build_sorter, soft_top_m


def test_softsort_permutation_is_hard_sort_when_steep():
    d = torch.tensor([[3.0, 0.0, 2.0, 1.0]])
    p = SoftSort(steepness=100.0).permutation(d)[0]
    assert torch.equal(p.argmax(1), torch.tensor([1, 3, 2, 0]))
    assert torch.allclose(p.sum(1), torch.ones(4))


def test_torchsort_ranks_are_hard_ranks_when_steep():
    d = torch.tensor([[3.0, 0.0, 2.0, 1.0]])
    assert torch.allclose(TorchSort(steepness=100.0).ranks(d), torch.tensor([[4.0, 1.0, 3.0, 2.0]]))


def test_soft_top_m_is_hard_clamp_on_distinct_ranks():
    ranks = torch.tensor([[3.0, 1.0, 4.0, 2.0, 5.0]])
    for m in (1, 2, 3):
        assert torch.allclose(soft_top_m(ranks, m), (m + 1 - ranks).clamp(0, 1), atol=1e-6)


def test_soft_top_m_shares_mass_among_tied_candidates():
    # A three-way tie at the top gets the average rank 2: the fixed clamp(m+1-R) would give every one
    # of them weight 0 and drop the anchor; the soft top-m gives each 1/3 and still sums to m = 1.
    ranks = torch.tensor([[2.0, 2.0, 2.0, 4.0, 5.0]])
    w = soft_top_m(ranks, 1)
    assert torch.allclose(w, torch.tensor([[1 / 3, 1 / 3, 1 / 3, 0.0, 0.0]]), atol=1e-6)
    assert (2 - ranks).clamp(0, 1).sum() == 0  # the naive clamp really does lose the anchor


def test_soft_top_m_keeps_sum_m_under_perturbation():
    ranks = torch.rand(3, 7, dtype=torch.float64, requires_grad=True) * 3 + 1
    w = soft_top_m(ranks, 2)
    assert torch.allclose(w.sum(1), torch.full((3,), 2.0, dtype=torch.float64))
    (g,) = torch.autograd.grad(w.sum(), ranks)  # implicit theta gradient: total mass does not move
    assert g.abs().max() < 1e-9


def bisected_top_m(ranks: torch.Tensor, m: int, iters: int = 100) -> torch.Tensor:
    """Naive reference: find theta with sum clamp(theta + 1 - R, 0, 1) = m by bisection."""
    r = ranks.double()
    lo, hi = r.min(1, keepdim=True).values - 1, r.max(1, keepdim=True).values
    for _ in range(iters):
        mid = (lo + hi) / 2
        too_many = (mid + 1 - r).clamp(0, 1).sum(1, keepdim=True) > m
        hi, lo = torch.where(too_many, mid, hi), torch.where(too_many, lo, mid)
    return ((lo + hi) / 2 + 1 - r).clamp(0, 1)


@pytest.mark.parametrize("n, m, steepness", [(9, 1, 0.3), (64, 2, 1.0), (256, 3, 10.0), (4096, 1, 1.0)])
def test_soft_top_m_matches_a_long_bisection_on_real_soft_ranks(n, m, steepness):
    torch.manual_seed(n)
    dist = torch.randint(0, 65, (5, n)).float()  # 64-bit Hamming distances: many ties, as in training
    ranks = TorchSort(steepness).ranks(dist)
    w = soft_top_m(ranks, m)
    assert torch.allclose(w.double(), bisected_top_m(ranks, m), atol=1e-5)
    assert torch.allclose(w.sum(1), torch.full((5,), float(m)), atol=1e-4)


def test_unknown_sorter_and_bad_steepness_are_rejected():
    with pytest.raises(ValueError, match="unknown sorter 'quick'"):
        build_sorter("quick", 1.0)
    with pytest.raises(ValueError, match="steepness must be > 0"):
        build_sorter("softsort", 0.0)
