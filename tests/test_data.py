"""Data: real corpora, saved protocol splits, and bad items reported by name while the rest loads."""
import json

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate
from torchvision import transforms as T

from nsh.data import (BadItemError, CachedViews, DatasetNotFoundError, DeviceAugment, build_corpus, eval_load, eval_view, load_or_make_split,
                      make_split, normalize_batch, train_load, train_view)
from nsh.data.sources import feature_file, image_folder, list_file

from conftest import BAD_FILES


def test_cifar10_protocol_split_has_the_published_sizes_and_is_disjoint(cifar_root):
    corpus = build_corpus("cifar10", str(cifar_root))
    split = make_split(corpus, 0, 100, 500, 100, 500)
    assert {k: len(v) for k, v in split.items()} == {"query": 1000, "train": 5000, "database": 54000,
                                                     "val_query": 1000, "val_db": 5000}
    assert corpus.is_test[split["query"]].all()  # queries come from the official test split
    assert not set(split["query"]) & set(split["train"]) and not set(split["query"]) & set(split["database"])
    assert set(split["val_query"]) | set(split["val_db"]) <= set(split["database"])
    assert np.bincount(corpus.labels[split["query"]]).tolist() == [100] * 10


def test_split_is_saved_and_reused_by_ids(tmp_path, cifar_root):
    corpus = build_corpus("cifar10", str(cifar_root))
    counts = dict(query_per_class=2, train_per_class=3, val_query_per_class=1, val_db_per_class=2)
    first = load_or_make_split(corpus, tmp_path / "s.json", seed=5, **counts)
    again = load_or_make_split(corpus, tmp_path / "s.json", seed=999, **counts)  # the file wins over the seed
    assert all(np.array_equal(first[k], again[k]) for k in first)
    saved = json.loads((tmp_path / "s.json").read_text())
    assert saved["ids"]["query"] == corpus.ids[first["query"]].tolist()
    assert not np.array_equal(make_split(corpus, 6, 2, 3, 1, 2)["train"], first["train"])


def test_fashion_mnist_reads_debian_idx_files():
    corpus = build_corpus("fashion_mnist")
    assert len(corpus) == 70000 and corpus.is_test.sum() == 10000
    image = corpus.load(0)
    assert image.size == (28, 28) and image.mode == "RGB"


def test_eval_view_in_two_halves_gives_bitwise_the_tensors_of_the_classic_transform(cifar_root):
    corpus = build_corpus("cifar10")
    images = [corpus.load(i) for i in range(0, 60000, 1500)]
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    classic = T.Compose([T.Resize((96, 96), antialias=True), T.ToTensor(), T.Normalize(mean, std)])
    expected = torch.stack([classic(im) for im in images])
    halves = normalize_batch(default_collate([eval_load(96)(im) for im in images]), mean, std)
    assert default_collate([eval_load(96)(im) for im in images]).dtype == torch.uint8
    assert torch.equal(torch.stack([eval_view(96, mean, std)(im) for im in images]), expected)
    assert torch.equal(halves, expected)


def test_train_view_in_two_halves_draws_the_same_augmentation_bitwise(cifar_root):
    corpus = build_corpus("cifar10")
    images = [corpus.load(i) for i in range(0, 60000, 1500)]
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    torch.manual_seed(7)
    whole = torch.stack([train_view(64, mean, std)(im) for im in images])
    torch.manual_seed(7)
    halves = normalize_batch(default_collate([train_load(64)(im) for im in images]), mean, std)
    assert torch.equal(halves, whole)
    torch.manual_seed(8)  # and the augmentation is random: another seed gives other views
    assert not torch.equal(torch.stack([train_view(64, mean, std)(im) for im in images]), whole)


