"""`nsh COMMAND --config FILE [key=value ...]`: one entry point over the pipelines.

    nsh train    --config conf/cifar10_quick.yaml      # Ray Train, MLflow, registry
    nsh tune     --config conf/sweep_cifar10.yaml      # Ray Tune sweep (--resume to finish one)
    nsh encode   --config conf/cifar10_quick.yaml      # Ray Data -> Parquet codes
    nsh evaluate --config conf/cifar10_quick.yaml      # mAP@k, P-R, P@H<=2, plots
    nsh search   --codes runs/cifar10_quick/codes/database --image my.jpg -k 10
"""
from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "train": "train a model (pipelines/train.py)",
    "tune": "sweep hyperparameters (pipelines/tune.py)",
    "encode": "encode a corpus to Parquet codes (pipelines/encode.py)",
    "evaluate": "evaluate encoded codes (pipelines/evaluate.py)",
    "search": "nearest items to an image, id or code (pipelines/search.py)",
}


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        width = max(map(len, COMMANDS))
        print(__doc__.strip() + "\n\ncommands:\n" + "\n".join(f"  {c.ljust(width)}  {h}" for c, h in COMMANDS.items()))
        print("\n`nsh COMMAND --help` lists the command's options; every config key is documented in README.md.")
        sys.exit(0 if argv and argv[0] in ("-h", "--help") else 2)
    module = importlib.import_module(f"pipelines.{argv[0]}")
    sys.argv = [f"nsh {argv[0]}", *argv[1:]]
    module.main(argv[1:])


if __name__ == "__main__":
    main()
