"""Parquet codes: schema, metadata, round trip, part folders, refusal of mixed code lengths."""
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nsh.codes import CodeLengthError
from nsh.codes_io import read_codes, write_codes


def test_schema_and_metadata_follow_the_storage_convention(tmp_path):
    codes = np.array([[0xFF, 0x00, 0x0F, 0xF0]], dtype=np.uint8)
    path = write_codes(tmp_path / "part-00000.parquet", ["a"], codes, 32, "models:/nsh/3", labels=[7], paths=["x.jpg"])
    schema = pq.read_schema(path)
    assert schema.field("code").type == pa.binary(4)  # fixed_size_binary[4]
    assert schema.metadata[b"nsh.nbits"] == b"32" and schema.metadata[b"nsh.bit_order"] == b"msb"
    assert schema.metadata[b"nsh.model_uri"] == b"models:/nsh/3"
    assert pq.read_table(path).column("code")[0].as_py() == bytes([0xFF, 0x00, 0x0F, 0xF0])


def test_folder_of_parts_round_trips_with_multi_hot_labels(tmp_path):
    rng = np.random.default_rng(0)
    codes, labels = rng.integers(0, 256, (10, 2), dtype=np.uint8), rng.integers(0, 2, (10, 5))
    write_codes(tmp_path / "part-00000.parquet", np.arange(6), codes[:6], 16, labels=labels[:6])
    write_codes(tmp_path / "part-00001.parquet", np.arange(6, 10), codes[6:], 16, labels=labels[6:])
    table = read_codes(tmp_path)
    assert table.nbits == 16 and np.array_equal(table.codes, codes) and np.array_equal(table.labels, labels)
    assert table.ids.tolist() == [str(i) for i in range(10)]


def test_parts_of_different_code_lengths_are_refused(tmp_path):
    write_codes(tmp_path / "part-00000.parquet", ["a"], np.zeros((1, 2), np.uint8), 16)
    write_codes(tmp_path / "part-00001.parquet", ["b"], np.zeros((1, 4), np.uint8), 32)
    with pytest.raises(CodeLengthError, match="disagree on the code length"):
        read_codes(tmp_path)


def test_write_leaves_no_temporary_file(tmp_path):
    write_codes(tmp_path / "part-00000.parquet", ["a"], np.zeros((1, 1), np.uint8), 8)
    assert [p.name for p in tmp_path.iterdir()] == ["part-00000.parquet"]
