"""Binary codes: ±1 float tensors <-> packed uint8 rows, MSB-first (numpy.packbits order).

Packed rows are what faiss binary indexes, Milvus BINARY_VECTOR and Vespa hamming tensors take, and what
the Parquet files store.
"""
from __future__ import annotations

import numpy as np
import torch


class CodeLengthError(ValueError):
    """A code length that cannot be packed into whole bytes, or that does not match what is expected."""


def check_nbits(nbits: int) -> int:
    if not isinstance(nbits, (int, np.integer)) or nbits <= 0 or nbits % 8:
        raise CodeLengthError(
            f"code length nbits={nbits} is not a positive multiple of 8; codes are packed into whole bytes, "
            "so choose e.g. 16, 32, 64 or 128"
        )
    return int(nbits)


def pack(codes: torch.Tensor | np.ndarray) -> np.ndarray:
    """±1 (or {0,1} / boolean) codes of shape (n, nbits) -> uint8 array (n, nbits/8), bit 1 for a positive entry."""
    if isinstance(codes, torch.Tensor):
        codes = codes.detach().cpu().numpy()
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise CodeLengthError(f"codes must be 2-D (n, nbits), got shape {codes.shape}")
    check_nbits(codes.shape[1])
    return np.packbits(codes > 0, axis=1)


def unpack(packed: np.ndarray, nbits: int | None = None) -> np.ndarray:
    """uint8 (n, nbits/8) -> float32 ±1 array (n, nbits)."""
    packed = np.asarray(packed, dtype=np.uint8)
    if packed.ndim != 2:
        raise CodeLengthError(f"packed codes must be 2-D (n, nbytes), got shape {packed.shape}")
    nbits = check_nbits(nbits if nbits is not None else packed.shape[1] * 8)
    if packed.shape[1] * 8 != nbits:
        raise CodeLengthError(f"packed codes hold {packed.shape[1] * 8} bits per row, expected {nbits}")
    bits = np.unpackbits(packed, axis=1)
    return bits.astype(np.float32) * 2.0 - 1.0


def hamming_matrix(q_packed: np.ndarray, db_packed: np.ndarray) -> np.ndarray:
    """All pairwise Hamming distances (len(q), len(db)) by XOR + popcount over 64-bit words, as uint8 when the
    code length allows (uint16 otherwise): small integers are what makes ranking them a linear-time radix sort."""
    if q_packed.shape[1] != db_packed.shape[1]:
        raise CodeLengthError(
            f"query codes have {q_packed.shape[1] * 8} bits but database codes have {db_packed.shape[1] * 8}; "
            "encode both with the same model"
        )
    q64, db64 = _as_words(q_packed), _as_words(db_packed)
    dtype = np.uint8 if q_packed.shape[1] * 8 <= 255 else np.uint16
    out = np.bitwise_count(q64[:, 0, None] ^ db64[None, :, 0]).astype(dtype, copy=False)
    for w in range(1, q64.shape[1]):  # one word at a time keeps the temporary at (q, db), not (q, db, words)
        out += np.bitwise_count(q64[:, w, None] ^ db64[None, :, w])
    return out


def _as_words(packed: np.ndarray) -> np.ndarray:
    # Zero bytes added to both sides leave Hamming distances unchanged. Codes of up to 32 bits use 32-bit words:
    # half the memory traffic of the (queries x database) temporary.
    word = 4 if packed.shape[1] <= 4 else 8
    pad = (-packed.shape[1]) % word
    if pad:
        packed = np.pad(packed, ((0, 0), (0, pad)))
    return np.ascontiguousarray(packed).view(np.uint32 if word == 4 else np.uint64)
