"""Losses as pure functions over tensors, each with a thin nn.Module that holds its hyperparameters.

SortedNCE (NSH, Yu et al., IJCAI 2022). For anchor i, the candidates are sorted by the Hamming distance of
their codes to the anchor's code; the first m are positives, the rest negatives, and for each positive
    l = -log( e^{c_p/tau} / (e^{c_p/tau} + sum_neg e^{c_k/tau}) ),   c = cosine of latents.
Written over weighted slots (nsh.sorters.Slots) so one formula serves both sorters: hard 0/1 weights give
the paper's mean over positives; soft top-m weights give the torchsort form of NSH.md.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nsh.sorters import Slots, Sorter, cosine_matrix


def hamming_distance(codes_a: torch.Tensor, codes_b: torch.Tensor) -> torch.Tensor:
    """(a, d_b) and (c, d_b) codes in {-1, +1} -> (a, c) Hamming distances, differentiable in the codes."""
    return (codes_a.shape[1] - codes_a @ codes_b.T) / 2


def nce_over_slots(slots: Slots, tau: float) -> torch.Tensor:
    """Mean over anchors of the positive-weighted mean of -log(e^{c_p/t} / (e^{c_p/t} + sum_k neg_k e^{c_k/t}))."""
    logits = slots.sim / tau
    top = logits.detach().max(dim=1, keepdim=True).values
    neg_mass = (slots.neg * torch.exp(logits - top)).sum(dim=1, keepdim=True)
    log_neg = torch.log(neg_mass.clamp_min(torch.finfo(logits.dtype).tiny)) + top
    per_slot = torch.logaddexp(logits, log_neg) - logits
    per_anchor = (slots.pos * per_slot).sum(dim=1) / slots.pos.sum(dim=1).clamp_min(1e-12)
    return per_anchor.mean()


def sorted_nce(
    codes_anchor: torch.Tensor,
    z_anchor: torch.Tensor,
    codes_cand: torch.Tensor,
    z_cand: torch.Tensor,
    sorter: Sorter,
    m: int = 1,
    tau: float = 0.3,
    own_index: torch.Tensor | None = None,
    own_positive: bool = False,
    mined_weight: float = 1.0,
    near: int = 0,
    near_weight: float = 0.0,
    near_grad: bool = True,
) -> torch.Tensor:
    """SortedNCE for anchors (codes_anchor, z_anchor) against candidates (codes_cand, z_cand).

    own_index[i] is the candidate column holding anchor i's other view (default: i). With own_positive the
    own view is always a positive and is taken out of the sort, which then mines m - 1 more positives
    among the other candidates; without it (the paper's form) the own view is just one more candidate.
    mined_weight weighs each mined positive against the own view in the mean over positives: a mined
    neighbour is of another class in a third to a half of cases (bench/mining.py), the own view never, so
    its pull can be lowered without giving up the sort. At 0 the mined neighbours are neither pulled nor pushed
    away (the start of a warm-up, see mined_weight_at).
    near: the `near` candidates ranked right after the positives weigh near_weight as negatives. They are the
    likeliest to share the anchor's class, so pushing them away may work against retrieval (at 0 they are left
    out, where pulling them, mining more, is wrong as often as they are of another class); they are also the
    hardest negatives, which a weight above 1 pushes harder. Without near_grad the band reweighs the latents'
    negatives only and sends the codes no gradient of its own.
    """
    if tau <= 0:
        raise ValueError(f"SortedNCE temperature tau must be > 0, got {tau}")
    if mined_weight < 0:
        raise ValueError(f"SortedNCE mined_weight must be >= 0, got {mined_weight}")
    if near < 0 or near_weight < 0:
        raise ValueError(f"SortedNCE near and near_weight must be >= 0, got {near} and {near_weight}")
    band = dict(near=near, near_weight=near_weight, near_grad=near_grad)
    dist = hamming_distance(codes_anchor, codes_cand)
    if not own_positive:
        return nce_over_slots(sorter.arrange(dist, z_anchor, z_cand, m, **band), tau)

    a, c = dist.shape
    own = torch.arange(a, device=dist.device) if own_index is None else own_index
    others = torch.ones(a, c, dtype=torch.bool, device=dist.device)
    others[torch.arange(a, device=dist.device), own] = False
    cols = torch.arange(c, device=dist.device).expand(a, c)[others].view(a, c - 1)
    own_sim = F.cosine_similarity(z_anchor, z_cand[own], dim=1)[:, None]
    if m > 1 or near:  # with m = 1 nothing is mined, but the sort still finds the near band
        mined = sorter.arrange(dist.gather(1, cols), z_anchor, z_cand, m - 1, cols=cols, **band)
    else:  # nothing to mine: every other candidate is a negative and the sorter is not needed
        sim = cosine_matrix(z_anchor, z_cand).gather(1, cols)
        mined = Slots(sim=sim, pos=torch.zeros_like(sim), neg=torch.ones_like(sim))
    one, zero = torch.ones_like(own_sim), torch.zeros_like(own_sim)
    slots = Slots(
        sim=torch.cat([own_sim, mined.sim], 1),
        pos=torch.cat([one, mined_weight * mined.pos], 1),
        neg=torch.cat([zero, mined.neg], 1),
    )
    return nce_over_slots(slots, tau)


def mined_weight_at(epoch: int, weight: float, warmup: int) -> float:
    """The mined positives' weight in epoch `epoch` (from 0) of a linear warm-up: 0, weight / warmup, ... weight.

    A function of the epoch alone, so that a resumed run weighs its epochs as the uninterrupted run did.
    """
    return weight if epoch >= warmup else weight * epoch / warmup


def nt_xent(a: torch.Tensor, b: torch.Tensor, tau: float = 0.3) -> torch.Tensor:
    """NT-Xent (SimCLR): each of the 2n views has its other view as positive and the 2n - 2 others as negatives."""
    z = F.normalize(torch.cat([a, b]), dim=1)
    n = a.shape[0]
    sim = (z @ z.T) / tau
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(sim, target)


class SortedNCE(nn.Module):
    """SortedNCE with its hyperparameters; optionally symmetric and with a code-level NT-Xent term."""

    def __init__(self, sorter: Sorter, m: int = 1, tau: float = 0.3, own_positive: bool = False,
                 symmetric: bool = False, code_weight: float = 0.0, code_tau: float = 0.3,
                 mined_weight: float = 1.0, near: int = 0, near_weight: float = 0.0, near_grad: bool = True):
        super().__init__()
        self.sorter, self.m, self.tau, self.mined_weight = sorter, m, tau, mined_weight
        self.near, self.near_weight, self.near_grad = near, near_weight, near_grad
        self.own_positive, self.symmetric = own_positive, symmetric
        self.code_weight, self.code_tau = code_weight, code_tau

    def forward(self, codes_1, z_1, codes_2, z_2, cand_codes_1=None, cand_z_1=None, cand_codes_2=None,
                cand_z_2=None, own_index=None):
        """View 2 anchors sorted against view-1 candidates (and the reverse when symmetric).

        The cand_* tensors default to the local batch; data-parallel training passes the global batch
        gathered from every worker, with own_index locating each local anchor's other view in it.
        """
        cand = (codes_1 if cand_codes_1 is None else cand_codes_1, z_1 if cand_z_1 is None else cand_z_1)
        kw = dict(sorter=self.sorter, m=self.m, tau=self.tau, own_index=own_index, own_positive=self.own_positive,
                  mined_weight=self.mined_weight, near=self.near,
                  near_weight=self.near_weight, near_grad=self.near_grad)
        loss = sorted_nce(codes_2, z_2, *cand, **kw)
        if self.symmetric:
            cand = (codes_2 if cand_codes_2 is None else cand_codes_2, z_2 if cand_z_2 is None else cand_z_2)
            loss = (loss + sorted_nce(codes_1, z_1, *cand, **kw)) / 2
        if self.code_weight:
            loss = loss + self.code_weight * nt_xent(codes_1, codes_2, self.code_tau)
        return loss


class CodeNTXent(nn.Module):
    """The contrastive baseline (the core of CIBHash): NT-Xent between the two views' codes."""

    def __init__(self, tau: float = 0.3):
        super().__init__()
        self.tau = tau

    def forward(self, codes_1, z_1, codes_2, z_2, **_):
        return nt_xent(codes_1, codes_2, self.tau)
