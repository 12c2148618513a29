"""Which validation metric ranks trained models as the test metric does? Re-scores a quality bench's runs.

    python bench/validation_depth.py --config conf/cifar10_quick.yaml --tag cifar10_160px_tuned data.image_size=160

For every run folder of runs/quality/<tag> (bench/quality.py), the epoch that run kept is scored four ways:
- val@1000: validation queries against the validation database, cutoff 1000 (the metric before session 10);
- val@scaled: the same with the cutoff scaled to the validation database (nsh.training.scaled_k, validation_k's default);
- val@database: validation queries against the whole database less themselves, cutoff eval.k;
- test: the test queries against the database, cutoff eval.k (what docs/results.md reports).
Prints the means per (bits, method) and, per code length, the correlation of each validation score with the test
score across runs; writes docs/validation_depth_<tag>.json. The validation items are database items, so their
features are among the bench's cached ones and nothing is recomputed.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.quality import ROOT, encode_features, plain_features  # noqa: E402
from nsh import checkpoint as ckpt_io  # noqa: E402
from nsh.config import load_config  # noqa: E402
from nsh.metrics import map_at_k  # noqa: E402
from nsh.training import LocalSession, load_data, scaled_k  # noqa: E402

SCORES = ("val@1000", "val@scaled", "val@database", "test")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--tag", required=True, help="the quality bench's tag: runs/quality/<tag>")
    p.add_argument("overrides", nargs="*", help="the bench's config overrides, key=value (data.image_size=...)")
    a = p.parse_intermixed_args()
    work = ROOT / "runs" / "quality" / a.tag
    if not (work / "split.json").is_file():
        p.error(f"{work} holds no quality bench; run bench/quality.py with --tag {a.tag} first")
    cfg = load_config(a.config, a.overrides + [f"data.split_file={work / 'split.json'}", "data.view_seed=0",
                                               f"data.cache_dir={ROOT / 'runs' / 'quality' / 'cache'}"])
    corpus, split = load_data(cfg)
    feats = plain_features(cfg, corpus, split, print)
    if len(feats["database"][0]) != len(split["database"]):
        raise SystemExit("unreadable database items: the validation rows cannot be found among the features")
    row = {int(i): r for r, i in enumerate(split["database"])}
    vq, vdb = (np.array([row[int(i)] for i in split[s]]) for s in ("val_query", "val_db"))
    rest = np.setdiff1d(np.arange(len(row)), vq)
    labels = feats["database"][1]
    k = min(cfg.eval.k, len(row))
    scaled = scaled_k(cfg, split)

    runs = []
    for folder in sorted(f for f in work.iterdir() if f.is_dir()):
        best = LocalSession(folder, log=lambda *_: None).best_checkpoint()
        if best is None:
            continue
        model, _, _ = ckpt_io.load_model(best)
        db, q = (encode_features(model, feats[s][0]) for s in ("database", "query"))
        runs.append({"run": folder.name,
                     "val@1000": map_at_k(db[vq], db[vdb], labels[vq], labels[vdb], min(1000, len(vdb))),
                     "val@scaled": map_at_k(db[vq], db[vdb], labels[vq], labels[vdb], scaled),
                     "val@database": map_at_k(db[vq], db[rest], labels[vq], labels[rest], k),
                     "test": map_at_k(q, db, feats["query"][1], labels, k)})
        print(json.dumps(runs[-1]), flush=True)

    groups = defaultdict(list)
    for r in runs:
        method, bits = re.fullmatch(r"(.*)_b(\d+)_s\d+", r["run"]).groups()
        groups[int(bits), method].append(r)
    print(f"\nmeans (val@scaled: cutoff {scaled}; val@database and test: cutoff {k})")
    for (bits, method), rs in sorted(groups.items()):
        print(f"{bits:3d} bits {method[:48]:48s} " + " ".join(f"{s} {np.mean([r[s] for r in rs]):.4f}" for s in SCORES))
    correlation = {}
    for bits in sorted({b for b, _ in groups}):
        rs = [r for (b, _), g in groups.items() if b == bits for r in g]
        test = [r["test"] for r in rs]
        correlation[bits] = {s: float(np.corrcoef([r[s] for r in rs], test)[0, 1]) for s in SCORES[:-1]}
        print(f"{bits:3d} bits, {len(rs)} runs, correlation with test: "
              + ", ".join(f"{s} {c:+.2f}" for s, c in correlation[bits].items()))
    out = ROOT / "docs" / f"validation_depth_{a.tag}.json"
    out.write_text(json.dumps({"tag": a.tag, "command": "python bench/validation_depth.py " + " ".join(sys.argv[1:]),
                               "cutoffs": {"val@scaled": scaled, "val@database": k, "test": k},
                               "correlation": correlation, "runs": runs}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
