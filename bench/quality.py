"""Retrieval quality of NSH against the baselines, on one backbone's features and one split (issue #5).

    python bench/quality.py --config conf/cifar10_quick.yaml            # 3 seeds x 16/32/64 bits
    python bench/quality.py --config conf/cifar10_quick.yaml --quick    # 1 seed, 32 bits, small database
    python bench/quality.py --config conf/cifar10_quick.yaml --tag cifar10_160px data.image_size=160 --methods ITQ NSH
    python bench/quality.py --config conf/fashion_mnist.yaml --tag fashion_mnist_64px_finetuned --finetune 8 ...
    python bench/quality.py ... --tag fashion_mnist_160px --bits 16 --methods 'NSH ...' --add  # into that section

Every method sees the same frozen-backbone features of the same NSH.md §3 split: the plain view of the
training, query and database images, plus the config's cached augmented views for the trained methods.
- float: cosine on the features themselves (top k), the ceiling codes approach.
- LSH (random rotation, thresholds at the training medians, as faiss.IndexLSH), PCA + sign (faiss.PCAMatrix),
  ITQ (faiss.ITQTransform): fitted on the training features.
- NT-Xent on codes (the core of CIBHash) and NSH in several forms: trained by nsh.training.fit, the epoch
  chosen by validation mAP only; the test queries are touched once, by the chosen model.
- With --finetune N, every trained method also gets a second stage: the whole model (backbone included) trained N
  more epochs on online views, from the method's best frozen-backbone epoch, its codes made from the images; the
  epoch again chosen on validation. Its row is the method's name with FINETUNED appended.

Each trained run lives in runs/quality/<tag>/<method>_b<bits>_s<seed> and resumes (or is reused) when the
bench is run again. Results: docs/results/<tag>.json and P-R plots, docs/results.md (rendered from every
json there), and one MLflow parent run per bench with a child run per (method, bits, seed). A call replaces its
section, unless --add: then its rows join the section's others (a call trains every method it names at every
length it names, so forms meant for one length each go in one call per length). Calls may --add to one section
at the same time (two processes splitting the seeds, say): each merges and writes under one lock.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import torch
from filelock import FileLock

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import gpu_results  # noqa: E402
from bench.cli import cpu_name, pick, with_whole_names  # noqa: E402
from bench.score import encode_splits, split_codes  # noqa: E402
from nsh import checkpoint as ckpt_io  # noqa: E402
from nsh import plots, tracking  # noqa: E402
from nsh.codes import pack  # noqa: E402
from nsh.config import load_config  # noqa: E402
from nsh.features import backbone_features, digest  # noqa: E402
from nsh.metrics import cosine_map_at_k, evaluate  # noqa: E402
from nsh.training import LocalSession, fit, load_data, load_feature_rows, validation_k  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"

# name -> config overrides (trained methods) or None (fitted on features)
# Every trained method names its whole loss, so that it means the same thing whatever the preset's defaults are.
PAPER = ["loss.m=1", "loss.own_positive=false", "loss.code_weight=0", "loss.tau=0.3", "loss.steepness=0.5"]
OWN_MINED = ["loss.m=2", "loss.own_positive=true", "loss.code_weight=0.5"]
# NSH tuned alike with the lr 8e-3 baseline under feature dropout (sessions 8 and 9); the forms differ in m and steepness
TUNED = ["loss.sorter=torchsort", "loss.own_positive=true", "loss.code_weight=1.0", "loss.tau=0.5",
         "data.feature_dropout=0.5", "train.lr=0.008", "train.batch_size=128"]
# the best of NSH's 16-bit search on Lite2's features (below), which session 30 also ran under other training settings
SEARCHED_16 = [*TUNED, "loss.m=3", "loss.tau=0.23", "loss.steepness=0.09", "loss.code_tau=0.19",
               "loss.code_weight=1.25", "loss.mined_weight=0.3"]
# the best at 16 bits on Fashion-MNIST's validation before warm-ups (session 12), which sessions 28 and 31 extend
LIGHT_MINED = [*TUNED, "loss.m=3", "loss.steepness=0.05", "loss.code_tau=0.2", "loss.mined_weight=0.25"]
METHODS: dict[str, list[str] | None] = {
    "LSH": None,
    "PCA + sign": None,
    "ITQ": None,
    "NT-Xent on codes (CIBHash core)": ["loss.name=nt_xent", "loss.tau=0.3"],
    # the baseline at the temperature the NSH presets use, so that the comparison does not hinge on tau alone
    "NT-Xent on codes, tau 0.5": ["loss.name=nt_xent", "loss.tau=0.5"],
    # feature-space augmentation on the cached views: the strongest baseline found on validation (session 7)
    "NT-Xent on codes, tau 0.5, feature dropout 0.5": ["loss.name=nt_xent", "loss.tau=0.5", "data.feature_dropout=0.5"],
    # the same at the learning rate that NSH with dropout needs: its best on validation too (session 8)
    "NT-Xent on codes, tau 0.5, feature dropout 0.5, lr 8e-3": ["loss.name=nt_xent", "loss.tau=0.5",
                                                                "data.feature_dropout=0.5", "train.lr=0.008"],
    # and at a colder temperature, which 16-bit codes prefer (validation, seed 0: 0.544 at tau 0.2 and 0.3 against
    # 0.538 at 0.5; session 11)
    "NT-Xent on codes, tau 0.2, feature dropout 0.5, lr 8e-3": ["loss.name=nt_xent", "loss.tau=0.2",
                                                                "data.feature_dropout=0.5", "train.lr=0.008"],
    # the two best of the baseline's own 16-trial search on Lite2's features at 16 bits, the twin of NSH's below
    # (seed 0, validation: 0.592 and 0.585 against 0.583 at tau 0.2; conf/sweep_cifar10_lite2_16bits_ntxent.yaml,
    # session 18)
    "NT-Xent on codes, tau 0.3, feature dropout 0.45, lr 4e-3, batch 128": [
        "loss.name=nt_xent", "loss.tau=0.3", "data.feature_dropout=0.45", "train.lr=0.004", "train.batch_size=128"],
    "NT-Xent on codes, tau 0.27, feature dropout 0.55, lr 7e-3": ["loss.name=nt_xent", "loss.tau=0.27",
                                                                  "data.feature_dropout=0.55", "train.lr=0.007"],
    # the best of the same search at 32 bits (seed 0, validation: 0.631 against 0.621 for tau 0.27 above; NSH's own
    # 32-bit search found nothing above its m = 4 / steepness 0.05 form; docs/sweeps/cifar10_lite2_32bits_*.csv)
    "NT-Xent on codes, tau 0.29, feature dropout 0.55, lr 4.5e-3, batch 128": [
        "loss.name=nt_xent", "loss.tau=0.29", "data.feature_dropout=0.55", "train.lr=0.0045", "train.batch_size=128"],
    # the two best of the baseline's own 16-trial search on Fashion-MNIST's features at 16 bits, the twin of NSH's
    # (seed 0, validation: 0.748 and 0.742 against 0.736 for the Lite2-searched form above;
    # conf/sweep_fashion_mnist_16bits_ntxent.yaml, session 32): half the feature dropout that Lite2's search chose.
    # Over 5 seeds the first falls below the Lite2-searched form on validation, which stays the pick
    "NT-Xent on codes, tau 0.3, feature dropout 0.25, lr 4.6e-3, batch 128": [
        "loss.name=nt_xent", "loss.tau=0.3", "data.feature_dropout=0.25", "train.lr=0.0046", "train.batch_size=128"],
    "NT-Xent on codes, tau 0.26, feature dropout 0.23, lr 5.5e-3, batch 128": [
        "loss.name=nt_xent", "loss.tau=0.26", "data.feature_dropout=0.23", "train.lr=0.0055", "train.batch_size=128"],
    # the best of the same search at 32 bits (seed 0, validation: 0.763 against 0.760 for its second;
    # docs/sweeps/fashion_mnist_32bits_ntxent.csv, session 42)
    "NT-Xent on codes, tau 0.18, feature dropout 0.45, lr 9e-3, batch 128": [
        "loss.name=nt_xent", "loss.tau=0.18", "data.feature_dropout=0.45", "train.lr=0.009", "train.batch_size=128"],
    # the best of the same search at 64 bits (seed 0, validation: 0.774 against 0.771 for its second;
    # docs/sweeps/fashion_mnist_64bits_ntxent.csv, session 43)
    "NT-Xent on codes, tau 0.25, feature dropout 0.5, lr 3.6e-3, batch 128": [
        "loss.name=nt_xent", "loss.tau=0.25", "data.feature_dropout=0.5", "train.lr=0.0036", "train.batch_size=128"],
    "NSH softsort, paper form": ["loss.sorter=softsort", *PAPER],
    "NSH torchsort, paper form": ["loss.sorter=torchsort", *PAPER],
    "NSH torchsort, own view + 1 mined + code NT-Xent": ["loss.sorter=torchsort", *OWN_MINED, "loss.tau=0.3",
                                                         "loss.steepness=0.5"],
    # a softer sort and a warmer SortedNCE: the best region of the validation sweeps (docs/measurements.md)
    "NSH torchsort, own view + 1 mined + code NT-Xent, tau 0.5, steepness 0.1": [
        "loss.sorter=torchsort", *OWN_MINED, "loss.tau=0.5", "loss.steepness=0.1"],
    # the same with feature dropout, which NSH only profits from at a higher learning rate (validation, session 7)
    "NSH torchsort, own view + 1 mined + code NT-Xent, tau 0.5, steepness 0.1, feature dropout 0.5, lr 8e-3": [
        "loss.sorter=torchsort", *OWN_MINED, "loss.tau=0.5", "loss.steepness=0.1", "data.feature_dropout=0.5",
        "train.lr=0.008"],
    # more mined positives, an equal code term and smaller batches under dropout: ahead of the lr 8e-3 baseline on
    # validation in seeds 0 and 1 (0.500 / 0.497 against 0.491 / 0.487, 32 bits, session 8)
    "NSH torchsort, own view + 2 mined + code NT-Xent 1.0, tau 0.5, steepness 0.1, feature dropout 0.5, lr 8e-3, "
    "batch 128": [*TUNED, "loss.m=3", "loss.steepness=0.1"],
    # the form above with a softer sort: the best at 16 bits on validation (seeds 0 and 1: 0.477 / 0.476 against
    # 0.476 / 0.467 at steepness 0.1 and 0.462 / 0.467 for the lr 8e-3 baseline, session 9)
    "NSH torchsort, own view + 2 mined + code NT-Xent 1.0, tau 0.5, steepness 0.05, feature dropout 0.5, lr 8e-3, "
    "batch 128": [*TUNED, "loss.m=3", "loss.steepness=0.05"],
    # and with a third mined positive: the best at 32 and 64 bits on validation (seeds 0 and 1; at 64 bits 0.512 /
    # 0.510 against 0.501 / 0.502 at m = 3 and steepness 0.1, 0.499 / 0.500 for the lr 8e-3 baseline; session 9)
    "NSH torchsort, own view + 3 mined + code NT-Xent 1.0, tau 0.5, steepness 0.05, feature dropout 0.5, lr 8e-3, "
    "batch 128": [*TUNED, "loss.m=4", "loss.steepness=0.05"],
    # m = 3 and steepness 0.1 with the code term colder (code tau 0.2 instead of 0.3): the best at 16 bits on
    # validation (seeds 0 and 1: 0.561 / 0.557 against 0.551 / 0.544; code tau 0.15, 0.25 and 0.5 worse; session 11)
    "NSH torchsort, own view + 2 mined + code NT-Xent 1.0 at code tau 0.2, SortedNCE tau 0.5, steepness 0.1, "
    "feature dropout 0.5, lr 8e-3, batch 128": [*TUNED, "loss.m=3", "loss.steepness=0.1", "loss.code_tau=0.2"],
    # the same colder code term on the softer-sort forms (seed 0, Fashion-MNIST validation: 0.760 against 0.756 at 32
    # bits with m = 3, 0.772 against 0.766 at 64 bits with m = 4; session 11)
    "NSH torchsort, own view + 2 mined + code NT-Xent 1.0 at code tau 0.2, SortedNCE tau 0.5, steepness 0.05, "
    "feature dropout 0.5, lr 8e-3, batch 128": [*TUNED, "loss.m=3", "loss.steepness=0.05", "loss.code_tau=0.2"],
    "NSH torchsort, own view + 3 mined + code NT-Xent 1.0 at code tau 0.2, SortedNCE tau 0.5, steepness 0.05, "
    "feature dropout 0.5, lr 8e-3, batch 128": [*TUNED, "loss.m=4", "loss.steepness=0.05", "loss.code_tau=0.2"],
    # the mined positives weighed below the own view (loss.mined_weight; seed 0, Fashion-MNIST validation: 0.745 /
    # 0.743 at weights 0.25 / 0.5 against 0.731 at 16 bits, 0.761 / 0.769 against 0.760 at 32; session 12)
    "NSH torchsort, own view + 2 mined at weight 0.5 + code NT-Xent 1.0 at code tau 0.2, SortedNCE tau 0.5, "
    "steepness 0.05, feature dropout 0.5, lr 8e-3, batch 128": [*TUNED, "loss.m=3", "loss.steepness=0.05",
                                                              "loss.code_tau=0.2", "loss.mined_weight=0.5"],
    "NSH torchsort, own view + 2 mined at weight 0.25 + code NT-Xent 1.0 at code tau 0.2, SortedNCE tau 0.5, "
    "steepness 0.05, feature dropout 0.5, lr 8e-3, batch 128": [*TUNED, "loss.m=3", "loss.steepness=0.05",
                                                               "loss.code_tau=0.2", "loss.mined_weight=0.25"],
    # the weight-0.25 form (16 bits) and the m = 4 form (32 and 64 bits) with their mined positives warmed up from
    # weight 0 (loss.mined_warmup; Fashion-MNIST 160 px, 16 bits, validation seeds 0 / 1: 0.740 / 0.747 over 10 epochs,
    # 0.747 / 0.740 over 20, against 0.739 / 0.743 without; docs/variants_fashion_mnist_160px_16_warmup_seed*.json,
    # session 28)
    **{f"NSH torchsort, own view + {mined} warmed up over {e} epochs + code NT-Xent 1.0 at code tau 0.2, SortedNCE "
       f"tau 0.5, steepness 0.05, feature dropout 0.5, lr 8e-3, batch 128": [*form, f"loss.mined_warmup={e}"]
       for mined, form in (("2 mined at weight 0.25", LIGHT_MINED),
                           ("3 mined", [*TUNED, "loss.m=4", "loss.steepness=0.05", "loss.code_tau=0.2"]))
       for e in (10, 20)},
    # a third mined positive, weighed down: m = 4 was the best at 64 bits on validation before mined_weight existed.
    # Fashion-MNIST 64 px, 64 bits, frozen heads, validation seeds 0 / 1 (section fashion_mnist_64px_screen64, session
    # 16): weight 0.25 0.767 / 0.764, 0.5 0.763 / 0.764, 1 0.766 / 0.765; m = 3 at 0.25 0.765 / 0.764 (session 14)
    "NSH torchsort, own view + 3 mined at weight 0.25 + code NT-Xent 1.0 at code tau 0.2, SortedNCE tau 0.5, "
    "steepness 0.05, feature dropout 0.5, lr 8e-3, batch 128": [*TUNED, "loss.m=4", "loss.steepness=0.05",
                                                               "loss.code_tau=0.2", "loss.mined_weight=0.25"],
    "NSH torchsort, own view + 3 mined at weight 0.5 + code NT-Xent 1.0 at code tau 0.2, SortedNCE tau 0.5, "
    "steepness 0.05, feature dropout 0.5, lr 8e-3, batch 128": [*TUNED, "loss.m=4", "loss.steepness=0.05",
                                                              "loss.code_tau=0.2", "loss.mined_weight=0.5"],
    # on EfficientNet-Lite2's features Lite0's 16-bit form (m = 3, steepness 0.1, code tau 0.2) ties NT-Xent at 16 bits;
    # screened there (validation, seeds 0 and 1: 0.582 and 0.592 against 0.581 for that form and 0.586 for NT-Xent;
    # with seed 2 the code-weight-2 form is level with NT-Xent, section cifar10_160px_lite2_screen16; session 17)
    "NSH torchsort, own view + 2 mined at weight 0.5 + code NT-Xent 1.0 at code tau 0.2, SortedNCE tau 0.5, "
    "steepness 0.1, feature dropout 0.5, lr 8e-3, batch 128": [*TUNED, "loss.m=3", "loss.steepness=0.1",
                                                             "loss.code_tau=0.2", "loss.mined_weight=0.5"],
    "NSH torchsort, own view + 2 mined + code NT-Xent 2.0 at code tau 0.2, SortedNCE tau 0.5, steepness 0.1, "
    "feature dropout 0.5, lr 8e-3, batch 128": [*TUNED, "loss.m=3", "loss.steepness=0.1", "loss.code_tau=0.2",
                                                "loss.code_weight=2.0"],
    # the two best of a 16-trial Ray Tune search over NSH's loss on Lite2's features at 16 bits (seed 0, validation:
    # 0.602 and 0.600 against 0.584 for the code-weight-2 form; conf/sweep_cifar10_lite2_16bits.yaml, session 18):
    # both run SortedNCE colder than any form above
    "NSH torchsort, own view + 2 mined at weight 0.3 + code NT-Xent 1.25 at code tau 0.19, SortedNCE tau 0.23, "
    "steepness 0.09, feature dropout 0.5, lr 8e-3, batch 128": SEARCHED_16,
    "NSH torchsort, own view + 1 mined + code NT-Xent 1.6 at code tau 0.16, SortedNCE tau 0.21, steepness 0.13, "
    "feature dropout 0.5, lr 8e-3, batch 128": [*TUNED, "loss.m=2", "loss.tau=0.21", "loss.steepness=0.13",
                                                "loss.code_tau=0.16", "loss.code_weight=1.6"],
    # the two best of the same search on Fashion-MNIST's features at 16 bits, the first on that dataset (seed 0,
    # validation: 0.746 and 0.745 against 0.740 for the bench's pick there; conf/sweep_fashion_mnist_16bits.yaml,
    # session 32): warm SortedNCE and a steeper sort, where Lite2's CIFAR-10 search went cold. The search fixed
    # dropout and rate, so each form also runs at those of the baseline's twin search (dropout 0.25, lr 4.6e-3).
    # The 3-mined form there is validation's pick at 16 bits on Fashion-MNIST over 5 seeds
    **{f"NSH torchsort, own view + {mined} + code NT-Xent {rest}, feature dropout {d}, lr {lr}, batch 128": [
           *TUNED, *form, f"data.feature_dropout={d}", f"train.lr={float(lr)}"]
       for mined, rest, form in (
           ("1 mined at weight 0.9 warmed up over 10 epochs",
            "3.1 at code tau 0.22, SortedNCE tau 0.65, steepness 0.35",
            ["loss.m=2", "loss.mined_weight=0.9", "loss.mined_warmup=10", "loss.code_weight=3.1", "loss.code_tau=0.22",
             "loss.tau=0.65", "loss.steepness=0.35"]),
           ("3 mined at weight 0.9", "0.67 at code tau 0.2, SortedNCE tau 0.9, steepness 0.22",
            ["loss.m=4", "loss.mined_weight=0.9", "loss.code_weight=0.67", "loss.code_tau=0.2", "loss.tau=0.9",
             "loss.steepness=0.22"]))
       for d, lr in (("0.5", "8e-3"), ("0.25", "4.6e-3"))},
    # the best of the same search at 32 bits (seed 0, validation: 0.765 against 0.761 for its second;
    # docs/sweeps/fashion_mnist_32bits_nsh.csv, session 42)
    "NSH torchsort, own view + 2 mined at weight 0.8 warmed up over 10 epochs + code NT-Xent 1.1 at code tau 0.18, "
    "SortedNCE tau 0.7, steepness 0.045, feature dropout 0.5, lr 8e-3, batch 128": [
        *TUNED, "loss.m=3", "loss.mined_weight=0.8", "loss.mined_warmup=10", "loss.code_weight=1.1",
        "loss.code_tau=0.18", "loss.tau=0.7", "loss.steepness=0.045"],
    # the best of the same search at 64 bits (seed 0, validation: 0.772 against 0.771 for its second;
    # docs/sweeps/fashion_mnist_64bits_nsh.csv, session 43)
    "NSH torchsort, own view + 3 mined at weight 0.16 + code NT-Xent 2.7 at code tau 0.21, SortedNCE tau 0.21, "
    "steepness 0.15, feature dropout 0.5, lr 8e-3, batch 128": [
        *TUNED, "loss.m=4", "loss.mined_weight=0.16", "loss.code_weight=2.7", "loss.code_tau=0.21", "loss.tau=0.21",
        "loss.steepness=0.15"],
    # a searched baseline's own settings (Lite2's at 16 bits: tau 0.29, dropout 0.55, lr 4.5e-3; Fashion-MNIST's: tau
    # 0.3, dropout 0.45, lr 4e-3; batch 128) with SortedNCE added beside its NT-Xent, in the sort form of that
    # dataset's NSH pick: as the code weight grows this becomes that baseline, so it asks whether the sort adds to the
    # best baseline rather than to settings tuned for NSH (session 30)
    **{f"NSH torchsort, own view + 2 mined at weight {mw} + code NT-Xent {w} at code tau {ct}, SortedNCE tau {t}, "
       f"steepness {st}, feature dropout {d}, lr {lr}, batch 128": [
           "loss.sorter=torchsort", "loss.own_positive=true", "loss.m=3", f"loss.mined_weight={mw}", f"loss.tau={t}",
           f"loss.steepness={st}", f"loss.code_weight={w}", f"loss.code_tau={ct}", f"data.feature_dropout={d}",
           f"train.lr={float(lr)}", "train.batch_size=128"]
       for mw, t, st, ct, d, lr, weights in (("0.3", "0.23", "0.09", "0.29", "0.55", "4.5e-3", (1.25, 2.5, 5)),
                                             ("0.25", "0.5", "0.05", "0.3", "0.45", "4e-3", (1.0, 2.5)))
       for w in weights},
    # the weight-0.3 form under other training settings, since its search fixed them and the baseline's did not:
    # the searched baseline's (dropout 0.55, lr 4.5e-3), a faster and a slower rate, more and less dropout (session 30)
    **{f"NSH torchsort, own view + 2 mined at weight 0.3 + code NT-Xent 1.25 at code tau 0.19, SortedNCE tau 0.23, "
       f"steepness 0.09, feature dropout {d}, lr {lr}, batch 128": [
           *SEARCHED_16, f"data.feature_dropout={d}", f"train.lr={float(lr)}"]
       for d, lr in (("0.55", "4.5e-3"), ("0.5", "1.2e-2"), ("0.6", "8e-3"), ("0.4", "8e-3"))},
    # the 16-bit picks of Lite2's CIFAR-10 and Lite0's Fashion-MNIST features with the candidates ranked right after
    # the mined ones (loss.near) left out of the negatives, or pushed harder: in a batch of 128 about 12 others share
    # the anchor's class, the nearest codes most often, yet they are also the hardest negatives. Both ways lowered
    # Lite2's 16-bit validation alike, which pointed at the sort's gradient through the band's membership, hence the
    # forms without it; the spared one is validation's pick at 32 bits on Lite2 (session 31)
    **{f"NSH torchsort, own view + 2 mined at weight {mined}, the next {g} "
       f"{'spared' if w == 0 else f'weighing {w} as negatives'}{'' if grad else ' without the band gradient'}, "
       f"+ code NT-Xent {rest}": [*form, f"loss.near={g}", f"loss.near_weight={w}",
                                  *([] if grad else ["loss.near_grad=false"])]
       for mined, rest, form in (
           ("0.3", "1.25 at code tau 0.19, SortedNCE tau 0.23, steepness 0.09, feature dropout 0.5, lr 8e-3, batch 128",
            SEARCHED_16),
           ("0.25 warmed up over 10 epochs", "1.0 at code tau 0.2, SortedNCE tau 0.5, steepness 0.05, feature dropout "
            "0.5, lr 8e-3, batch 128", [*LIGHT_MINED, "loss.mined_warmup=10"]))
       for g, w, grad in ((3, 0, True), (10, 0, True), (10, 2, True), (10, 4, True), (10, 0, False), (10, 4, False))},
    "NSH softsort, own view + 1 mined + code NT-Xent": ["loss.sorter=softsort", *OWN_MINED, "loss.tau=0.3",
                                                        "loss.steepness=0.5"],
}
QUICK = ["data.database_per_class=1000", "data.cache_views=2"]
# Stage 2 under --finetune: online views instead of the cache, heads at lr 1e-3 and the backbone 10x slower, keeping
# its pretrained BatchNorm statistics (model.bn_stats' default). With batch statistics both methods fell below their
# frozen heads from the first epoch (docs/measurements.md, "Fine-tuning on the CPU").
FINETUNE = ["data.cache_views=0", "model.freeze_backbone=false", "data.feature_dropout=0", "data.augment_on=device",
            "train.lr=0.001", "train.backbone_lr=0.0001"]
FINETUNED = ", then fine-tuned"


def slug(name: str) -> str:
    full = "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")
    # a cut name gets a hash of the whole: two methods that share 48 first characters must not share runs
    return full if len(full) <= 48 else full[:40] + "_" + hashlib.sha1(name.encode()).hexdigest()[:7]


def run_overrides(shared: list[str], method: list[str] | None, forced: list[str], bits: int, seed: int) -> list[str]:
    """One run's config overrides, later ones winning: the bench's shared ones (the command line's plain overrides
    among them), the method's own settings, then --set's, which a control needs to change a setting that some
    methods fix (a batch size) in every method alike."""
    return shared + (method or []) + forced + [f"model.nbits={bits}", f"train.seed={seed}"]


def view_seed_arg(value: str) -> int | str:
    """--view-seed's value: a number, or 'seed'."""
    if value == "seed":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is no view seed: give a number, or 'seed' for one draw of the "
                                         "views per training seed") from None


