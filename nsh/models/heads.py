"""The two heads on top of the backbone feature: binary codes and l2-normalised latents."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def sign_ste(h: torch.Tensor, surrogate: str = "tanh") -> torch.Tensor:
    """Codes in {-1, +1} forward (0 maps to +1, never 0); gradient of tanh(h) or of the identity backward."""
    hard = torch.where(h >= 0, 1.0, -1.0).to(h.dtype)
    soft = torch.tanh(h) if surrogate == "tanh" else h
    # hard + (soft - soft) is exactly hard in the forward pass; only soft carries a gradient.
    return hard + (soft - soft.detach())


def mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, out_dim))


class HashHead(nn.Module):
    def __init__(self, in_dim: int, nbits: int, hidden: int = 1024, surrogate: str = "tanh"):
        super().__init__()
        if surrogate not in ("tanh", "identity"):
            raise ValueError(f"unknown surrogate gradient {surrogate!r}; choose 'tanh' or 'identity'")
        self.net, self.surrogate = mlp(in_dim, hidden, nbits), surrogate

    def logits(self, f: torch.Tensor) -> torch.Tensor:
        return self.net(f)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return sign_ste(self.net(f), self.surrogate)


class LatentHead(nn.Module):
    def __init__(self, in_dim: int, dim: int = 128, hidden: int = 1024):
        super().__init__()
        self.net = mlp(in_dim, hidden, dim)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(f), dim=1)