def cifar_batch(n=40, size=32):
    corpus = build_corpus("cifar10")
    return default_collate([eval_load(size)(corpus.load(i)) for i in range(0, 60000, 60000 // n)])


def test_device_augment_with_every_random_step_switched_off_returns_the_images_bitwise(cifar_root):
    images = cifar_batch()
    still = DeviceAugment(32, scale=(1, 1), ratio=(1, 1), flip_p=0, jitter_p=0, grey_p=0)
    assert torch.equal(still(images), images)
    assert torch.equal(DeviceAugment(32, scale=(1, 1), ratio=(1, 1), flip_p=1, jitter_p=0, grey_p=0)(images),
                       images.flip(3))
    grey = DeviceAugment(32, scale=(1, 1), ratio=(1, 1), flip_p=0, jitter_p=0, grey_p=1)(images)
    assert torch.equal(grey[:, 0], grey[:, 1]) and torch.equal(grey[:, 1], grey[:, 2])
    luma = T.functional.rgb_to_grayscale(images).float()
    assert (grey[:, :1].float() - luma).abs().max() <= 1  # torchvision's luma, up to rounding


def test_device_augment_draws_each_image_its_own_view_at_the_model_size(cifar_root):
    images = cifar_batch(size=32)
    twins = images[:1].expand(8, -1, -1, -1).contiguous()
    torch.manual_seed(0)
    views = DeviceAugment(64)(twins)
    assert views.shape == (8, 3, 64, 64) and views.dtype == torch.uint8
    assert len({v.numpy().tobytes() for v in views}) == 8  # one image, eight different views
    again = DeviceAugment(64)(twins)
    assert not torch.equal(views, again)
    torch.manual_seed(0)
    assert torch.equal(DeviceAugment(64)(twins), views)  # seeded, so a resumed run repeats its views


def test_device_augment_jitters_about_as_often_and_as_far_as_the_loader_augmentation(cifar_root):
    """Same crop-free, flip-free setting in both forms: the share of greyscale views and the spread of brightness
    and saturation must agree (the device form's hue and order differ by design, not its strength)."""
    corpus = build_corpus("cifar10")
    pil = [corpus.load(i) for i in range(0, 60000, 150)]
    images = default_collate([eval_load(32)(im) for im in pil])
    loader = T.Compose([T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), T.RandomGrayscale(p=0.2),
                        T.PILToTensor()])
    torch.manual_seed(1)
    by_loader = torch.stack([loader(im) for im in pil]).float()
    by_device = DeviceAugment(32, scale=(1, 1), ratio=(1, 1), flip_p=0)(images).float()

    def grey_share(x):
        return ((x[:, 0] == x[:, 1]) & (x[:, 1] == x[:, 2])).flatten(1).all(1).float().mean().item()

    def spread(x, stat):
        return (stat(x) - stat(images.float())).std().item()

    assert abs(grey_share(by_loader) - grey_share(by_device)) < 0.08
    for stat in (lambda x: x.mean((1, 2, 3)), lambda x: x.std(1).mean((1, 2))):  # brightness, saturation
        assert 0.7 < spread(by_device, stat) / spread(by_loader, stat) < 1.4


def test_device_augment_refuses_float_images_with_the_expected_input():
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\) uint8"):
        DeviceAugment(32)(torch.rand(2, 3, 32, 32))


def test_image_folder_converts_grey_and_rgba_and_names_broken_files(image_folder):
    corpus = image_folder and build_corpus("image_folder", str(image_folder))
    assert len(corpus) == 36 + 5
    by_id = {i: n for n, i in enumerate(corpus.ids)}
    assert corpus.load(by_id["cat/grey.png"]).mode == "RGB"
    assert corpus.load(by_id["ship/rgba.png"]).mode == "RGB"
    for bad in BAD_FILES:
        with pytest.raises(BadItemError, match=bad.replace(".", r"\.")):
            corpus.load(by_id[bad])
    with pytest.raises(BadItemError, match="0 bytes"):
        corpus.load(by_id["ship/empty.jpg"])


def test_list_file_reads_multi_hot_labels_and_reports_wrong_width_and_missing_files(tmp_path, image_folder):
    good = tmp_path / "list.txt"
    good.write_text(f"{image_folder}/cat/grey.png 0 1 1\n{image_folder}/ship/rgba.png 1 0 0\nmissing.jpg 0 0 1\n")
    corpus = list_file(good, root="/")
    assert corpus.labels.tolist() == [[0, 1, 1], [1, 0, 0], [0, 0, 1]]
    with pytest.raises(BadItemError, match="missing.jpg: file not found"):
        corpus.load(2)
    bad = tmp_path / "bad.txt"
    bad.write_text("a.jpg 0 1 1\nb.jpg 1 0\n")
    with pytest.raises(ValueError, match=r"bad.txt:2: b.jpg has 2 labels but the file has 3 classes"):
        list_file(bad)


def test_feature_file_flags_nan_and_inf_rows(tmp_path):
    feats = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    feats[1, 2], feats[3, 0] = np.nan, np.inf
    np.savez(tmp_path / "f.npz", features=feats, labels=np.arange(5))
    corpus = feature_file(tmp_path / "f.npz")
    assert corpus.feature_dim == 4 and np.array_equal(corpus.load(0), feats[0])
    for row in (1, 3):
        with pytest.raises(BadItemError, match="NaN or Inf"):
            corpus.load(row)


def test_missing_datasets_say_how_to_get_them(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="apt-get install dataset-fashion-mnist"):
        build_corpus("fashion_mnist", str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        image_folder(tmp_path / "nowhere")


def test_feature_dropout_zeroes_that_fraction_and_keeps_the_mean():
    views = CachedViews(np.ones((500, 2, 64), dtype=np.float16), seed=0, dropout=0.25)
    x = torch.stack([torch.cat(views[i]["x"]) for i in range(len(views))])
    assert abs((x == 0).float().mean().item() - 0.25) < 0.01
    assert torch.allclose(x[x != 0], torch.tensor(1 / 0.75))
    assert abs(x.mean().item() - 1) < 0.02


def test_feature_dropout_makes_two_copies_of_a_precomputed_row_two_views():
    rows = np.random.default_rng(0).normal(size=(4, 1, 32)).astype(np.float16)
    copies = np.concatenate([rows, rows], 1)
    a, b = CachedViews(copies, dropout=0.3)[0]["x"]
    assert not torch.equal(a, b)
    a, b = CachedViews(copies)[0]["x"]
    assert torch.equal(a, b)


def test_feature_dropout_repeats_exactly_for_a_resumed_epoch():
    views = CachedViews(np.random.default_rng(0).normal(size=(8, 3, 16)).astype(np.float16), seed=5, dropout=0.5)
    views.set_epoch(3)
    first = [views[i]["x"] for i in range(8)]
    views.set_epoch(3)
    assert all(torch.equal(torch.stack(f), torch.stack(views[i]["x"])) for i, f in enumerate(first))
