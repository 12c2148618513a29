"""Training views per second from the input pipeline alone: the loader's augmentation against DeviceAugment.

    python bench/augment_rate.py --root data/cifar10-jpeg --workers 8 --size 224 --out rate.json

Both forms deliver the same thing, a batch of two augmented uint8 views per image on the model's device (the
GPU when there is one): `loader` augments in DataLoader workers (train_load), `device` has the workers decode and
resize only (eval_load) and augments there (DeviceAugment). No model runs: this is the rate the input side can feed.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from nsh.data import (DeviceAugment, ItemDataset, TwoViews, build_corpus, collate_skip_bad, eval_load,  # noqa: E402
                      train_load)


def views_per_second(dataset, workers: int, device, make_views) -> float:
    loader = DataLoader(dataset, batch_size=256, num_workers=workers, collate_fn=collate_skip_bad,
                        pin_memory=device.type == "cuda")
    start, views = time.time(), 0
    for batch in loader:
        x = make_views(batch["x"])
        x.float().sum().item()  # waits for the device, as a training step would
        views += len(x)
    return views / (time.time() - start)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--root", default=None, help="CIFAR-10 (JPEG tree or torchvision pickles)")
    p.add_argument("--images", type=int, default=4096)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    corpus = build_corpus("cifar10", a.root)
    idx = np.arange(a.images)
    augment = DeviceAugment(a.size)

    def on_device(x):
        x = x.to(device, non_blocking=True)
        return torch.cat([augment(x), augment(x)])

    forms = {
        "loader": (ItemDataset(corpus, idx, TwoViews(train_load(a.size))),
                   lambda x: torch.cat(x).to(device, non_blocking=True)),
        "device": (ItemDataset(corpus, idx, eval_load(a.size)), on_device),
    }
    out = {"device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu", "size": a.size,
           "workers": a.workers, "images": a.images}
    for name, (dataset, make_views) in forms.items():
        out[f"{name}_views_per_s"] = views_per_second(dataset, a.workers, device, make_views)
        print(f"{name}: {out[f'{name}_views_per_s']:.0f} views/s", flush=True)
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
