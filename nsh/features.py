"""Backbone features computed once and cached: K augmented views per training image, or the plain view.

With a frozen backbone the heads are all that trains, so the backbone's work on each view can be done
once. Views are drawn from a per-(item, view) seed, so the cache is reproducible, and it is written in
chunks, so an interrupted run resumes where it stopped. Runs that share a cache folder (trials of a sweep,
side-by-side bench runs) take turns on a file lock: the first computes an entry, the others then read it.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock
from torch.utils.data import DataLoader

from nsh.data import Corpus, ItemDataset, collate_skip_bad, eval_view, report_bad, train_view
from nsh.models import Hasher

CHUNK = 2048


class _SeededViews(ItemDataset):
    """`views` augmented views of each image, view k of item i drawn from its own seed (seed, i, k)."""

    def __init__(self, corpus: Corpus, indices: np.ndarray, transform, views: int, seed: int):
        super().__init__(corpus, indices, transform)
        self.views, self.seed = views, seed

    def prepare(self, image, idx: int) -> torch.Tensor:
        out = []
        for k in range(self.views):
            torch.manual_seed((self.seed * 1_000_003 + idx * 131 + k) % (2**63))
            out.append(self.transform(image))
        return torch.stack(out)


def cache_key(corpus: Corpus, indices: np.ndarray, model: Hasher, size: int, views: int, seed: int) -> str:
    h = hashlib.sha256(json.dumps([corpus.name, model.backbone_name, size, views, seed, len(corpus)]).encode())
    h.update(np.asarray(indices, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


@torch.no_grad()
def backbone_features(model: Hasher, corpus: Corpus, indices: np.ndarray, cache_dir: str | Path, size: int,
                      views: int = 0, seed: int = 0, batch_size: int = 128, device: str = "cpu",
                      workers: int = 0, log=print) -> np.ndarray:
    """(n, views, D) float16 features of `views` augmented views, or (n, D) of the plain view if views == 0.

    A bad item gets an all-NaN row (callers drop it) and is reported once.
    """
    augmented = views > 0
    transform = train_view(size, model.mean, model.std) if augmented else eval_view(size, model.mean, model.std)
    n_views = views if augmented else 1
    folder = Path(cache_dir) / cache_key(corpus, indices, model, size, views, seed)
    final = folder / "features.npy"
    if final.is_file():
        return np.load(final)
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if final.is_file():  # computed by another run while this one waited for the lock
            return np.load(final)
        feats = _compute(model, corpus, indices, folder, transform, n_views, seed, batch_size, device, workers, log)
        feats = feats if augmented else feats[:, 0]
        np.save(folder / "features.tmp.npy", feats)
        (folder / "features.tmp.npy").replace(final)
        for part in folder.glob("part_*.npy"):
            part.unlink()
        return feats


def _compute(model: Hasher, corpus: Corpus, indices: np.ndarray, folder: Path, transform, n_views: int, seed: int,
             batch_size: int, device: str, workers: int, log) -> np.ndarray:
    """(n, n_views, D) features, chunk by chunk: chunks already on disk are kept, each new one is saved."""
    model.backbone.to(device).eval()
    chunks = range(0, len(indices), CHUNK)
    start, computed = time.time(), 0
    for c, lo in enumerate(chunks):
        part = folder / f"part_{c:05d}.npy"
        if part.is_file():
            continue
        chunk = indices[lo: lo + CHUNK]
        row_of = {int(i): r for r, i in enumerate(chunk)}
        out = np.full((len(chunk), n_views, model.feature_dim), np.nan, dtype=np.float16)
        ds = _SeededViews(corpus, chunk, transform, n_views, seed)
        for batch in DataLoader(ds, batch_size=batch_size, num_workers=workers, collate_fn=collate_skip_bad):
            report_bad(batch, log)
            if batch["x"] is not None:
                f = model.features(batch["x"].flatten(0, 1).to(device)).float().cpu().numpy()
                rows = [row_of[int(i)] for i in batch["index"]]
                out[rows] = f.reshape(len(rows), n_views, -1).astype(np.float16)
        tmp = folder / f".part_{c:05d}.tmp.npy"
        np.save(tmp, out)
        tmp.replace(part)
        done, computed = min(lo + CHUNK, len(indices)), computed + len(chunk)
        rate = computed * n_views / max(time.time() - start, 1e-9)  # chunks found on disk took no time
        log(f"backbone features: {done}/{len(indices)} items x {n_views} view(s), {rate:.0f} images/s")
    return np.concatenate([np.load(folder / f"part_{c:05d}.npy") for c in range(len(chunks))])
