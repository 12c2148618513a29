"""`nsh search` over real encoded images: by id, by hex code, by image; the index is saved once and reused."""
import json

import numpy as np
import pytest

from nsh.codes import CodeLengthError, hamming_matrix
from nsh.encoding import CorpusSpec, ShardEncoder, encode_local


@pytest.fixture
def encoded_folder(tmp_path, trained_tiny, image_folder):
    _, ckpt = trained_tiny
    enc = ShardEncoder(ckpt, CorpusSpec("image_folder", str(image_folder)), str(ckpt), batch_size=16)
    encode_local(enc, np.arange(len(enc.corpus)), tmp_path / "codes", shard_size=16, log=lambda *_: None)
    return tmp_path / "codes", image_folder


def test_search_by_id_returns_the_nearest_codes_with_labels_and_paths(encoded_folder, capsys):
    from nsh.codes_io import read_codes
    from pipelines import search

    codes_dir, _ = encoded_folder
    hits = search.main(["--codes", str(codes_dir), "--id", "cat/0000.jpg", "-k", "5", "--json"])
    table = read_codes(codes_dir)
    expected = np.sort(hamming_matrix(table.codes[[list(table.ids).index("cat/0000.jpg")]], table.codes)[0])[:5]
    assert [h["distance"] for h in hits] == expected.tolist()
    assert hits[0]["distance"] == 0 and all(h["path"].endswith(h["id"]) for h in hits)
    assert json.loads(capsys.readouterr().out) == hits
    assert (codes_dir / "_index_flat.faissindex").is_file()


def test_index_is_built_once_and_reused_until_the_codes_change(encoded_folder):
    from nsh.code_index import CodeIndex

    codes_dir, _ = encoded_folder
    assert CodeIndex(codes_dir).built is True
    assert CodeIndex(codes_dir).built is False
    assert CodeIndex(codes_dir, "multihash").built is True


def test_search_by_image_uses_the_codes_model_and_draws_the_hits(encoded_folder, tmp_path, cifar_root):
    from pipelines import search

    codes_dir, folder = encoded_folder
    query = folder / "ship" / sorted(p.name for p in (folder / "ship").iterdir() if p.name.startswith("0"))[0]
    hits = search.main(["--codes", str(codes_dir), "--image", str(query), "-k", "4",
                        "--picture", str(tmp_path / "hits.png")])
    assert hits[0]["id"] == f"ship/{query.name}" and hits[0]["distance"] == 0  # the image finds itself
    assert (tmp_path / "hits.png").stat().st_size > 0


def test_hex_code_query_and_its_length_check(encoded_folder):
    from pipelines import search

    codes_dir, _ = encoded_folder
    hits = search.main(["--codes", str(codes_dir), "--code", "ffff", "-k", "3"])
    assert len(hits) == 3 and hits[0]["distance"] <= hits[-1]["distance"]
    with pytest.raises(CodeLengthError, match="has 32 bits but .* holds 16-bit codes"):
        search.main(["--codes", str(codes_dir), "--code", "ffffffff"])
    with pytest.raises(KeyError, match="id 'nope.jpg' is not in"):
        search.main(["--codes", str(codes_dir), "--id", "nope.jpg"])
