"""Compare SortedNCE variants and the NT-Xent-on-codes baseline on the same cached features, by validation mAP.

    python bench/variants.py --config conf/cifar10_quick.yaml [--epochs 20] [--out docs/variants.json]

Each variant is the config plus a few overrides, trained by nsh.training.fit (no Ray) into
<output_dir>/../variants/<name>; the feature cache of the config is reused. Model selection numbers only:
the test queries are not touched.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.cli import pick  # noqa: E402
from nsh.config import load_config  # noqa: E402
from nsh.training import cache_dir, default_split_path, fit  # noqa: E402

PAPER = ["loss.m=1", "loss.own_positive=false", "loss.symmetric=false", "loss.code_weight=0", "loss.tau=0.3",
         "loss.steepness=0.5"]
# the presets' form until session 3 (tau 0.3, steepness 0.5), knobs below; later overrides win
OWN = ["loss.sorter=torchsort", "loss.own_positive=true", "loss.symmetric=false", "loss.tau=0.3", "loss.steepness=0.5"]

# Every variant names its whole loss form, so that it means the same thing whatever the preset's defaults are.
VARIANTS = {
    "softsort, paper form (m=1)": ["loss.sorter=softsort", *PAPER],
    "torchsort, paper form (m=1)": ["loss.sorter=torchsort", *PAPER],
    "torchsort, symmetric": ["loss.sorter=torchsort", *PAPER, "loss.symmetric=true"],
    "torchsort, own view + 1 mined (m=2)": [*OWN, "loss.m=2", "loss.code_weight=0"],
    "torchsort, own view + 3 mined (m=4)": [*OWN, "loss.m=4", "loss.code_weight=0"],
    "torchsort, paper form + code NT-Xent 0.5": ["loss.sorter=torchsort", *PAPER, "loss.code_weight=0.5"],
    "torchsort, own view (m=2) + code NT-Xent 0.5": [*OWN, "loss.m=2", "loss.code_weight=0.5"],
    "torchsort, own view (m=2) + code NT-Xent 1.0": [*OWN, "loss.m=2", "loss.code_weight=1.0"],
    "torchsort, own view (m=2) + code NT-Xent 0.25": [*OWN, "loss.m=2", "loss.code_weight=0.25"],
    "torchsort, own view (m=3) + code NT-Xent 0.5": [*OWN, "loss.m=3", "loss.code_weight=0.5"],
    "torchsort, own view (m=2) + code NT-Xent 0.5, tau 0.2": [*OWN, "loss.m=2", "loss.code_weight=0.5",
                                                              "loss.tau=0.2"],
    "torchsort, own view (m=2) + code NT-Xent 0.5, tau 0.5": [*OWN, "loss.m=2", "loss.code_weight=0.5",
                                                              "loss.tau=0.5"],
    "torchsort, own view (m=2) + code NT-Xent 0.5, steepness 2": [*OWN, "loss.m=2", "loss.code_weight=0.5",
                                                                  "loss.steepness=2"],
    "torchsort, own view (m=2) + code NT-Xent 0.5, steepness 0.1": [*OWN, "loss.m=2", "loss.code_weight=0.5",
                                                                    "loss.steepness=0.1"],
    "baseline: NT-Xent on codes (CIBHash core)": ["loss.name=nt_xent", "loss.tau=0.3"],
    "baseline, tau 0.5": ["loss.name=nt_xent", "loss.tau=0.5"],
}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--only", nargs="*", help="run only variants whose name contains one of these words")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=KEY=VALUE[,KEY=VALUE...]",
                   help="an extra variant to run (NAME without '='), e.g. 'tau 0.5, cw 1=loss.tau=0.5,loss.code_weight=1.0'")
    p.add_argument("--out")
    p.add_argument("overrides", nargs="*")
    a = p.parse_intermixed_args()
    base = load_config(a.config, a.overrides)
    extras = dict(v.split("=", 1) for v in a.variant)
    # with --variant and no --only, only the extra variants run
    chosen = {n: VARIANTS[n] for n in (pick(p, VARIANTS, a.only, "--only") if a.only or not extras else [])}
    chosen.update({n: o.split(",") for n, o in extras.items()})
    configs = {}  # every variant's config is checked before the first one trains
    for name, extra in chosen.items():
        # the overrides are in the folder's name: a rerun with other settings must not resume this one's checkpoint
        digest = hashlib.sha1(json.dumps([a.overrides, extra, a.epochs]).encode()).hexdigest()[:8]
        slug = "".join(c if c.isalnum() else "_" for c in name)[:50] + "_" + digest
        configs[name] = load_config(a.config, a.overrides + extra + [
            f"train.epochs={a.epochs}", f"output_dir={Path(base.output_dir).parent / 'variants' / slug}",
            f"data.cache_dir={cache_dir(base)}", f"data.split_file={default_split_path(base)}"])
    rows = []
    for name, cfg in configs.items():
        t = time.time()
        r = fit(cfg, log=lambda *_: None)
        rows.append({"variant": name, "overrides": chosen[name], "best_val_map": r.best_val_map,
                     "best_epoch": r.best_epoch + 1, "val_k": r.val_k, "seconds": time.time() - t})
        print(f"{name:48s} val mAP@{r.val_k} {r.best_val_map:.4f} (epoch {r.best_epoch + 1}), "
              f"{rows[-1]['seconds']:.0f} s", flush=True)
    if a.out:
        Path(a.out).write_text(json.dumps({"config": a.config, "overrides": a.overrides, "epochs": a.epochs,
                                           "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
