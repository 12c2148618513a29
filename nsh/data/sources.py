"""Corpora: a list of items with stable ids and labels, and a way to load item i.

Every dataset the project reads becomes a `Corpus`: CIFAR-10 (image-folder tree or torchvision pickles),
Fashion-MNIST (IDX files), any image folder, a multi-label list file (`path l_0 ... l_{C-1}`), or a
precomputed feature array. Loading an item that is broken raises `BadItemError` naming the item and the
fix, so callers can report it and carry on with the rest.
"""
from __future__ import annotations

import gzip
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


class BadItemError(ValueError):
    """One item that cannot be used; the message names it and says what to do."""

    def __init__(self, item_id: str, reason: str):
        super().__init__(f"{item_id}: {reason}")
        self.item_id, self.reason = item_id, reason


class DatasetNotFoundError(FileNotFoundError):
    pass


@dataclass
class Corpus:
    name: str
    ids: np.ndarray  # str, unique and stable across runs
    labels: np.ndarray  # (n,) class ids or (n, C) multi-hot
    kind: str  # "image" or "features"
    load: Callable[[int], object] = field(repr=False)  # i -> PIL RGB image or float32 vector
    is_test: np.ndarray | None = None  # official test-split membership, where the dataset has one
    paths: np.ndarray | None = None  # file paths, where items are files
    feature_dim: int | None = None

    def __len__(self) -> int:
        return len(self.ids)


def load_image(path: str | os.PathLike, item_id: str | None = None) -> Image.Image:
    """An RGB image; grey, palette and RGBA images are converted, unreadable files raise BadItemError."""
    item_id = item_id or str(path)
    try:
        if os.path.getsize(path) == 0:
            raise BadItemError(item_id, "file is empty (0 bytes); re-copy it or remove it from the corpus")
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except BadItemError:
        raise
    except FileNotFoundError:
        raise BadItemError(item_id, f"file not found at {path}; fix the path or remove the entry") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise BadItemError(item_id, f"cannot decode image ({err}); re-download or remove the file") from None


def image_folder(root: str | Path, name: str = "image_folder") -> Corpus:
    """<root>/<class>/<file>; or <root>/{train,test}/<class>/<file>, which also records the test split."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetNotFoundError(f"image folder {root} does not exist; set data.root to a folder of class folders")
    tops = [root / s for s in ("train", "test") if (root / s).is_dir()]
    bases = tops or [root]
    classes = sorted({d.name for b in bases for d in b.iterdir() if d.is_dir()})
    if not classes:
        raise DatasetNotFoundError(f"{root} has no class sub-folders; expected <root>/<class>/<image files>")
    index = {c: i for i, c in enumerate(classes)}
    paths, labels, is_test = [], [], []
    for base in bases:
        for c in classes:
            d = base / c
            if not d.is_dir():
                continue
            files = sorted(f for f in os.listdir(d) if f.lower().endswith(IMAGE_EXTENSIONS))
            paths += [str(d / f) for f in files]
            labels += [index[c]] * len(files)
            is_test += [base.name == "test" and bool(tops)] * len(files)
    paths_arr = np.array(paths)
    ids = np.array([os.path.relpath(p, root) for p in paths])
    return Corpus(name, ids, np.array(labels, dtype=np.int64), "image",
                  lambda i: load_image(paths_arr[i], ids[i]), np.array(is_test) if tops else None, paths_arr)


def array_images(name: str, images: np.ndarray, labels: np.ndarray, is_test: np.ndarray, ids: np.ndarray) -> Corpus:
    """In-memory uint8 images (n, H, W) or (n, H, W, 3), e.g. Fashion-MNIST or CIFAR-10 pickles."""
    def load(i):
        return Image.fromarray(images[i]).convert("RGB")

    return Corpus(name, ids, labels.astype(np.int64), "image", load, is_test)


def find_cifar10_folder(root: str | None) -> Path:
    here = Path(__file__).resolve().parents[2]
    candidates = [Path(root)] if root else [here / "data" / "cifar10-jpeg", Path("data/cifar10-jpeg")]
    for c in candidates:
        if (c / "train").is_dir() and (c / "test").is_dir():
            return c
    raise DatasetNotFoundError(
        f"CIFAR-10 image folders not found at {', '.join(map(str, candidates))}; run scripts/setup.sh (it unpacks "
        "../shared/data/cifar10-jpeg.tar.gz into data/), set data.root, or use data.source=torchvision"
    )


def cifar10(root: str | None = None, source: str = "auto") -> Corpus:
    if source in ("auto", "folder"):
        try:
            return image_folder(find_cifar10_folder(root), "cifar10")
        except DatasetNotFoundError:
            if source == "folder":
                raise
    return _cifar10_torchvision(root or "data/cifar10-torchvision")


def _cifar10_torchvision(root: str) -> Corpus:
    from torchvision.datasets import CIFAR10

    parts = []
    for train in (True, False):
        try:
            ds = CIFAR10(root, train=train, download=not (Path(root) / "cifar-10-batches-py").is_dir())
        except Exception as err:  # offline: say where the files should be
            raise DatasetNotFoundError(
                f"CIFAR-10 pickles not found under {root} and the download failed ({err}); put "
                "cifar-10-python.tar.gz there or use the image-folder copy (data.source=folder)"
            ) from err
        parts.append((ds.data, np.array(ds.targets), train))
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    is_test = np.concatenate([np.full(len(p[1]), not p[2]) for p in parts])
    ids = np.array([f"{'test' if t else 'train'}/{i:05d}" for t, i in
                    zip(is_test, np.concatenate([np.arange(len(p[1])) for p in parts]))])
    return array_images("cifar10", images, labels, is_test, ids)


FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


def fashion_mnist(root: str | None = None) -> Corpus:
    root = Path(root or FASHION_MNIST_DIR)
    arrays = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        img, lab = root / f"{prefix}-images-idx3-ubyte.gz", root / f"{prefix}-labels-idx1-ubyte.gz"
        if not img.is_file() or not lab.is_file():
            raise DatasetNotFoundError(
                f"Fashion-MNIST IDX files not found in {root}; `apt-get install dataset-fashion-mnist` "
                "or set data.root to a folder with the four *-ubyte.gz files"
            )
        arrays[split] = (_read_idx(img), _read_idx(lab))
    images = np.concatenate([arrays["train"][0], arrays["test"][0]])
    labels = np.concatenate([arrays["train"][1], arrays["test"][1]])
    is_test = np.concatenate([np.zeros(len(arrays["train"][1]), bool), np.ones(len(arrays["test"][1]), bool)])
    ids = np.array([f"{'test' if t else 'train'}/{i:05d}" for t, i in
                    zip(is_test, np.concatenate([np.arange(len(arrays[s][1])) for s in ("train", "test")]))])
    return array_images("fashion_mnist", images, labels, is_test, ids)


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def list_file(path: str | Path, root: str | Path | None = None, num_classes: int | None = None) -> Corpus:
    """Multi-label list file, one item a line: `relative/path.jpg l_0 l_1 ... l_{C-1}` (multi-hot)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetNotFoundError(f"list file {path} does not exist; set data.root to it")
    root = Path(root) if root else path.parent
    paths, rows = [], []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        rel, *bits = line.split()
        width = num_classes or (len(rows[0]) if rows else len(bits))
        if len(bits) != width:
            raise ValueError(f"{path}:{n}: {rel} has {len(bits)} labels but the file has {width} classes; "
                             "every line needs the same number of 0/1 labels")
        paths.append(str(root / rel))
        rows.append([int(b) for b in bits])
    paths_arr = np.array(paths)
    ids = np.array([os.path.relpath(p, root) for p in paths])
    return Corpus(path.stem, ids, np.array(rows, dtype=np.int64), "image",
                  lambda i: load_image(paths_arr[i], ids[i]), None, paths_arr)


