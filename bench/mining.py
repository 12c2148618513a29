"""How often is the positive that NSH's sort mines of the anchor's class? A diagnostic of trained runs.

    python bench/mining.py --runs runs/quality/fashion_mnist_60ep/*_b64_s0 [--checkpoint latest] [--batch 4992]

SortedNCE (with the own view as a positive and m = 2) takes each anchor's nearest code in the batch, by
Hamming distance, as one more positive. Labels are never used in training, so that positive helps only when
it is of the anchor's class. For each run's best checkpoint this encodes two cached training views of every
item and, over random batches of the configured size, reports the share of anchors whose nearest other
candidate has the anchor's label (tied nearest candidates count by their share of the tie), against the
share a random candidate would give.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nsh.checkpoint import load_model  # noqa: E402
from nsh.features import backbone_features  # noqa: E402
from nsh.losses import hamming_distance  # noqa: E402
from nsh.training import LocalSession, cache_dir, load_data, view_seed  # noqa: E402


def mined_precision(codes_1: torch.Tensor, codes_2: torch.Tensor, labels: np.ndarray, batch: int, batches: int,
                    seed: int = 0) -> tuple[float, float]:
    """(share of mined nearest candidates of the anchor's class, the same for a random candidate)."""
    rng = np.random.default_rng(seed)
    hits, chance = [], []
    for _ in range(batches):
        idx = rng.choice(len(labels), batch, replace=False)
        dist = hamming_distance(codes_2[idx], codes_1[idx])
        dist.fill_diagonal_(float("inf"))  # the own view is a positive already: the sort mines among the others
        nearest = dist == dist.min(dim=1, keepdim=True).values
        same = torch.from_numpy(labels[idx][:, None] == labels[idx][None, :])
        hits.append(((nearest & same).sum(1) / nearest.sum(1)).mean().item())
        chance.append(((same.sum(1) - 1) / (batch - 1)).float().mean().item())
    return float(np.mean(hits)), float(np.mean(chance))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", required=True, help="run folders (output_dir of trained runs)")
    p.add_argument("--batches", type=int, default=50)
    p.add_argument("--batch", type=int, help="candidates per draw (default: the run's train.batch_size); the "
                   "training set's size asks how good the neighbours would be if the sort saw every item")
    p.add_argument("--checkpoint", choices=["best", "latest"], default="best",
                   help="the best-by-validation epoch, or the last one trained")
    a = p.parse_args()
    for run in a.runs:
        session = LocalSession(run)
        ckpt = session.best_checkpoint() if a.checkpoint == "best" else session.latest_checkpoint()
        model, cfg, state = load_model(ckpt)
        corpus, split = load_data(cfg)
        views = backbone_features(model, corpus, split["train"], cache_dir(cfg), cfg.data.image_size,
                                  views=cfg.data.cache_views, seed=view_seed(cfg), log=lambda *_: None)
        keep = ~np.isnan(views.reshape(len(views), -1)).any(1)
        with torch.no_grad():
            c1, c2 = (model.hash_head(torch.from_numpy(views[keep, k].astype(np.float32))) for k in (0, 1))
        hit, chance = mined_precision(c1, c2, corpus.labels[split["train"]][keep], a.batch or cfg.train.batch_size, a.batches)
        print(json.dumps({"run": run, "loss": cfg.loss.name, "nbits": cfg.model.nbits, "epoch": state["epoch"] + 1,
                          "mined_same_class": hit, "random_same_class": chance}), flush=True)


if __name__ == "__main__":
    main()
