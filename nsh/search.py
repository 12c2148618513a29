"""Hamming search over packed codes: the one place nsh touches faiss's binary indexes.

`flat` is exact (IndexBinaryFlat, a brute-force popcount scan); `multihash` (IndexBinaryMultiHash) looks up
`nhash` hash tables keyed on disjoint bit slices and re-ranks the candidates, trading recall for speed.
"""
from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

from nsh.codes import CodeLengthError, check_nbits


class HammingIndex:
    def __init__(self, nbits: int, kind: str = "flat", nhash: int = 4, nflip: int = 1):
        self.nbits = check_nbits(nbits)
        if kind == "flat":
            self.index = faiss.IndexBinaryFlat(self.nbits)
        elif kind == "multihash":
            b = min(self.nbits // nhash, 32)
            if b < 1:
                raise ValueError(f"multihash with nhash={nhash} needs at least {nhash} bits; lower nhash")
            self.index = faiss.IndexBinaryMultiHash(self.nbits, nhash, b)
            self.index.nflip = nflip
        else:
            raise ValueError(f"unknown index kind {kind!r}; choose 'flat' (exact) or 'multihash' (sub-linear)")
        self.kind = kind

    def __len__(self) -> int:
        return self.index.ntotal

    def _check(self, codes: np.ndarray, what: str) -> np.ndarray:
        codes = np.ascontiguousarray(codes, dtype=np.uint8)
        if codes.ndim != 2 or codes.shape[1] * 8 != self.nbits:
            raise CodeLengthError(f"{what} codes hold {codes.shape[-1] * 8} bits but the index holds {self.nbits}-bit "
                                  "codes; encode them with the model that built the index")
        return codes

    def add(self, codes: np.ndarray) -> "HammingIndex":
        self.index.add(self._check(codes, "added"))
        return self

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(distances int32, ids int64), each (len(queries), k), nearest first; missing hits are id -1."""
        if not 1 <= k <= len(self):
            raise ValueError(f"k={k} must be between 1 and the number of indexed codes ({len(self)}); lower k")
        return self.index.search(self._check(queries, "query"), k)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        faiss.write_index_binary(self.index, str(tmp))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "HammingIndex":
        raw = faiss.read_index_binary(str(path))
        self = cls.__new__(cls)
        self.index, self.nbits = raw, raw.d
        self.kind = "multihash" if isinstance(raw, faiss.IndexBinaryMultiHash) else "flat"
        return self

    @classmethod
    def build(cls, codes: np.ndarray, nbits: int | None = None, kind: str = "flat", **kw) -> "HammingIndex":
        return cls(nbits or codes.shape[1] * 8, kind, **kw).add(codes)
