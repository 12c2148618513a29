"""Packing and Hamming distances against numpy/bit-string references."""
import numpy as np
import pytest
import torch

from nsh.codes import CodeLengthError, hamming_matrix, pack, unpack


def test_pack_is_msb_first_like_numpy_packbits():
    codes = torch.tensor([[1, -1, -1, -1, -1, -1, -1, 1, -1, -1, -1, -1, -1, -1, -1, -1]], dtype=torch.float32)
    assert pack(codes).tolist() == [[0b10000001, 0]]


def test_unpack_inverts_pack():
    rng = np.random.default_rng(0)
    codes = rng.choice([-1.0, 1.0], (7, 24)).astype(np.float32)
    assert np.array_equal(unpack(pack(codes), 24), codes)


@pytest.mark.parametrize("nbits", [8, 24, 64, 72, 128])
def test_hamming_matrix_matches_bit_string_count(nbits):
    rng = np.random.default_rng(nbits)
    q, db = rng.integers(0, 256, (5, nbits // 8), dtype=np.uint8), rng.integers(0, 256, (9, nbits // 8), dtype=np.uint8)
    naive = [[sum(bin(a ^ b).count("1") for a, b in zip(x, y)) for y in db] for x in q]
    assert hamming_matrix(q, db).tolist() == naive


def test_code_length_not_multiple_of_8_is_a_clear_error():
    with pytest.raises(CodeLengthError, match="nbits=12 is not a positive multiple of 8"):
        pack(np.ones((2, 12)))


def test_mismatched_code_lengths_are_refused():
    with pytest.raises(CodeLengthError, match="32 bits but database codes have 64"):
        hamming_matrix(np.zeros((1, 4), np.uint8), np.zeros((1, 8), np.uint8))
