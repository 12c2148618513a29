"""Differentiable sorters: how each anchor's candidates are ordered by Hamming distance, softly.

Both sorters take Hamming distances D (anchors x candidates, in bits) and one knob, `steepness`, in the
same unit for both: per Hamming bit. Sorting D rather than the similarity S = 1 - D/d_b keeps that unit
independent of the code length, so a sweep range means the same thing for each sorter and every d_b.

`Sorter.arrange` turns the order into `Slots`: a similarity per slot and its weight as a positive and as a
negative. SortedNCE (nsh.losses) is written once over slots, so a sorter only decides what a slot is:
- softsort: a slot is a sorted position r; its latent is the soft-permuted mix E_r = P_r . Z of candidate
  latents; positions r < m are positives. Memory grows as anchors x candidates^2.
- torchsort: a slot is a candidate; its soft rank gives a soft membership in the top m. Memory is
  anchors x candidates.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class Slots:
    sim: torch.Tensor  # (anchors, slots): cosine of each slot's latent with the anchor's latent
    pos: torch.Tensor  # (anchors, slots): weight of the slot as a positive
    neg: torch.Tensor  # (anchors, slots): weight of the slot as a negative


class Sorter(ABC):
    name: str

    def __init__(self, steepness: float):
        if not steepness > 0:
            raise ValueError(f"sorter steepness must be > 0 (per Hamming bit), got {steepness}")
        self.steepness = float(steepness)

    @abstractmethod
    def arrange(self, dist: torch.Tensor, z_anchor: torch.Tensor, z_cand: torch.Tensor, m: int,
                cols: torch.Tensor | None = None, near: int = 0, near_weight: float = 0.0,
                near_grad: bool = True) -> Slots:
        """dist (a, c') Hamming distances; z_anchor (a, d) and z_cand (c, d) unit latents.

        The first m sorted slots are positives (m may be 0), the rest negatives; the `near` slots right after the
        positives weigh near_weight as negatives (0: neither positives nor negatives); without near_grad the band's
        membership passes no gradient to the distances, so that it reweighs the latents' negatives only.
        cols (a, c'), if given, says which candidate column each entry of dist refers to (each anchor may see
        a different subset of the candidates); by default c' = c and entry j is candidate j.
        """


class SoftSort(Sorter):
    """SoftSort (Prillo & Eisenschlos, ICML 2020): P[r, j] = softmax_j(-steepness * |sort(D)_r - D_j|)."""

    name = "softsort"

    def permutation(self, dist: torch.Tensor) -> torch.Tensor:
        """(a, c) distances -> (a, c, c) soft permutation matrices, nearest first."""
        ordered = dist.sort(dim=1).values
        return torch.softmax(-self.steepness * (ordered[:, :, None] - dist[:, None, :]).abs(), dim=2)

    def arrange(self, dist, z_anchor, z_cand, m, cols=None, near=0, near_weight=0.0, near_grad=True):
        perm = self.permutation(dist)
        if cols is not None:  # spread each row back over all candidates, zero where the anchor has none
            full = perm.new_zeros(perm.shape[0], perm.shape[1], z_cand.shape[0])
            perm = full.scatter(2, cols[:, None, :].expand_as(perm), perm)
        mixed = torch.einsum("arj,jd->ard", perm, z_cand)
        sim = F.cosine_similarity(mixed, z_anchor[:, None, :], dim=2)
        position = torch.arange(dist.shape[1], device=dist.device).expand_as(sim)
        pos, top = (position < m).to(sim.dtype), (position < m + near).to(sim.dtype)
        return Slots(sim=sim, pos=pos, neg=1.0 - pos + (near_weight - 1.0) * (top - pos))  # hard: no gradient


class TorchSort(Sorter):
    """Soft ranks by torchsort (Blondel et al., ICML 2020), regularization_strength = 1 / steepness."""

    name = "torchsort"

    def ranks(self, dist: torch.Tensor) -> torch.Tensor:
        """(a, c) distances -> soft ranks, 1-based, nearest = 1."""
        import torchsort  # compiled extension: imported where used so the rest of nsh works without it

        # torchsort has no float64 CUDA kernel worth relying on and no half kernel: rank in float32.
        return torchsort.soft_rank(dist.float(), regularization_strength=1.0 / self.steepness).to(dist.dtype)

    def arrange(self, dist, z_anchor, z_cand, m, cols=None, near=0, near_weight=0.0, near_grad=True):
        ranks = self.ranks(dist)
        w = soft_top_m(ranks, m) if m else torch.zeros_like(ranks)
        sim = cosine_matrix(z_anchor, z_cand)
        if cols is not None:
            sim = sim.gather(1, cols)
        band = (soft_top_m(ranks, m + near) if near else w) - w
        return Slots(sim=sim, pos=w, neg=1.0 - w + (near_weight - 1.0) * (band if near_grad else band.detach()))


def soft_top_m(ranks: torch.Tensor, m: int, iters: int = 24) -> torch.Tensor:
    """Soft membership of the top m: w_j = clamp(theta + 1 - R_j, 0, 1) with theta set so that sum_j w_j = m.

    On distinct integer ranks theta = m and this is exactly clamp(m + 1 - R, 0, 1), the hard top m. Unlike
    that clamp with a fixed theta, it still sums to m when ranks tie or are soft: tied candidates (which get
    equal average ranks) share the top-m mass equally instead of all dropping to zero.
    theta is found by bisection without a graph; its gradient is put back by implicit differentiation
    (d theta = mean of dR over the candidates strictly inside the clamp), so sum_j w_j stays m to first order.
    """
    if not 1 <= m < ranks.shape[1]:
        raise ValueError(f"m={m} positives needs at least m+1 candidates per anchor, got {ranks.shape[1]}")
    # theta lies in [s_m - 1, s_m] for the m-th smallest rank s_m: at s_m - 1 only ranks below s_m count,
    # fewer than m of them, each under 1; at s_m the m smallest count 1 each. A bracket of width 1 needs 24
    # bisection steps for a 2^-24 precision, where [min - 1, max] needed 40. Ranks are taken relative to s_m:
    # near rank 2,000 (batch 4,096) a float32 ulp is 1e-4 and dozens of tied weights summed to m only within 0.5%.
    s_m = ranks.detach().topk(m, dim=1, largest=False).values[:, -1:]
    rel = ranks - s_m
    r = rel.detach()
    # While theta <= 0 a candidate with r >= 1 holds no mass: the bisection runs over the others alone, a few
    # dozen per anchor (the ranks below s_m and those tied with it) instead of the whole batch.
    near = r.topk(int((r < 1).sum(dim=1).max()), dim=1, largest=False).values
    lo, hi = torch.full_like(s_m, -1.0), torch.zeros_like(s_m)
    for _ in range(iters):
        mid = (lo + hi) / 2
        too_many = (mid + 1 - near).clamp(0, 1).sum(dim=1, keepdim=True) > m
        hi = torch.where(too_many, mid, hi)
        lo = torch.where(too_many, lo, mid)
    theta = (lo + hi) / 2
    inside = ((theta + 1 - r) > 0) & ((theta + 1 - r) < 1)
    n_inside = inside.sum(dim=1, keepdim=True)
    delta = torch.where(inside, rel - r, torch.zeros_like(rel)).sum(dim=1, keepdim=True)
    theta = theta + delta / n_inside.clamp_min(1)
    return (theta + 1 - rel).clamp(0, 1)


def cosine_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.normalize(a, dim=1) @ F.normalize(b, dim=1).T


SORTERS: dict[str, type[Sorter]] = {cls.name: cls for cls in (SoftSort, TorchSort)}


def build_sorter(name: str, steepness: float) -> Sorter:
    try:
        return SORTERS[name](steepness)
    except KeyError:
        raise ValueError(f"unknown sorter {name!r}; choose one of {sorted(SORTERS)}") from None