def feature_file(path: str | Path) -> Corpus:
    """Precomputed features: .npy (features only), .npz (`features`, optional `labels`, `ids`), or Parquet
    with a list column `features` and optional `labels`/`id` columns."""
    path = Path(path)
    if not path.is_file():
        raise DatasetNotFoundError(f"feature file {path} does not exist; set data.root or encode.input to it")
    ids = labels = None
    if path.suffix == ".npy":
        # memory-mapped: a 1M-row file is paged in as rows are read, not loaded whole into every encoder
        feats = np.load(path, mmap_mode="r")
    elif path.suffix == ".npz":
        with np.load(path) as z:
            feats = z["features"]
            labels = z["labels"] if "labels" in z else None
            ids = z["ids"].astype(str) if "ids" in z else None
    elif path.suffix == ".parquet":
        import pyarrow.parquet as pq

        t = pq.read_table(path)
        feats = np.stack(t.column("features").to_numpy(zero_copy_only=False))
        labels = t.column("labels").to_numpy() if "labels" in t.column_names else None
        ids = t.column("id").to_numpy().astype(str) if "id" in t.column_names else None
    else:
        raise ValueError(f"{path}: unsupported feature file type {path.suffix!r}; use .npy, .npz or .parquet")
    if feats.ndim != 2:
        raise ValueError(f"{path}: features must be 2-D (n, dim), got shape {feats.shape}")
    ids = ids if ids is not None else np.arange(len(feats)).astype(str)
    labels = labels if labels is not None else np.full(len(feats), -1, dtype=np.int64)

    def load(i):
        row = np.array(feats[i], dtype=np.float32)  # a copy: rows of a read-only memory map are not writable
        if not np.isfinite(row).all():
            raise BadItemError(ids[i], "feature row contains NaN or Inf; recompute or drop this row")
        return row

    return Corpus(path.stem, ids, np.asarray(labels), "features", load, None, None, feats.shape[1])


def build_corpus(dataset: str, root: str | None = None, source: str = "auto") -> Corpus:
    if dataset == "cifar10":
        return cifar10(root, source)
    if dataset == "fashion_mnist":
        return fashion_mnist(root)
    if root is None:
        raise ValueError(f"data.dataset={dataset} needs data.root (the folder or file to read)")
    return {"image_folder": image_folder, "list_file": list_file, "features": feature_file}[dataset](root)
