"""faiss wrapper: exact search equals brute force; sub-linear search finds exact duplicates; errors are clear."""
import numpy as np
import pytest

from nsh.codes import CodeLengthError, hamming_matrix
from nsh.search import HammingIndex


def test_flat_index_distances_equal_brute_force(tmp_path):
    rng = np.random.default_rng(0)
    db, q = rng.integers(0, 256, (500, 8), dtype=np.uint8), rng.integers(0, 256, (20, 8), dtype=np.uint8)
    index = HammingIndex.build(db)
    dist, ids = index.search(q, 10)
    brute = np.sort(hamming_matrix(q, db), axis=1)[:, :10]
    assert np.array_equal(dist, brute)
    assert np.array_equal(hamming_matrix(q, db)[np.arange(20)[:, None], ids], dist)
    loaded = HammingIndex.load(index.save(tmp_path / "codes.faissindex"))
    assert np.array_equal(loaded.search(q, 10)[0], dist) and loaded.nbits == 64


def test_multihash_index_finds_the_item_itself():
    rng = np.random.default_rng(1)
    db = rng.integers(0, 256, (2000, 8), dtype=np.uint8)
    dist, ids = HammingIndex.build(db, kind="multihash", nhash=4).search(db[:50], 1)
    assert np.array_equal(ids[:, 0], np.arange(50)) and (dist[:, 0] == 0).all()


def test_query_of_another_code_length_is_refused():
    index = HammingIndex.build(np.zeros((10, 8), np.uint8))
    with pytest.raises(CodeLengthError, match="query codes hold 32 bits but the index holds 64-bit codes"):
        index.search(np.zeros((1, 4), np.uint8), 1)


def test_k_larger_than_database_is_refused():
    with pytest.raises(ValueError, match="k=11 must be between 1 and the number of indexed codes \\(10\\)"):
        HammingIndex.build(np.zeros((10, 8), np.uint8)).search(np.zeros((1, 8), np.uint8), 11)
