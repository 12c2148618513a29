"""The GPU runs' part of docs/results.md: every `bench/gpu_full.py` result kept in docs/gpu/, one row each, and per
setting the mean ± sample std of its test scores over seeds.

A run's setting is its file name without the seed and session marks (`cifar10_twostage_nsh_32bit_seed2_tuned_h200`
-> `cifar10_twostage_nsh_32bit_tuned_h200`): the sessions that made the runs named them for what they ran, and today's
config file cannot say what an older run's defaults were. Repeat runs of one seed are averaged before the seeds are.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

GPU = Path(__file__).resolve().parents[1] / "docs" / "gpu"
METRICS = (("test_map_at_1000", "test mAP@1000"), ("test_map_at_1000_tie_aware", "tie-aware"),
           ("test_precision_h2", "P@H≤2"))


def gpu_runs(folder: Path = GPU) -> list[dict]:
    """One dict per training run in folder (name, setting, bits, seed, stage and its scores), sorted by name. The
    input-pipeline and sorter timings kept beside them have no overrides and are no training runs."""
    runs = []
    for path in sorted(folder.glob("*.json")):
        r = json.loads(path.read_text())
        if "overrides" not in r:
            continue
        given = dict(o.split("=", 1) for o in r["overrides"])  # the last of a repeated key is the one that counted
        if given.get("model.freeze_backbone") == "true":
            stage = "heads, frozen backbone"
        elif "train.resume_from" in given:
            stage = "fine-tuned from the heads"
        else:
            stage = "fine-tuned from the pretrained backbone"
        runs.append({
            "name": path.stem, "setting": re.sub(r"_(seed|session)\d+", "", path.stem), "device": r["device"],
            # conf/cifar10_full.yaml's nbits and TrainConfig's seed, which every run without these overrides used
            "bits": int(given.get("model.nbits", 64)), "seed": int(given.get("train.seed", 0)), "stage": stage,
            "epochs_run": r["epochs_run"], "best_epoch": r["best_epoch"] + 1, "best_val_map": r["best_val_map"],
            **{k: r[k] for k, _ in METRICS if k in r}})
    return runs


def by_setting(runs: list[dict]) -> dict[str, dict]:
    """setting -> {"seeds": [...], metric: (mean, sample std)} over the seeds that have test scores."""
    per_setting: dict[str, dict[int, list[dict]]] = {}
    for r in runs:
        if METRICS[0][0] in r:
            per_setting.setdefault(r["setting"], {}).setdefault(r["seed"], []).append(r)
    out: dict[str, dict] = {}
    for setting, per_seed in per_setting.items():
        agg: dict = {"seeds": sorted(per_seed)}
        for key, _ in METRICS:
            vals = [np.mean([r[key] for r in rs]) for _, rs in sorted(per_seed.items())]
            agg[key] = (float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0)
        out[setting] = agg
    return out


def section(folder: Path = GPU) -> list[str]:
    """Markdown lines: the per-setting table, then every run."""
    runs = gpu_runs(folder)
    if not runs:
        return []
    lines = ["## GPU runs (`bench/gpu_full.py` on lent machines, `docs/gpu/*.json`)", "",
             "CIFAR-10 at 224 px, EfficientNet-Lite0, the bench's split; how each was run and what it showed is in "
             "`docs/measurements.md` (its sections with \"H100\" or \"H200\"). Per setting, mean ± sample std over "
             "seeds (repeat runs of a seed averaged first):", "",
             "| setting | seeds | " + " | ".join(title for _, title in METRICS) + " |",
             "|---|---|" + "---|" * len(METRICS)]
    for setting, agg in by_setting(runs).items():
        one = len(agg["seeds"]) == 1  # no spread to state
        lines.append(f"| {setting} | {', '.join(map(str, agg['seeds']))} | "
                     + " | ".join(f"{agg[k][0]:.4f}" + ("" if one else f" ± {agg[k][1]:.4f}") for k, _ in METRICS)
                     + " |")
    lines += ["", "Every run (a first stage stopped after training, `--validation-only`, has no test scores):", "",
              "| run | device | stage | bits | seed | best val mAP (epoch of) | "
              + " | ".join(title for _, title in METRICS) + " |",
              "|---|---|---|---|---|---|" + "---|" * len(METRICS)]
    for r in runs:
        lines.append(f"| {r['name']} | {r['device']} | {r['stage']} | {r['bits']} | {r['seed']} | "
                     f"{r['best_val_map']:.4f} ({r['best_epoch']} of {r['epochs_run']}) | "
                     + " | ".join(f"{r[k]:.4f}" if k in r else "" for k, _ in METRICS) + " |")
    return lines + [""]
