"""Which input size for a frozen backbone? Cosine mAP of its features on the validation split, and its cost.

    python bench/input_size.py --config conf/cifar10_quick.yaml --sizes 96 128 160 192 224 [key=value ...]

A frozen backbone's features bound what codes trained on them reach (bench/quality.py's float row), and
small images upscaled to different sizes give different features. For each size this reports cosine mAP@k
of the plain view's features, validation queries against the validation database (the test queries are
never touched, so the size can be chosen on it), and the backbone's cost per image on this machine. The
features go to the quality bench's cache (runs/quality/cache), shared with the training runs that use them.
"""
from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nsh import checkpoint as ckpt_io  # noqa: E402
from nsh.config import load_config  # noqa: E402
from nsh.features import backbone_features  # noqa: E402
from nsh.metrics import cosine_map_at_k  # noqa: E402
from nsh.training import load_data, validation_k  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TIMED = 512  # images per size in the timing, through a fresh cache so that nothing is reused


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--sizes", type=int, nargs="+", required=True)
    p.add_argument("--split-file", help="default: the quality bench's split for this config (runs/quality/<name>)")
    p.add_argument("--out", help="default: docs/input_size_<config name>.json")
    p.add_argument("overrides", nargs="*", help="config overrides, key=value")
    a = p.parse_intermixed_args()
    base = load_config(a.config, a.overrides)
    split_file = a.split_file or ROOT / "runs" / "quality" / base.name / "split.json"
    cache = ROOT / "runs" / "quality" / "cache"
    cfg = load_config(a.config, a.overrides + [f"data.split_file={split_file}", f"data.cache_dir={cache}"])
    corpus, split = load_data(cfg)
    model = ckpt_io.build_model(cfg)
    quiet = lambda *_: None  # noqa: E731
    labels = {s: corpus.labels[split[s]] for s in ("val_query", "val_db")}
    k = validation_k(cfg, split)
    rows = []
    for size in a.sizes:
        with tempfile.TemporaryDirectory() as scratch:
            t = time.time()
            backbone_features(model, corpus, split["val_query"][:TIMED], scratch, size, log=quiet)
            ms = (time.time() - t) / min(TIMED, len(split["val_query"])) * 1000
        f = {s: backbone_features(model, corpus, split[s], cache, size, log=quiet).astype(np.float32)
             for s in ("val_query", "val_db")}
        ok = {s: ~np.isnan(f[s]).any(1) for s in f}
        score = cosine_map_at_k(f["val_query"][ok["val_query"]], f["val_db"][ok["val_db"]],
                                labels["val_query"][ok["val_query"]], labels["val_db"][ok["val_db"]], k)
        rows.append({"size": size, "val_cosine_map": score, "ms_per_image": ms})
        print(f"{cfg.data.dataset} {cfg.model.backbone} at {size} px: validation cosine mAP@{k} {score:.4f}, "
              f"{ms:.1f} ms per image", flush=True)
    out = Path(a.out or ROOT / "docs" / f"input_size_{base.name}.json")
    out.write_text(json.dumps({
        "command": "python bench/input_size.py " + shlex.join(sys.argv[1:]), "dataset": cfg.data.dataset,
        "backbone": f"{cfg.model.backbone} (frozen, pretrained)", "k": k,
        "validation": {s: len(split[s]) for s in ("val_query", "val_db")},
        "machine": f"{platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads",
        "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
