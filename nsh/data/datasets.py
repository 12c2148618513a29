"""torch Datasets over a Corpus: items (image or feature) with their corpus index.

A broken item is not fatal: `ItemDataset` yields None for it and `collate_skip_bad` drops it from the batch,
recording why, so one corrupt file costs one item, not the job.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from nsh.data.sources import BadItemError, Corpus


class ItemDataset(Dataset):
    def __init__(self, corpus: Corpus, indices: np.ndarray, transform=None):
        self.corpus, self.indices, self.transform = corpus, np.asarray(indices), transform

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        idx = int(self.indices[i])
        try:
            item = self.corpus.load(idx)
        except BadItemError as err:
            return {"bad": str(err), "index": idx}
        return {"x": self.prepare(item, idx), "index": idx}

    def prepare(self, item, idx: int) -> torch.Tensor:
        """A loaded item (image or feature row) -> the tensor the model takes."""
        if self.corpus.kind == "features":
            return torch.from_numpy(np.asarray(item, dtype=np.float32))
        return self.transform(item)


class CachedViews(Dataset):
    """Two different cached views of each item, drawn at random each time from (n, K, D) features.

    `dropout` > 0 also zeroes that fraction of each view's dimensions at random (scaled to keep the mean): the
    only augmentation a feature vector has, and what makes two copies of one precomputed row two views.
    """

    def __init__(self, views: np.ndarray, seed: int = 0, dropout: float = 0.0):
        if views.shape[1] < 2:
            raise ValueError("data.cache_views must be at least 2 to draw two different views")
        if not 0 <= dropout < 1:
            raise ValueError(f"feature dropout {dropout} must be in [0, 1)")
        self.views, self.seed, self.dropout = torch.from_numpy(views), seed, dropout
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.rng = np.random.default_rng([self.seed, epoch])

    def __len__(self):
        return len(self.views)

    def __getitem__(self, i):
        a, b = self.rng.choice(self.views.shape[1], 2, replace=False)
        x = self.views[i, [a, b]].float()
        if self.dropout:
            x = x * torch.from_numpy(self.rng.random(x.shape, dtype=np.float32) >= self.dropout) / (1 - self.dropout)
        return {"x": (x[0], x[1]), "index": i}


def collate_skip_bad(batch):
    good = [b for b in batch if "bad" not in b]
    out = default_collate(good) if good else {"x": None, "index": torch.empty(0, dtype=torch.long)}
    out["bad"] = [(b["index"], b["bad"]) for b in batch if "bad" in b]
    return out


def report_bad(batch: dict, log) -> None:
    """One line per item that collate_skip_bad left out of the batch, naming it and the fix."""
    for _, msg in batch["bad"]:
        log(f"skipping bad item: {msg}")
