"""Backbone features computed once and cached: K augmented views per training image, or the plain view.

With a frozen backbone the heads are all that trains, so the backbone's work on each view can be done
once. Views are drawn from a per-(item, view) seed, so the cache is reproducible, and it is written in
chunks, so an interrupted run resumes where it stopped. Runs that share a cache folder (trials of a sweep,
side-by-side bench runs) share the work: each chunk has its own file lock, a run computes the chunks no other
run holds, then waits for the rest, and computes itself any chunk whose holder died without saving it: no run
sits idle on a lock while another computes, and each chunk is computed once.
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock, Timeout
from torch.utils.data import DataLoader

from nsh.data import Corpus, ItemDataset, collate_skip_bad, eval_view, report_bad, train_view
from nsh.models import Hasher

CHUNK = 2048
# Runs in threads of one process (a notebook, a test) share torch's global generator: seed-then-draw must be atomic
_GLOBAL_RNG = threading.Lock()


class _SeededViews(ItemDataset):
    """`views` augmented views of each image, view k of item i drawn from its own seed (seed, i, k)."""

    def __init__(self, corpus: Corpus, indices: np.ndarray, transform, views: int, seed: int):
        super().__init__(corpus, indices, transform)
        self.views, self.seed = views, seed

    def prepare(self, image, idx: int) -> torch.Tensor:
        out = []
        for k in range(self.views):
            with _GLOBAL_RNG:  # torchvision's transforms draw from torch's global generator
                torch.manual_seed((self.seed * 1_000_003 + idx * 131 + k) % (2**63))
                out.append(self.transform(image))
        return torch.stack(out)


def digest(*arrays: np.ndarray | torch.Tensor) -> str:
    """A short fingerprint of arrays' exact values (and shapes and dtypes).

    Two runs with the same digest of their features saw bit-identical inputs. A cache rebuilt elsewhere need not
    match: the same backbone on another CPU can round differently, and a frozen-backbone run trained on other
    features is another run, which may score a few thousandths apart (docs/measurements.md, sessions 36, 42).
    """
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a.numpy() if isinstance(a, torch.Tensor) else a)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()[:16]


def cache_key(corpus: Corpus, indices: np.ndarray, model: Hasher, size: int, views: int, seed: int) -> str:
    h = hashlib.sha256(json.dumps([corpus.name, model.backbone_name, size, views, seed, len(corpus)]).encode())
    h.update(np.asarray(indices, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


@torch.no_grad()
def backbone_features(model: Hasher, corpus: Corpus, indices: np.ndarray, cache_dir: str | Path, size: int,
                      views: int = 0, seed: int = 0, batch_size: int = 128, device: str = "cpu",
                      workers: int = 0, log=print, chunk: int = CHUNK) -> np.ndarray:
    """(n, views, D) float16 features of `views` augmented views, or (n, D) of the plain view if views == 0.

    A bad item gets an all-NaN row (callers drop it) and is reported once.
    """
    augmented = views > 0
    folder = Path(cache_dir) / cache_key(corpus, indices, model, size, views, seed)
    builder = _ChunkBuilder(model, corpus, indices, folder, views, seed, size, batch_size, device, workers, log, chunk)
    final = builder.final
    if final.is_file():
        return np.load(final)
    folder.mkdir(parents=True, exist_ok=True)
    starts = range(0, len(indices), chunk)
    for c in starts:  # first pass: the chunks nobody else is computing
        builder.build(c, wait=False)
    for c in starts:  # second pass: wait for the others' chunks, and redo any whose holder died
        builder.build(c, wait=True)
    with FileLock(str(folder) + ".lock"):
        if final.is_file():  # assembled by another run while this one waited
            return np.load(final)
        feats = np.concatenate([np.load(builder.part(c)) for c in starts])
        feats = feats if augmented else feats[:, 0]
        np.save(folder / "features.tmp.npy", feats)
        (folder / "features.tmp.npy").replace(final)
        for leftover in [*folder.glob("part_*.npy"), *folder.glob("part_*.npy.lock")]:
            leftover.unlink()  # final is saved first, so a run that finds a part gone finds final instead
        return feats


class _ChunkBuilder:
    """Computes and saves one chunk of a cache entry at a time, under that chunk's file lock."""

    def __init__(self, model, corpus, indices, folder, views, seed, size, batch_size, device, workers, log, chunk):
        self.model, self.corpus, self.indices, self.folder = model, corpus, indices, folder
        self.final = folder / "features.npy"
        self.n_views, self.seed = max(views, 1), seed
        self.transform = (train_view if views > 0 else eval_view)(size, model.mean, model.std)
        self.batch_size, self.device, self.workers, self.log, self.chunk = batch_size, device, workers, log, chunk
        self.start, self.computed = time.time(), 0

    def part(self, lo: int) -> Path:
        return self.folder / f"part_{lo // self.chunk:05d}.npy"

    def build(self, lo: int, wait: bool) -> None:
        """Make sure the chunk starting at `lo` is on disk; without `wait`, leave it to a run that holds its lock."""
        part = self.part(lo)

        def done() -> bool:  # the entry's final file outlives its parts
            return part.is_file() or self.final.is_file()

        if done():
            return
        try:
            with FileLock(str(part) + ".lock", timeout=-1 if wait else 0):
                if not done():  # saved by the holder this run waited for, unless it died first
                    self._compute(lo, part)
        except Timeout:
            pass

    def _compute(self, lo: int, part: Path) -> None:
        self.model.backbone.to(self.device).eval()
        chunk = self.indices[lo: lo + self.chunk]
        row_of = {int(i): r for r, i in enumerate(chunk)}
        out = np.full((len(chunk), self.n_views, self.model.feature_dim), np.nan, dtype=np.float16)
        ds = _SeededViews(self.corpus, chunk, self.transform, self.n_views, self.seed)
        # its own generator: a loader draws its base seed from the global one, which another thread may have just seeded
        loader = DataLoader(ds, batch_size=self.batch_size, num_workers=self.workers, collate_fn=collate_skip_bad,
                            generator=torch.Generator())
        for batch in loader:
            report_bad(batch, self.log)
            if batch["x"] is not None:
                f = self.model.features(batch["x"].flatten(0, 1).to(self.device)).float().cpu().numpy()
                rows = [row_of[int(i)] for i in batch["index"]]
                out[rows] = f.reshape(len(rows), self.n_views, -1).astype(np.float16)
        tmp = part.with_name(f".{part.stem}.tmp.npy")
        np.save(tmp, out)
        tmp.replace(part)
        self.computed += len(chunk)
        rate = self.computed * self.n_views / max(time.time() - self.start, 1e-9)  # this run's own chunks only
        self.log(f"backbone features: chunk {lo // self.chunk + 1}/{-(-len(self.indices) // self.chunk)} of "
                 f"{len(self.indices)} items x {self.n_views} view(s), {rate:.0f} images/s")