def labelled(name: str, forced: list[str]) -> str:
    """A trained method's row name under --set or --finetune-set: its own name, then what they changed."""
    return f"{name} [set {' '.join(forced)}]" if forced else name


def sign_codes(x: np.ndarray) -> np.ndarray:
    return pack(np.where(x > 0, 1, -1))


def fitted_encoder(name: str, train: np.ndarray, nbits: int, seed: int):
    """A function features -> packed codes, fitted on the training features with faiss."""
    d = train.shape[1]
    if name == "LSH":
        rot = faiss.RandomRotationMatrix(d, nbits)
        rot.init(seed)
        thresholds = np.median(rot.apply(train), axis=0)
        return lambda x: sign_codes(rot.apply(x) - thresholds)
    if name == "PCA + sign":
        pca = faiss.PCAMatrix(d, nbits)
        pca.train(train)
        return lambda x: sign_codes(pca.apply(x))
    if name == "ITQ":
        itq = faiss.ITQTransform(d, nbits, True)
        itq.itq.seed = seed
        itq.train(train)
        return lambda x: sign_codes(itq.apply(x))
    raise ValueError(name)


def plain_features(cfg, corpus, split, log) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """split name -> (float32 features of the plain view, labels), bad items dropped."""
    out = {}
    if corpus.kind == "features":
        for s in ("train", "query", "database"):
            f, kept = load_feature_rows(corpus, split[s], log)
            out[s] = f, corpus.labels[kept]
        return out
    model = ckpt_io.build_model(cfg)
    idx = np.concatenate([split[s] for s in ("train", "query", "database")])
    feats = backbone_features(model, corpus, idx, cfg.data.cache_dir, cfg.data.image_size, log=log).astype(np.float32)
    lo = 0
    for s in ("train", "query", "database"):
        f, labels = feats[lo: lo + len(split[s])], corpus.labels[split[s]]
        lo += len(split[s])
        ok = ~np.isnan(f).any(1)
        out[s] = np.ascontiguousarray(f[ok]), labels[ok]
    return out


