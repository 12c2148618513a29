"""The test-split scores of one trained checkpoint, without Ray: encode the query and database splits, then
mAP@k (standard and tie-aware) and P@H<=2.

    python bench/score.py --checkpoint runs/variants/<run>/checkpoints/epoch_006 [--out scores.json]

The codes land in the run's own folder (<output_dir>/codes/{query,database}, resumable shards), so a second call
only scores. Use it once per model chosen on validation: the test queries are not for choosing.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nsh.checkpoint import load  # noqa: E402
from nsh.codes_io import read_codes  # noqa: E402
from nsh.config import Config, from_dict  # noqa: E402
from nsh.encoding import CorpusSpec, ShardEncoder, encode_local  # noqa: E402
from nsh.metrics import evaluate  # noqa: E402
from nsh.training import load_data  # noqa: E402


def encode_splits(cfg: Config, checkpoint: str | Path, log=print) -> tuple[ShardEncoder, dict]:
    """Codes of the query and database splits under <output_dir>/codes; returns the encoder and items/s per split."""
    corpus, split = load_data(cfg)
    spec = CorpusSpec(cfg.data.dataset, cfg.data.root, cfg.data.source)
    enc = ShardEncoder(checkpoint, spec, str(checkpoint), cfg.encode.batch_size, loader_workers=cfg.data.loader_workers)
    rates = {}
    for name in ("query", "database"):
        t = time.time()
        encode_local(enc, split[name], Path(cfg.output_dir) / "codes" / name, cfg.encode.shard_size, log=log)
        rates[name] = len(split[name]) / (time.time() - t)
    return enc, rates


def split_codes(cfg: Config) -> dict:
    """What encode_splits wrote: split name -> its codes and labels (unreadable images dropped)."""
    return {name: read_codes(Path(cfg.output_dir) / "codes" / name) for name in ("query", "database")}


def scores_on_test(cfg: Config) -> dict:
    codes = split_codes(cfg)
    q, db = codes["query"], codes["database"]
    return evaluate(q.codes, db.codes, q.labels, db.labels, cfg.eval.k).as_dict("test_")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a checkpoint file or the folder holding it")
    p.add_argument("--out")
    a = p.parse_args()
    state = load(a.checkpoint)
    cfg = from_dict(state["config"])
    encode_splits(cfg, a.checkpoint, log=lambda msg: print(msg, flush=True))
    out = {"checkpoint": str(a.checkpoint), "epoch": int(state["epoch"]) + 1,
           "val_map": state["metrics"].get("val_map"), **scores_on_test(cfg)}
    print(json.dumps(out, indent=2))
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
