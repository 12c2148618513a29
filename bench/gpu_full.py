"""Full-scale NSH on one GPU without Ray: train (fine-tuned backbone, online augmentation), encode, evaluate.

    python bench/gpu_full.py --config conf/cifar10_full.yaml --out results.json [key=value ...]

This is what a lent GPU machine runs (Ray cannot be installed there): the same nsh.training.fit and
nsh.encoding.ShardEncoder the Ray pipelines wrap. It also times the encoder against the backbone's bare
forward pass on the same batches.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bench.score import encode_splits, scores_on_test  # noqa: E402
from nsh.config import load_config  # noqa: E402
from nsh.training import LocalSession, fit, load_data  # noqa: E402


def log(msg):
    print(msg, flush=True)


def bare_forward_rate(model, size, batch, device, steps=20):
    x = torch.randn(batch, 3, size, size, device=device)
    with torch.no_grad():
        for _ in range(3):
            model.encode(x)
        torch.cuda.synchronize()
        t = time.time()
        for _ in range(steps):
            model.encode(x)
        torch.cuda.synchronize()
    return steps * batch / (time.time() - t)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--config", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--validation-only", action="store_true",
                   help="stop after training: no database encoding, no test scores (a first stage whose test numbers "
                        "are already known needs only its checkpoint)")
    p.add_argument("overrides", nargs="*")
    a = p.parse_intermixed_args()  # overrides may come before or after --out
    cfg = load_config(a.config, a.overrides)
    t0 = time.time()
    result = fit(cfg, LocalSession(cfg.output_dir, log), log=log)
    train_s = time.time() - t0
    n_train = len(load_data(cfg)[1]["train"])
    epochs_run = len(result.history)
    ckpt = LocalSession(cfg.output_dir).best_checkpoint()
    log(f"best epoch {result.best_epoch + 1}: val mAP {result.best_val_map:.4f}; checkpoint {ckpt}")

    out = {
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__, "config": a.config, "overrides": a.overrides,
        "epochs_run": epochs_run, "train_seconds": train_s,
        "train_images_per_s": 2 * n_train * epochs_run / result.train_seconds,
        "best_epoch": result.best_epoch, "best_val_map": result.best_val_map, "history": result.history,
    }
    # Written before encoding too: a run that a device budget cuts off while encoding the database still leaves its
    # validation numbers (sessions 16 and 19 each lost one that way).
    Path(a.out).write_text(json.dumps(out, indent=2))
    if a.validation_only:
        return
    enc, rates = encode_splits(cfg, ckpt, log)
    out |= {**scores_on_test(cfg), "encode_database_items_per_s": rates["database"],
            "bare_forward_images_per_s": bare_forward_rate(enc.model, cfg.data.image_size, cfg.encode.batch_size,
                                                           enc.device) if enc.device.type == "cuda" else None}
    Path(a.out).write_text(json.dumps(out, indent=2))
    log(json.dumps({k: v for k, v in out.items() if k != "history"}, indent=2))


if __name__ == "__main__":
    main()