def feature_progress(log, prefix: str):
    """A run's log that passes on only its backbone-feature lines: caching the views of a new size takes many
    minutes and must show progress, while the epoch lines of a hundred runs would bury the table."""
    def forward(msg: str) -> None:
        if msg.startswith("backbone features"):
            log(f"{prefix}: {msg}")
    return forward


@torch.no_grad()
def encode_features(model, x: np.ndarray) -> np.ndarray:
    """Packed codes of backbone feature rows through a trained model's hash head."""
    return pack(torch.cat([model.hash_head(torch.from_numpy(x[i:i + 4096])) for i in range(0, len(x), 4096)]))


def train_and_encode(cfg, feats, log):
    """fit() the config (resuming or reusing its run folder); codes of the best-by-validation epoch."""
    result = fit(cfg, log=log)
    model, _, _ = ckpt_io.load_model(LocalSession(cfg.output_dir).best_checkpoint())
    codes = {s: encode_features(model, feats[s][0]) for s in ("query", "database")}
    info = {"best_val_map": result.best_val_map, "best_epoch": result.best_epoch + 1,
            "epochs": len(result.history), "train_seconds": result.train_seconds, "features": result.features}
    return codes, info


def finetune_and_encode(cfg, log):
    """fit() the fine-tuning config (it names its start in train.resume_from); test codes of its best epoch, made
    from the images by the whole model, under <output_dir>/codes, with their labels (unreadable images dropped)."""
    result = fit(cfg, log=log)
    ckpt = LocalSession(cfg.output_dir).best_checkpoint()
    _, rates = encode_splits(cfg, ckpt, log=log)
    info = {"best_val_map": result.best_val_map, "best_epoch": result.best_epoch + 1,
            "epochs": len(result.history), "train_seconds": result.train_seconds,
            "encode_items_per_s": rates["database"]}
    return split_codes(cfg), info


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--quick", action="store_true", help="1 seed, 32 bits, 1,000 database items per class, 2 views")
    p.add_argument("--seeds", type=int, nargs="+")
    p.add_argument("--bits", type=int, nargs="+")
    p.add_argument("--epochs", type=int, help="default: the config's train.epochs (8 with --quick)")
    p.add_argument("--methods", nargs="+", help="run only methods whose name contains one of these words")
    p.add_argument("--view-seed", type=view_seed_arg, default=0, help="seed of the cached augmented views every "
                   "trained method shares (default 0): another number is another draw of the training views; 'seed' "
                   "gives each training seed its own draw, so that the spread over seeds includes the draw's. Either "
                   "is a section of its own, since its scores do not pool with the default's")
    p.add_argument("--tag", help="name of this bench's results; default <config name>[_quick]")
    p.add_argument("--finetune", type=int, metavar="N", help="then fine-tune every trained method end to end for N "
                   "epochs from its best epoch (see FINETUNE); image datasets only")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                   help="overrides that win over each trained method's own settings and over the fine-tuning "
                   "stage's (FINETUNE), for a control that changes one setting (e.g. train.batch_size) in every method "
                   "alike; plain overrides yield to both. The rows' names say what --set changed")
    p.add_argument("--finetune-set", nargs="+", default=[], metavar="KEY=VALUE",
                   help="the same for the fine-tuning stage alone (e.g. train.backbone_lr, which a frozen backbone "
                   "rejects)")
    p.add_argument("--add", action="store_true", help="add this call's rows to the section (--tag) instead of "
                   "replacing it: a method, length and seed run again replaces its row, the section's other rows "
                   "stay, so forms run at one length each can share a section")
    p.add_argument("overrides", nargs="*", help="config overrides, key=value")
    a = p.parse_intermixed_args()
    methods = {n: METHODS[n] for n in pick(p, METHODS, a.methods, "--methods")}
    seeds = a.seeds or ([0] if a.quick else [0, 1, 2])
    bits = a.bits or ([32] if a.quick else [16, 32, 64])
    base_cfg = load_config(a.config, a.overrides + a.set)
    tag = a.tag or base_cfg.name + ("_quick" if a.quick else "")
    work = ROOT / "runs" / "quality" / tag
    shared = (QUICK if a.quick else []) + a.overrides + [
        f"data.split_file={work / 'split.json'}", f"data.cache_dir={ROOT / 'runs' / 'quality' / 'cache'}",
        "mlflow.experiment=nsh-quality"]
    if a.epochs or a.quick:
        shared.append(f"train.epochs={a.epochs or 8}")
    cfg = load_config(a.config, shared)
    if a.finetune_set and not a.finetune:
        p.error("--finetune-set changes the fine-tuning stage; add --finetune N")
    if a.finetune and cfg.data.dataset == "features":
        p.error("--finetune trains the backbone, and precomputed features have none; drop --finetune")
    # the fine-tuning stage's overrides on top of a run's: the bench's, then what --set and --finetune-set force
    stage2 = FINETUNE + a.set + a.finetune_set
    if a.finetune:  # a bad --finetune-set key fails now, not after the first heads stage
        load_config(a.config, shared + stage2)
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    wall = time.time()

    corpus, split = load_data(cfg)
    feats = plain_features(cfg, corpus, split, log)
    plain = digest(*(feats[s][0] for s in ("train", "query", "database")))
    log(f"plain-view features digest {plain}")
    k = min(cfg.eval.k, len(feats["database"][0]))
    log(f"{tag}: {len(feats['train'][0])} train, {len(feats['query'][0])} queries, {len(feats['database'][0])} "
        f"database items; backbone {cfg.model.backbone} at {cfg.data.image_size} px; mAP@{k}")
    parent = tracking.start_run(cfg, run_name=f"quality:{tag}", tags={"bench": "quality"})
    client = tracking.MlflowClient(tracking.tracking_uri(cfg.mlflow.tracking_uri))

    rows = []
    ceiling = cosine_map_at_k(feats["query"][0], feats["database"][0], feats["query"][1], feats["database"][1], k)
    rows.append({"method": "float features (cosine)", "bits": None, "seed": None, "map": ceiling})
    client.log_metric(parent, "float_cosine_map", ceiling)
    log(f"float features (cosine): mAP@{k} {ceiling:.4f}")
    for b in bits:
        for method_name, extra in methods.items():
            # a row says what ran: a method's name promises its own settings, which --set may have changed
            name = method_name if extra is None else labelled(method_name, a.set + a.finetune_set)
            for s in seeds:
                t = time.time()
                folder = work / f"{slug(name)}_b{b}_s{s}"
                views = s if a.view_seed == "seed" else a.view_seed  # the plain features of `cfg` need none
                run = run_overrides(shared + [f"data.view_seed={views}"], extra, a.set, b, s)
                run_cfg = load_config(a.config, run + [f"output_dir={folder}"])
                if extra is None:
                    enc = fitted_encoder(name, feats["train"][0], b, s)
                    codes, info = {x: enc(feats[x][0]) for x in ("query", "database")}, {}
                else:
                    run_log = feature_progress(log, f"{name}, {b} bits, seed {s}")
                    codes, info = train_and_encode(run_cfg, feats, log=run_log)
                labels = feats["query"][1], feats["database"][1]
                # (row name, config, codes, labels, info, seconds spent before scoring)
                stages = [(name, run_cfg, (codes["query"], codes["database"]), labels, info, time.time() - t)]
                if a.finetune and extra is not None:
                    t = time.time()
                    ft_cfg = load_config(a.config, run + stage2 + [
                        f"train.epochs={a.finetune}", f"output_dir={folder}_ft{a.finetune}",
                        f"train.resume_from={LocalSession(run_cfg.output_dir).best_checkpoint()}"])
                    ft, ft_info = finetune_and_encode(ft_cfg, log=lambda msg: log(f"{name}{FINETUNED}, {b} bits, "
                                                                                   f"seed {s}: {msg}"))
                    stages.append((name + FINETUNED, ft_cfg, (ft["query"].codes, ft["database"].codes),
                                   (ft["query"].labels, ft["database"].labels), ft_info, time.time() - t))
                for method, stage_cfg, (q, db), (q_labels, db_labels), info, spent in stages:
                    t = time.time()
                    m = evaluate(q, db, q_labels, db_labels, k)
                    row = {"method": method, "bits": b, "seed": s, "map": m.map_at_k,
                           "map_tie_aware": m.tie_aware_map_at_k, "precision_h2": m.precision_at_radius2,
                           "pr_area": m.pr_area, **info,
                           "seconds": spent + time.time() - t}
                    if s == seeds[0]:  # in the row, so that an --add call redraws the section's other curves
                        row["pr"] = {"precision": json_floats(m.pr_precision), "recall": json_floats(m.pr_recall)}
                    rows.append(row)
                    child = tracking.start_run(stage_cfg, run_name=f"{method} / {b} bits / seed {s}",
                                               parent_run_id=parent, tags={"bench": "quality", "method": method})
                    for key, v in row.items():
                        if isinstance(v, (int, float)) and key not in ("bits", "seed"):
                            client.log_metric(child, key, float(v))
                    client.set_terminated(child)
                    val = f", val {info['best_val_map']:.4f} at epoch {info['best_epoch']}" if info else ""
                    log(f"{method:52s} {b:3d} bits seed {s}: mAP@{k} {m.map_at_k:.4f} (tie-aware "
                        f"{m.tie_aware_map_at_k:.4f}, P@H<=2 {m.precision_at_radius2:.4f}{val}) {row['seconds']:.0f} s")

    RESULTS.mkdir(parents=True, exist_ok=True)
    record = {
        "tag": tag, "config": a.config,
        "command": "python bench/quality.py " + shlex.join(with_whole_names(sys.argv[1:], "--methods", list(methods))),
        "backbone": f"{cfg.model.backbone} (frozen, pretrained) at {cfg.data.image_size} px, "
                    f"{cfg.data.cache_views} cached augmented views per training image" + (
                        {0: "", "seed": " (each training seed its own draw)"}.get(a.view_seed,
                                                                                f" (view seed {a.view_seed})")) + (
                        f"; rows ending '{FINETUNED}': the whole model, {a.finetune} more epochs from that method's "
                        f"best epoch, on online views ({' '.join(FINETUNE)})" if a.finetune else ""),
        "protocol": {s: len(feats[s][0]) for s in ("train", "query", "database")} | {"k": k},
        "val_k": validation_k(cfg, split), "epochs": cfg.train.epochs, "seeds": seeds, "bits": bits,
        "machine": f"{platform.machine()} ({cpu_name()}), {os.cpu_count()} CPUs, torch {torch.__version__}, "
                   f"{'CUDA ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}",
        "wall_seconds": time.time() - wall, "trained_seconds": sum(r.get("train_seconds", 0.0) for r in rows),
        "mlflow_run_id": parent, "plain_features": plain, "rows": rows,
    }
    try:
        out, record, pictures = written(record, a.add)
    except ValueError as err:
        p.error(str(err))
    for f in [out, ROOT / "docs" / "results.md", *pictures]:
        client.log_artifact(parent, str(f))
    client.set_terminated(parent)
    log(f"wrote {out} and docs/results.md ({record['wall_seconds'] / 60:.1f} min)")


