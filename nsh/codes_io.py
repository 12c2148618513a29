"""Codes in Parquet: `id` (string), `code` (fixed_size_binary[nbits/8], MSB-first), `label` or `labels`, `path`.

The file's schema metadata carries nsh.nbits, nsh.bit_order (msb) and nsh.model_uri, so a reader never has
to guess how to unpack the bytes or which model made them. A folder of part files reads as one table.
Writes go to a temporary name and are renamed, so no half-written file ever carries the final name.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from nsh.codes import CodeLengthError, check_nbits

PART_GLOB = "part-*.parquet"


@dataclass
class CodeTable:
    ids: np.ndarray
    codes: np.ndarray  # (n, nbits/8) uint8
    nbits: int
    labels: np.ndarray | None
    paths: np.ndarray | None
    model_uri: str

    def __len__(self):
        return len(self.ids)


def to_arrow(ids, codes: np.ndarray, nbits: int, model_uri: str = "", labels=None, paths=None) -> pa.Table:
    nbits = check_nbits(nbits)
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    if codes.ndim != 2 or codes.shape[1] * 8 != nbits:
        raise CodeLengthError(f"codes of shape {codes.shape} do not hold {nbits}-bit rows ({nbits // 8} bytes each)")
    width = nbits // 8
    columns = {
        "id": pa.array(np.asarray(ids).astype(str)),
        "code": pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), len(codes), [None, pa.py_buffer(codes.tobytes())]),
    }
    if labels is not None:
        labels = np.asarray(labels)
        if labels.ndim == 1:
            columns["label"] = pa.array(labels.astype(np.int64))
        else:
            columns["labels"] = pa.FixedSizeListArray.from_arrays(pa.array(labels.astype(np.int8).ravel()), labels.shape[1])
    if paths is not None:
        columns["path"] = pa.array(np.asarray(paths).astype(str))
    meta = {b"nsh.nbits": str(nbits).encode(), b"nsh.bit_order": b"msb", b"nsh.model_uri": model_uri.encode()}
    return pa.table(columns).replace_schema_metadata(meta)


def write_codes(path: str | Path, ids, codes, nbits: int, model_uri: str = "", labels=None, paths=None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(to_arrow(ids, codes, nbits, model_uri, labels, paths), tmp)
    tmp.replace(path)
    return path


def read_codes(path: str | Path) -> CodeTable:
    """One Parquet file, or a folder of part files (read in name order)."""
    path = Path(path)
    files = sorted(path.glob(PART_GLOB)) if path.is_dir() else [path]
    if not files or not files[0].is_file():
        raise FileNotFoundError(f"no code files at {path}; run the encode pipeline first (pipelines/encode.py)")
    tables = [pq.read_table(f) for f in files]
    metas = [t.schema.metadata or {} for t in tables]
    nbits_seen = {m.get(b"nsh.nbits") for m in metas}
    if None in nbits_seen:
        raise ValueError(f"{path}: a file lacks nsh.nbits metadata; it was not written by nsh")
    if len(nbits_seen) > 1:
        raise CodeLengthError(f"{path}: part files disagree on the code length ({sorted(nbits_seen)}); "
                              "they come from different models: re-encode into an empty folder")
    if any(m.get(b"nsh.bit_order", b"msb") != b"msb" for m in metas):
        raise ValueError(f"{path}: only MSB-first bit order is supported")
    table = pa.concat_tables([t.replace_schema_metadata(None) for t in tables])
    nbits = int(nbits_seen.pop())
    codes = np.frombuffer(table.column("code").combine_chunks().buffers()[1], dtype=np.uint8)
    codes = codes[: len(table) * nbits // 8].reshape(len(table), nbits // 8)
    ids = np.asarray(table.column("id").to_numpy(zero_copy_only=False)).astype(str)
    if "label" in table.column_names:
        labels = table.column("label").to_numpy()
    elif "labels" in table.column_names:
        labels = np.stack(table.column("labels").to_numpy(zero_copy_only=False)).astype(np.int64)
    else:
        labels = None
    paths = np.asarray(table.column("path").to_numpy(zero_copy_only=False)) if "path" in table.column_names else None
    return CodeTable(ids, codes.copy(), nbits, labels, paths, metas[0].get(b"nsh.model_uri", b"").decode())
