"""A searchable code corpus: a folder of Parquet codes plus a faiss index saved beside them.

The index is built once (`_index_<kind>.faissindex`, with `_index_<kind>.json` recording which rows it
holds) and reused until the codes change. Queries come as ids of the corpus, as packed codes, or as hex
strings; results carry ids, Hamming distances, labels and paths.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nsh.codes import CodeLengthError
from nsh.codes_io import read_codes
from nsh.search import HammingIndex


@dataclass
class Hit:
    query: str
    rank: int
    id: str
    distance: int
    label: object = None
    path: str | None = None


class CodeIndex:
    def __init__(self, codes_dir: str | Path, kind: str = "flat"):
        self.dir = Path(codes_dir)
        self.table = read_codes(self.dir)
        self.position = {item: i for i, item in enumerate(self.table.ids)}
        self.index, self.built = self._load_or_build(kind)

    def _load_or_build(self, kind: str) -> tuple[HammingIndex, bool]:
        path, meta_path = self.dir / f"_index_{kind}.faissindex", self.dir / f"_index_{kind}.json"
        meta = {"rows": len(self.table), "nbits": self.table.nbits,
                "codes_sha256": hashlib.sha256(self.table.codes.tobytes()).hexdigest()}
        if path.is_file() and meta_path.is_file() and json.loads(meta_path.read_text()) == meta:
            return HammingIndex.load(path), False
        index = HammingIndex.build(self.table.codes, self.table.nbits, kind)
        index.save(path)
        tmp = meta_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(meta))
        tmp.replace(meta_path)
        return index, True

    def code_of(self, item_id: str) -> np.ndarray:
        if item_id not in self.position:
            raise KeyError(f"id {item_id!r} is not in {self.dir}; ids look like {self.table.ids[0]!r}")
        return self.table.codes[self.position[item_id]]

    def parse_hex(self, text: str) -> np.ndarray:
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise ValueError(f"code {text!r} is not a hex string (two hex digits per byte, MSB-first)") from None
        if len(raw) * 8 != self.table.nbits:
            raise CodeLengthError(f"code {text!r} has {len(raw) * 8} bits but {self.dir} holds "
                                  f"{self.table.nbits}-bit codes ({self.table.nbits // 4} hex digits)")
        return np.frombuffer(raw, dtype=np.uint8)

    def search(self, codes: np.ndarray, names: list[str], k: int) -> list[Hit]:
        dist, ids = self.index.search(np.atleast_2d(codes), min(k, len(self.table)))
        t = self.table
        return [Hit(names[q], r + 1, str(t.ids[i]), int(d),
                    None if t.labels is None else t.labels[i].tolist(), None if t.paths is None else str(t.paths[i]))
                for q in range(len(names)) for r, (i, d) in enumerate(zip(ids[q], dist[q])) if i >= 0]