def json_floats(values) -> list[float | None]:
    """A float array as JSON numbers, NaN (precision at a radius that retrieves nothing) as null."""
    return [None if np.isnan(v) else float(v) for v in values]


def pr_curves(rows: list[dict]) -> dict[int, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """bits -> method -> (precision, recall) by Hamming radius, from each method's lowest seed that stored one (rows
    written before session 28 stored none: an --add to such a section draws the rows it ran, and those rerun)."""
    out: dict[int, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for r in sorted((r for r in rows if "pr" in r), key=lambda r: (r["bits"], r["seed"])):
        curve = tuple(np.array(r["pr"][k], dtype=float) for k in ("precision", "recall"))
        out.setdefault(r["bits"], {}).setdefault(r["method"], curve)
    return out


def written(record: dict, add: bool) -> tuple[Path, dict, list[Path]]:
    """Writes the section (joined to the one on disk, with --add), its P-R plots and docs/results.md; returns the
    section's file, the section as written and its plots. Under one lock for all sections: two calls that --add to
    one section at once would otherwise each merge into what the other has not written yet, and one's rows be lost;
    and every call re-renders docs/results.md from all sections."""
    out = RESULTS / f"{record['tag']}.json"
    lock = ROOT / "runs" / "quality" / "results.lock"
    with FileLock(str(lock)):  # filelock makes the folder
        if add and out.is_file():
            record = merged(json.loads(out.read_text()), record)
        pictures = [plots.pr_curve(c, RESULTS / f"{record['tag']}_pr_{b}bits.png",
                                   f"{record['tag']}: P-R by Hamming radius, {b} bits")
                    for b, c in pr_curves(record["rows"]).items()]
        record["plots"] = [p.name for p in pictures]
        out.write_text(json.dumps(record, indent=2))
        render_summary()
    return out, record, pictures


# what a section's numbers mean: rows that differ in any of these do not belong in one table
SECTION_DEFINING = ("config", "backbone", "protocol", "val_k", "epochs")


def merged(old: dict, new: dict) -> dict:
    """The section `new` with the rows of `old` whose method, length and seed `new` did not run (--add)."""
    for key in SECTION_DEFINING:
        if old.get(key) != new[key]:
            raise ValueError(f"--add: section {new['tag']} holds runs with another {key} ({old.get(key)!r}; this "
                             f"call: {new[key]!r}), whose scores would not compare; use another --tag, or drop --add "
                             "to replace the section")
    ran = {(r["method"], r["bits"], r["seed"]) for r in new["rows"]}
    kept = [r for r in old["rows"] if (r["method"], r["bits"], r["seed"]) not in ran and r["bits"] is not None]
    ceiling = [r for r in new["rows"] if r["bits"] is None]
    rows = ceiling + kept + [r for r in new["rows"] if r["bits"] is not None]
    one_build(new["tag"], old.get("plain_features") if kept else None, new.get("plain_features"), rows)
    return {**new, "command": old["command"] + "; then " + new["command"],
            "bits": sorted(set(old["bits"]) | set(new["bits"])), "seeds": sorted(set(old["seeds"]) | set(new["seeds"])),
            "wall_seconds": old["wall_seconds"] + new["wall_seconds"],
            "trained_seconds": sum(r.get("train_seconds", 0.0) for r in rows),
            "mlflow_run_id": f"{old['mlflow_run_id']}, {new['mlflow_run_id']}", "rows": rows}


def one_build(tag: str, old_plain: str | None, new_plain: str | None, rows: list[dict]) -> None:
    """Refuse a section whose rows were scored on two builds of the feature cache (--add after a rebuild, on
    another machine, say): its seeds would differ by more than the seed (sessions 36, 42 re-rolled runs by up to
    0.006), and a pair of methods on one seed would not be like for like. Sections older than the digests pass."""
    fix = ("restore the cache those rows were measured on, or use another --tag and rerun the forms to compare there "
           "(or drop --add to replace the section)")
    if old_plain and new_plain and old_plain != new_plain:
        raise ValueError(f"--add: section {tag}'s rows were scored on plain-view features with digest {old_plain}, "
                         f"this call's are {new_plain}: the feature cache was rebuilt; {fix}")
    by_seed: dict[int, set[str]] = {}
    for r in rows:
        if r.get("features"):
            by_seed.setdefault(r["seed"], set()).add(r["features"])
    mixed = {s: sorted(d) for s, d in by_seed.items() if len(d) > 1}
    if mixed:
        raise ValueError(f"--add: section {tag} would hold runs of one seed trained on different features "
                         f"(digests by seed: {mixed}): the feature cache was rebuilt; {fix}")


# a row's scores on the test queries, each a number per run
TEST_SCORES = ("map", "map_tie_aware", "precision_h2", "pr_area")


def summarize(rows: list[dict]) -> list[dict]:
    """Mean and std over seeds per (method, bits)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["method"], r["bits"]), []).append(r)
    out = []
    for (method, b), rs in groups.items():
        agg = {"method": method, "bits": b, "n": len(rs)}
        for key in (*TEST_SCORES, "best_val_map"):
            vals = [r[key] for r in rs if key in r]
            if vals:
                agg[key] = (float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0)
        out.append(agg)
    return out


def family(method: str) -> str | None:
    """The trained method a bench row is a form of ("NSH", "NT-Xent"); None for the fitted ones and the ceiling."""
    return next((f for f in ("NSH", "NT-Xent") if method.startswith(f)), None)


def validation_choice(agg: list[dict]) -> dict[int, dict[str, dict]]:
    """bits -> family -> the form of that family with the best mean validation mAP: the choice a user would make
    without the test queries, when a section holds several forms of one method."""
    out: dict[int, dict[str, dict]] = {}
    for a in agg:
        f = family(a["method"])
        if f and "best_val_map" in a:
            best = out.setdefault(a["bits"], {}).get(f)
            if best is None or a["best_val_map"][0] > best["best_val_map"][0]:
                out[a["bits"]][f] = a
    return out


def _cell(v) -> str:
    return "" if v is None else f"{v[0]:.4f} ± {v[1]:.4f}"


def features_line(section: dict) -> list[str]:
    """The digests of the features a section was scored on (sections from session 43 on): a rebuilt cache that
    gives the same ones reproduces its runs."""
    if "plain_features" not in section:
        return []
    by_seed = {r["seed"]: r["features"] for r in section["rows"] if r.get("features")}
    seeds = ", ".join(f"seed {s} `{d}`" for s, d in sorted(by_seed.items()))
    return [f"- features (`nsh.features.digest`): plain view `{section['plain_features']}`"
            + (f"; training views with the validation rows: {seeds}" if seeds else "")]


def render_summary() -> None:
    """docs/results.md from every docs/results/*.json: one table per bench, bit lengths side by side."""
    lines = ["# Retrieval quality (`bench/quality.py`)", "",
             "Rendered by `bench/quality.py` from `docs/results/*.json`; each section is one run of the bench, with "
             "its command. mAP@k on the test queries against the database, mean ± sample std over seeds; "
             "the epoch of every trained method was chosen on the validation split only. The runs on lent GPUs "
             "follow the findings; the other runs made outside this bench (the SortedNCE variants, the sweeps) are "
             "in `docs/measurements.md`.", ""]
    findings = RESULTS / "findings.md"  # hand-written reading of the tables, kept across re-renders
    if findings.is_file():
        lines += [findings.read_text().strip(), ""]
    lines += gpu_results.section()
    for path in sorted(RESULTS.glob("*.json")):
        r = json.loads(path.read_text())
        agg = summarize(r["rows"])
        bits = r["bits"]
        # sections written before session 15 lack it: their rows timed the call, not the run
        trained = (f" (its runs trained for {r['trained_seconds'] / 60:.0f} min, here or in the earlier calls it "
                   "reused)" if "trained_seconds" in r else "")
        lines += [f"## {r['tag']}", "", f"- command: `{r['command']}`", f"- backbone: {r['backbone']}",
                  f"- split: {r['protocol']}; {r['epochs']} epochs; seeds {r['seeds']}; epoch chosen by validation "
                  f"mAP@{r['val_k']}",
                  f"- machine: {r['machine']}; wall time {r['wall_seconds'] / 60:.1f} min{trained}; "
                  f"MLflow run `{r['mlflow_run_id']}`", *features_line(r), ""]
        for metric, title in (("map", f"mAP@{r['protocol']['k']}"), ("map_tie_aware", "tie-aware mAP"),
                              ("precision_h2", "P@H≤2"), ("pr_area", "area under the P–R curve (whole database)"),
                              ("best_val_map", "best validation mAP")):
            body = []
            for method in dict.fromkeys(a["method"] for a in agg):
                if method.startswith("float"):
                    if metric == "map":
                        ceiling = next(a for a in agg if a["method"] == method)["map"][0]
                        body.append(f"| {method} | " + " | ".join(f"{ceiling:.4f}" for _ in bits) + " |")
                    continue
                cells = [_cell(next((a.get(metric) for a in agg if a["method"] == method and a["bits"] == b), None))
                         for b in bits]
                if any(cells):
                    body.append(f"| {method} | " + " | ".join(cells) + " |")
            if body:  # sections written before a metric existed have no table of it
                lines += [f"**{title}**", "", "| method | " + " | ".join(f"{b} bits" for b in bits) + " |",
                          "|---|" + "---|" * len(bits), *body, ""]
        choice = validation_choice(agg)
        forms = [family(m) for m in {a["method"] for a in agg}]
        if any(f and forms.count(f) > 1 for f in forms):
            lines += ["**Chosen on validation** (per length and method, the form with the best mean validation mAP; "
                      "its test mAP)", ""]
            lines += [f"- {b} bits: " + "; ".join(f"{f} `{a['method']}` (val {a['best_val_map'][0]:.4f}): "
                                                  f"{_cell(a['map'])}" for f, a in sorted(choice[b].items()))
                      for b in bits if b in choice]
            lines.append("")
        lines += [f"![P-R, {p}](results/{p})" for p in r["plots"]] + [""]
    (ROOT / "docs" / "results.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
