"""Encoding a corpus into Parquet codes, in shards: the same work whether Ray or a plain loop drives it.

The corpus is cut into fixed shards of `shard_size` rows (by position in a manifest). A shard is encoded
whole and written atomically as part-NNNNN.parquet (with its bad items in _part-NNNNN.errors.json; the leading underscore keeps
sidecar files out of Parquet dataset readers), so a
rerun after a crash encodes exactly the shards that have no file: nothing is lost or written twice.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader

from nsh.checkpoint import load_model
from nsh.codes import pack
from nsh.codes_io import PART_GLOB, write_codes
from nsh.data import ItemDataset, build_corpus, collate_skip_bad, eval_load

MANIFEST = "_manifest.json"
ERRORS = "_errors.json"


@dataclass(frozen=True)
class CorpusSpec:
    """Enough to rebuild a corpus in another process."""

    dataset: str
    root: str | None = None
    source: str = "auto"

    def build(self):
        return build_corpus(self.dataset, self.root, self.source)


@dataclass(frozen=True)
class Shard:
    number: int
    start: int
    stop: int


def plan(out_dir: str | Path, ids: np.ndarray, shard_size: int, model_uri: str) -> list[Shard]:
    """The shards of this corpus still to encode; refuses a folder that holds another corpus's or model's codes."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256("\n".join(map(str, ids)).encode()).hexdigest()
    record = {"ids_sha256": digest, "rows": len(ids), "shard_size": shard_size, "model_uri": model_uri}
    manifest = out / MANIFEST
    if manifest.is_file():
        old = json.loads(manifest.read_text())
        if old != record:
            changed = [k for k in record if old.get(k) != record[k]]
            raise ValueError(f"{out} holds codes of another job (different {', '.join(changed)}); "
                             "encode into an empty folder or delete this one")
    else:
        tmp = out / f".{MANIFEST}.tmp"
        tmp.write_text(json.dumps(record))
        tmp.replace(manifest)
    shards = [Shard(i, lo, min(lo + shard_size, len(ids))) for i, lo in enumerate(range(0, len(ids), shard_size))]
    return [s for s in shards if not part_path(out, s).is_file()]


def part_path(out: Path, shard: Shard) -> Path:
    return out / f"part-{shard.number:05d}.parquet"


class ShardEncoder:
    """Loads the model and the corpus once; encodes and writes one shard per call."""

    def __init__(self, checkpoint: str | Path, spec: CorpusSpec, model_uri: str, batch_size: int = 256,
                 device: str | None = None, loader_workers: int = 0):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model, self.config, _ = load_model(checkpoint)
        self.model.to(self.device)
        self.corpus = spec.build()
        self.model_uri, self.batch_size, self.loader_workers = model_uri, batch_size, loader_workers
        if self.corpus.kind == "features" and self.corpus.feature_dim != self.model.feature_dim:
            raise ValueError(f"features in {spec.root} are {self.corpus.feature_dim}-d but the model expects "
                             f"{self.model.feature_dim}-d inputs; encode with a model trained on these features")
        if self.corpus.kind == "image" and self.model.backbone_name == "features":
            raise ValueError("this model takes feature vectors (backbone 'features'), but the corpus holds images")
        self.transform = eval_load(self.config.data.image_size)

    @torch.no_grad()
    def encode_indices(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[tuple[int, str]]]:
        """(packed codes of the good items, their corpus indices, [(index, why)] for the bad ones)."""
        ds = ItemDataset(self.corpus, indices, self.transform)
        codes, good, bad = [], [], []
        # Images leave the loader as uint8 and the model normalises them on the device (eval_load): on a GPU the
        # loader, not the model, bound encoding, and float32 batches cost 4x the bytes to hand over.
        for batch in DataLoader(ds, batch_size=self.batch_size, num_workers=self.loader_workers,
                                collate_fn=collate_skip_bad, pin_memory=self.device.type == "cuda"):
            bad += batch["bad"]
            if batch["x"] is not None:
                x = batch["x"].to(self.device, non_blocking=True)
                codes.append(pack(self.model.encode(x, is_feature=self.corpus.kind == "features")))
                good.append(batch["index"].numpy())
        nbytes = self.model.nbits // 8
        return (np.concatenate(codes) if codes else np.zeros((0, nbytes), np.uint8),
                np.concatenate(good) if good else np.zeros(0, np.int64), bad)

    def __call__(self, shard: Shard, indices: np.ndarray, out_dir: str | Path) -> dict:
        t0 = time.time()
        out = Path(out_dir)
        codes, good, bad = self.encode_indices(indices[shard.start: shard.stop])
        c = self.corpus
        errors = [{"id": str(c.ids[i]), "error": why} for i, why in bad]
        err_path = out / f"_part-{shard.number:05d}.errors.json"
        if errors:  # written first: a part file's presence means its shard is complete, errors included
            tmp = err_path.with_name(f".{err_path.name}.tmp")
            tmp.write_text(json.dumps(errors))
            tmp.replace(err_path)
        write_codes(part_path(out, shard), c.ids[good], codes, self.model.nbits, self.model_uri,
                    labels=c.labels[good] if c.labels is not None and (c.labels >= 0).all() else None,
                    paths=c.paths[good] if c.paths is not None else None)
        return {**asdict(shard), "rows": len(good), "errors": len(errors), "seconds": time.time() - t0}


def collect_errors(out_dir: str | Path) -> list[dict]:
    return [e for f in sorted(Path(out_dir).glob("_part-*.errors.json")) for e in json.loads(f.read_text())]


def count_rows(out_dir: str | Path) -> int:
    return sum(pq.read_metadata(f).num_rows for f in Path(out_dir).glob(PART_GLOB))


def encode_local(encoder: ShardEncoder, indices: np.ndarray, out_dir: str | Path, shard_size: int, log=print) -> dict:
    """The plain-loop driver (no Ray): encode every pending shard in order, with progress."""
    shards = plan(out_dir, encoder.corpus.ids[indices], shard_size, encoder.model_uri)
    t0, done = time.time(), 0
    for s in shards:
        summary = encoder(s, indices, out_dir)
        done += summary["rows"] + summary["errors"]
        log(f"encoded shard {s.number} ({done} rows this run, {done / (time.time() - t0):.0f} rows/s)")
    return {"rows": count_rows(out_dir), "errors": collect_errors(out_dir), "seconds": time.time() - t0}
