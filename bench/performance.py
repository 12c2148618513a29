"""Each stage against its limit, side by side in one run on one machine (issue #6).

    python bench/performance.py [--quick] [--only sorting step encode loader backbone scale search metrics]

Sections (each a ratio of two things measured here, now; medians of --repeats):
- sorting: SortedNCE forward + backward with softsort / torchsort / plain InfoNCE, time and peak memory by batch n.
- step: one whole training step (heads on cached features, and a fine-tuned backbone) with each loss.
- encode: the Ray Data encode pipeline against a plain PyTorch loop over the same model and images.
- loader: what the loader workers hand over per second at the full preset's 224 px (encode and training views),
  float32 made in the workers (before) against uint8 normalised where the batch lands (now).
- backbone: the frozen EfficientNet-Lite0 forward pass on the CPU at 96 / 160 / 224 px, NCHW input (before)
  against the channels-last input that nsh.models.Hasher.features now hands it.
- scale: the Ray Data pipeline over 100k -> 1M feature rows and a growing image folder: time and peak memory.
- search: nsh.search.HammingIndex against raw faiss IndexBinaryFlat on 1M codes; scan rate against a NumPy copy;
  IndexBinaryMultiHash recall and speed at 64 and 128 bits.
- metrics: mAP@1000 on 1,000 x 54,000 against a naive NumPy loop that fully sorts each query's distances.
Writes docs/performance.json and docs/performance.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import faiss  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from nsh.codes import hamming_matrix, pack  # noqa: E402
from nsh.config import load_config  # noqa: E402
from nsh.metrics import map_at_k  # noqa: E402
from nsh.search import HammingIndex  # noqa: E402


def log(msg):
    print(msg, flush=True)


def median_times(fns: dict, repeats: int, warmup: int = 1, settle: bool = False) -> dict:
    """Median seconds of each function, timed in turns (a, b, a, b, ...): a ratio of two contenders is then
    not skewed by the machine getting busier or quieter between them. With settle, each turn first runs the
    function once untimed, so that it does not pay for the caches and freed memory that the previous one left."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            if settle:
                fn()
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {name: statistics.median(ts) for name, ts in times.items()}


def median_time(fn, repeats: int, warmup: int = 1) -> float:
    return median_times({"": fn}, repeats, warmup)[""]


def isolated(code: str) -> dict:
    """Run `code` (which prints one JSON line last) in a fresh interpreter: an honest peak RSS per measurement."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'bench'}"})
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["killed"])[-1][:200]}
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- sorting
SORT_CODE = """
import json, resource, torch
from sorters import measure
torch.set_num_threads({threads})
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
sec, _ = measure({kind!r}, {n}, {nbits}, 128, "cpu", {repeats})
print(json.dumps({{"seconds": sec, "peak_mib": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024}}))
"""


def sorting(a) -> list[dict]:
    rows = []
    sizes = [64, 256, 1024] if a.quick else [64, 256, 512, 1024, 2048, 4096, 8192]
    for n in sizes:
        for kind in ("infonce", "torchsort", "softsort"):
            # softsort holds several n x n x n float tensors: n = 1024 took 20.5 GiB on the H100 (docs/gpu).
            if kind == "softsort" and n > 512:
                rows.append({"n": n, "sorter": kind, "note": f"not run: ~{20.5 * (n / 1024) ** 3:.0f} GiB (n^3)"})
                continue
            r = isolated(SORT_CODE.format(threads=a.threads, kind=kind, n=n, nbits=64, repeats=a.repeats))
            rows.append({"n": n, "sorter": kind, **r})
            log(f"sorting n={n:5d} {kind:9s} " + (f"{r['seconds'] * 1e3:9.1f} ms, peak +{r['peak_mib']:7.0f} MiB"
                                                  if "seconds" in r else r["error"]))
    return rows


# ---------------------------------------------------------------- training step
def training_step(a) -> list[dict]:
    """One optimiser step of the real model and loss, by sorter, against the same step with nothing sorted.

    Two loss forms. The paper's (m = 1, codes trained only through the sort): its floor is InfoNCE on the
    latents with the own view as the only positive, which leaves the hash head untrained, so its share also
    holds the hash head's backward and update. The presets' (own view + 1 mined positive + code NT-Xent 0.5):
    its floor is the same loss with m = 1, where the sorter is never called, so the difference is the sort alone.
    """
    rows = []
    cases = [("heads on cached features (quick preset)", "conf/cifar10_quick.yaml", 256, []),
             ("fine-tuned backbone, 96 px (full preset's model)", "conf/cifar10_full.yaml", 64, ["data.image_size=96"])]
    forms = {"paper": dict(m=1, own_positive=False, code_weight=0.0),
             "preset": dict(m=2, own_positive=True, code_weight=0.5)}
    for what, conf, n, extra in cases:
        cfg = load_config(ROOT / conf, extra + [f"train.batch_size={n}"])
        for form, kw in forms.items():
            steps = {kind: _step(cfg, n, kind, kw) for kind in ("infonce", "torchsort", "softsort")}
            # a 30 ms step on a shared machine needs many turns for a stable median; a 2 s one does not
            secs = median_times(steps, 6 * a.repeats if cfg.model.freeze_backbone else 3, settle=True)
            for kind, sec in secs.items():
                rows.append({"case": what, "form": form, "batch": n, "loss": kind, "seconds": sec})
                log(f"step {what} {form} n={n} {kind:9s} {sec * 1e3:9.1f} ms")
    return rows


def _step(cfg, n: int, kind: str, form: dict):
    """One optimiser step of a fresh model on random input; kind 'infonce' is the form with nothing to sort."""
    from nsh.checkpoint import build_model
    from nsh.losses import SortedNCE
    from nsh.sorters import build_sorter

    torch.manual_seed(0)
    model = build_model(cfg)
    feature = cfg.model.freeze_backbone
    x = (torch.randn(2 * n, model.feature_dim) if feature else
         torch.randn(2 * n, 3, cfg.data.image_size, cfg.data.image_size))
    floor = dict(form, m=1, own_positive=True)  # own view the only positive: nothing left to sort
    loss_fn = SortedNCE(build_sorter("torchsort" if kind == "infonce" else kind, cfg.loss.steepness),
                        tau=cfg.loss.tau, **(floor if kind == "infonce" else form))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step():
        codes, z = model(x, is_feature=feature)
        loss = loss_fn(codes[:n], z[:n], codes[n:], z[n:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step


# ---------------------------------------------------------------- encoding
def _trained_checkpoint(tmp: Path, cifar_root: str | None) -> Path:
    """A quick-preset model (1 short epoch on a small split): what encode needs, trained for real."""
    from nsh.training import LocalSession, fit

    cfg = load_config(ROOT / "conf" / "test_tiny.yaml", [
        f"output_dir={tmp}/model", f"data.split_file={tmp}/split.json", "train.epochs=1", "data.image_size=96",
        "model.hidden=1024", "model.latent_dim=128", "model.nbits=64"] + ([f"data.root={cifar_root}"] if cifar_root else []))
    fit(cfg, log=lambda *_: None)
    return LocalSession(cfg.output_dir).latest_checkpoint() / "checkpoint.pt"


class RssSampler:
    """Peak summed memory of the processes whose command line contains `word`, sampled every 0.2 s.

    Two sums: RSS, and its anonymous part (heap, tensors: what the processes own). RSS also counts pages
    that are not the processes' own: file pages of memory-mapped inputs (page cache, reclaimable) and Ray's
    shared-memory object store, which every process that maps a block counts again.
    """

    def __init__(self, word: str):
        self.word, self.peak, self.peak_anon, self._stop = word, 0, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            total = anon = 0
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    if self.word in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                        status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
                        total += int(status["VmRSS"].split()[0]) * 1024
                        anon += int(status["RssAnon"].split()[0]) * 1024
                except (OSError, ValueError, KeyError):
                    continue
            self.peak, self.peak_anon = max(self.peak, total), max(self.peak_anon, anon)
            time.sleep(0.2)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def ray_encode(ckpt: Path, spec, indices: np.ndarray, out: Path, concurrency: int, shard_size: int) -> float:
    from pipelines import ray_runtime
    from nsh.encoding import plan

    cfg = load_config(ROOT / "conf" / "test_tiny.yaml", [f"encode.concurrency={concurrency}",
                                                        f"encode.shard_size={shard_size}", "encode.batch_size=256"])
    t = time.perf_counter()
    shards = plan(out, spec.build().ids[indices], shard_size, str(ckpt))
    ray_runtime.encode(shards, ckpt, spec, str(ckpt), indices, out, cfg)
    return time.perf_counter() - t


def encoding(a, tmp: Path) -> list[dict]:
    """Ray Data pipeline vs the plain loop over the same images: the ratio of items/s, each end to end."""
    from pipelines import ray_runtime
    from nsh.encoding import CorpusSpec, ShardEncoder, encode_local

    ckpt = _trained_checkpoint(tmp, a.cifar_root)
    spec = CorpusSpec("cifar10", a.cifar_root)
    n = 2048 if a.quick else 8192  # Ray's fixed start-up (actors, model loading: ~10 s here) is part of the ratio
    rounds = 1 if a.quick else 3  # contenders in turns, so that a ratio compares runs made minutes apart at most
    idx = np.arange(n)
    torch.set_num_threads(a.threads)
    enc = ShardEncoder(ckpt, spec, str(ckpt), batch_size=256)
    for path in enc.corpus.paths[idx]:  # every contender reads from the page cache, the first one too
        Path(path).read_bytes()
    ray_runtime.connect(load_config(ROOT / "conf" / "test_tiny.yaml", [f"ray.num_cpus={a.threads}"]))
    per_actor = int(os.environ.get("OMP_NUM_THREADS", "1"))  # what each actor's torch uses (Ray's default: 1)
    speeds: dict[str, list[float]] = {}
    for r in range(rounds):
        t = time.perf_counter()
        encode_local(enc, idx, tmp / f"plain{r}", shard_size=n, log=lambda *_: None)
        speeds.setdefault(f"plain PyTorch loop, {a.threads} threads", []).append(n / (time.perf_counter() - t))
        for actors in (1, a.threads):
            sec = ray_encode(ckpt, spec, idx, tmp / f"ray{actors}_{r}", actors, max(256, n // (4 * actors)))
            speeds.setdefault(f"Ray Data pipeline, {actors} actor(s) x {per_actor} thread(s)", []).append(n / sec)
        log("encode round " + str(r) + ": " + ", ".join(f"{w}: {v[-1]:.0f} images/s" for w, v in speeds.items()))
    plain = next(iter(speeds.values()))
    rows = []
    for what, v in speeds.items():
        ratios = [x / p for x, p in zip(v, plain)]
        rows.append({"what": what, "items": n, "rounds": rounds, "items_per_s": statistics.median(v),
                     "per_round": [round(x, 1) for x in v],
                     "ratio_to_plain": statistics.median(ratios) if v is not plain else None,
                     "ratios": [round(x, 3) for x in ratios] if v is not plain else None})
    return rows


def loader(a) -> list[dict]:
    """The encode loader alone at 224 px, the size that bound GPU encoding: the worker-side transform, and a
    DataLoader with one worker process delivering batches to a consumer that makes the model's input."""
    from torch.utils.data import DataLoader

    from nsh.data import (ItemDataset, build_corpus, collate_skip_bad, eval_load, eval_view, normalize_batch,
                          train_load, train_view)

    corpus = build_corpus("cifar10", a.cifar_root)
    size, mean, std = 224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    n = 1024 if a.quick else 4096
    forms = {"encode: float32 in the workers (eval_view, before)": (eval_view(size, mean, std), lambda x: x),
             "encode: uint8, normalised by the consumer (eval_load, now)": (
                 eval_load(size), lambda x: normalize_batch(x, mean, std)),
             "one training view: float32 in the workers (train_view, before)": (train_view(size, mean, std), lambda x: x),
             "one training view: uint8, normalised by the consumer (train_load, now)": (
                 train_load(size), lambda x: normalize_batch(x, mean, std))}
    images = [corpus.load(i) for i in range(256)]
    torch.set_num_threads(1)  # as in a loader worker; for the DataLoader below, the other core runs the worker
    per_image = median_times({f: (lambda t=t: [t(im) for im in images]) for f, (t, _) in forms.items()}, a.repeats)

    def deliver(transform, finish):
        ds = ItemDataset(corpus, np.arange(n), transform)
        for batch in DataLoader(ds, batch_size=256, num_workers=1, collate_fn=collate_skip_bad):
            finish(batch["x"]).sum()  # the consumer touches every value, as the H2D copy would
    delivered = median_times({f: (lambda t=t, g=g: deliver(t, g)) for f, (t, g) in forms.items()},
                             max(1, a.repeats // 2))
    torch.set_num_threads(a.threads)
    return [{"what": f, "transform_ms_per_image": per_image[f] / len(images) * 1e3,
             "bytes_per_image": forms[f][0](images[0]).element_size() * 3 * size * size,
             "images_per_s_one_worker": n / delivered[f]} for f in forms]


def backbone(a) -> list[dict]:
    """The frozen backbone's forward pass on this CPU, per input size: plain NCHW input against Hasher.features,
    which hands oneDNN channels-last input. Real CIFAR-10 images, as the feature cache feeds them."""
    from nsh.data import build_corpus, eval_view
    from nsh.models import Hasher

    model = Hasher("efficientnet_lite0", 32).eval()
    corpus = build_corpus("cifar10", a.cifar_root)
    batch = 32 if a.quick else 128
    rows = []
    for size in (96, 160, 224):
        x = torch.stack([eval_view(size, model.mean, model.std)(corpus.load(i)) for i in range(batch)])
        with torch.no_grad():
            nchw, nhwc = model.backbone(x), model.features(x)
            sec = median_times({"nchw": lambda: model.backbone(x), "nhwc": lambda: model.features(x)}, a.repeats)
        rows.append({"size": size, "batch": batch, "nchw_images_per_s": batch / sec["nchw"],
                     "nhwc_images_per_s": batch / sec["nhwc"], "speedup": sec["nchw"] / sec["nhwc"],
                     "max_abs_difference": float((nchw - nhwc).abs().max())})
        log(f"backbone at {size} px: NCHW {rows[-1]['nchw_images_per_s']:.0f}, channels-last "
            f"{rows[-1]['nhwc_images_per_s']:.0f} images/s")
    return rows


def scaling(a, tmp: Path) -> list[dict]:
    """Feature rows 100k -> 1M and a growing image folder through the Ray Data pipeline: time and peak RSS."""
    from nsh.checkpoint import build_model, save
    from nsh.encoding import CorpusSpec

    rows = []
    d = 256
    cfg = load_config(ROOT / "conf" / "test_tiny.yaml", ["data.dataset=features", "model.backbone=features",
                                                         f"model.feature_dim={d}", "data.cache_views=0",
                                                         "model.nbits=64", "model.hidden=512"])
    model = build_model(cfg)
    ckpt = save(tmp / "features_model", model, cfg, 0, {})
    rng = np.random.default_rng(0)
    sizes = [20_000, 100_000] if a.quick else [100_000, 300_000, 1_000_000]
    big = tmp / "features.npy"
    np.save(big, rng.standard_normal((max(sizes), d), dtype=np.float32))
    for n in sizes:
        path = tmp / f"features_{n}.npy"
        np.save(path, np.load(big, mmap_mode="r")[:n])
        with RssSampler("ray::") as rss:
            sec = ray_encode(ckpt, CorpusSpec("features", str(path)), np.arange(n), tmp / f"scale_{n}", 2, 20_000)
        rows.append({"corpus": "feature rows", "items": n, "seconds": sec, "items_per_s": n / sec,
                     "peak_ray_rss_mib": rss.peak / 2**20, "peak_ray_anon_mib": rss.peak_anon / 2**20})
        log(f"scale: {n:8d} feature rows {sec:6.1f} s ({n / sec:.0f} rows/s), Ray workers peak {rss.peak / 2**20:.0f} "
            f"MiB RSS, {rss.peak_anon / 2**20:.0f} MiB anonymous")
        path.unlink()
    ckpt_img = _trained_checkpoint(tmp / "img", a.cifar_root)
    for n in ([1024, 2048] if a.quick else [2048, 4096, 8192]):
        with RssSampler("ray::") as rss:
            sec = ray_encode(ckpt_img, CorpusSpec("cifar10", a.cifar_root), np.arange(n), tmp / f"scale_img_{n}", 2, 1024)
        rows.append({"corpus": "CIFAR-10 image folder (JPEG, 96 px)", "items": n, "seconds": sec, "items_per_s": n / sec,
                     "peak_ray_rss_mib": rss.peak / 2**20, "peak_ray_anon_mib": rss.peak_anon / 2**20})
        log(f"scale: {n:8d} images {sec:6.1f} s ({n / sec:.0f} images/s), Ray workers peak {rss.peak / 2**20:.0f} MiB "
            f"RSS, {rss.peak_anon / 2**20:.0f} MiB anonymous")
    return rows


# ---------------------------------------------------------------- search
def clustered_codes(rng, n: int, nbits: int, centers: int = 2000, flip: float = 0.03) -> np.ndarray:
    """Codes with near neighbours, as trained codes have: noisy copies of cluster centres."""
    c = rng.integers(0, 2, (centers, nbits), dtype=np.uint8)
    bits = c[rng.integers(0, centers, n)] ^ (rng.random((n, nbits)) < flip).astype(np.uint8)
    return np.packbits(bits, axis=1)


def search(a) -> list[dict]:
    rng = np.random.default_rng(0)
    n = 200_000 if a.quick else 1_000_000
    nq, k = 1000, 100
    rows = []
    db = clustered_codes(rng, n, 64)
    q = clustered_codes(np.random.default_rng(1), nq, 64)
    raw = faiss.IndexBinaryFlat(64)
    raw.add(db)
    ours = HammingIndex.build(db, 64)
    t_raw, t_ours = median_times({"raw": lambda: raw.search(q, k), "ours": lambda: ours.search(q, k)},
                                 a.repeats).values()
    scanned = nq * n * 8  # bytes of codes compared
    buf = np.ones(512 * 2**20, np.uint8)
    t_copy = median_time(lambda: buf.copy(), a.repeats)
    bandwidth = 2 * buf.nbytes / t_copy  # read + write
    rows.append({"what": f"flat, {n} x 64-bit codes, {nq} queries, k={k}", "faiss_qps": nq / t_raw, "nsh_qps": nq / t_ours,
                 "ratio": t_raw / t_ours, "scan_bytes_per_s": scanned / t_ours, "numpy_copy_bytes_per_s": bandwidth,
                 "threads": faiss.omp_get_max_threads()})
    log(f"search flat: faiss {nq / t_raw:.0f} q/s, nsh {nq / t_ours:.0f} q/s ({t_raw / t_ours:.3f}); scan "
        f"{scanned / t_ours / 1e9:.2f} GB/s vs NumPy copy {bandwidth / 1e9:.2f} GB/s")
    for nbits in (64, 128):
        db = clustered_codes(rng, n, nbits)
        q = clustered_codes(np.random.default_rng(1), nq, nbits)
        flat = HammingIndex.build(db, nbits)
        t_flat = median_time(lambda: flat.search(q, 10), a.repeats)
        truth, _ = flat.search(q, 10)
        for nhash in (2, 4, 8):
            mh = HammingIndex.build(db, nbits, kind="multihash", nhash=nhash)
            t_mh = median_time(lambda: mh.search(q, 10), a.repeats)
            got, ids = mh.search(q, 10)
            # by distance, not by id: among items tied at the 10th distance any choice is as good as flat's
            recall = float(np.mean((ids >= 0) & (got <= truth[:, -1:])))
            rows.append({"what": f"multihash {nbits} bits, nhash={nhash}, k=10", "qps": nq / t_mh,
                         "flat_qps": nq / t_flat, "speedup": t_flat / t_mh, "recall_at_10": float(recall)})
            log(f"search multihash {nbits} bits nhash={nhash}: {nq / t_mh:.0f} q/s ({t_flat / t_mh:.1f}x flat), "
                f"recall@10 {recall:.3f}")
    return rows


# ---------------------------------------------------------------- metrics
def naive_map(q, db, ql, dl, k) -> float:
    """mAP@k the way most hashing code computes it (e.g. DeepHash's CalcTopMap): +-1 float codes, distance by dot
    product, a full sort of each query's distances; the sort made stable so that ties fall as in nsh."""
    bq, bdb = np.unpackbits(q, axis=1) * 2.0 - 1, np.unpackbits(db, axis=1) * 2.0 - 1
    nbits = bq.shape[1]
    aps = []
    for i in range(len(q)):
        hamm = 0.5 * (nbits - bdb @ bq[i])
        gnd = (dl == ql[i]).astype(np.float64)[np.argsort(hamm, kind="stable")][:k]
        hits = np.cumsum(gnd)
        aps.append((gnd * hits / np.arange(1, k + 1)).sum() / hits[-1] if hits[-1] else 0.0)
    return float(np.mean(aps))


def metrics(a) -> list[dict]:
    rng = np.random.default_rng(0)
    nq, ndb, k = (1000, 54_000, 1000) if a.quick else (1000, 54_000, 1000)
    ql, dl = rng.integers(0, 10, nq), rng.integers(0, 10, ndb)
    # label-correlated 32-bit codes, so that AP is neither 0 nor 1
    centers = rng.integers(0, 2, (10, 32))
    make = lambda lab: pack(np.where((centers[lab] ^ (rng.random((len(lab), 32)) < 0.3)) > 0, 1, -1))  # noqa: E731
    q, db = make(ql), make(dl)
    t_ours = median_time(lambda: map_at_k(q, db, ql, dl, k), a.repeats)
    ours = map_at_k(q, db, ql, dl, k)
    t = time.perf_counter()
    naive = naive_map(q, db, ql, dl, k)
    t_naive = time.perf_counter() - t
    row = {"what": f"mAP@{k}, {nq} queries x {ndb} database, 32 bits", "nsh_seconds": t_ours, "naive_seconds": t_naive,
           "speedup": t_naive / t_ours, "nsh_map": ours, "naive_map": naive, "abs_difference": abs(ours - naive)}
    log(f"metrics: nsh {t_ours:.2f} s, naive {t_naive:.1f} s ({t_naive / t_ours:.0f}x), |diff| {abs(ours - naive):.1e}")
    return [row]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smaller sizes: a check that every section runs")
    p.add_argument("--only", nargs="+", choices=["sorting", "step", "encode", "loader", "backbone", "scale", "search",
                                                  "metrics"])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--cifar-root", help="CIFAR-10 image folder; default: the project's usual location")
    p.add_argument("--out", default=str(ROOT / "docs" / "performance.json"))
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    wall = time.time()
    sections = {"sorting": sorting, "step": training_step, "encode": encoding, "loader": loader, "backbone": backbone,
                "scale": scaling, "search": search, "metrics": metrics}
    result = {"command": "python bench/performance.py " + shlex.join(sys.argv[1:]),
              "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
                         f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, torch "
                         f"{torch.__version__}, faiss {faiss.__version__}",
              "threads": a.threads, "repeats": a.repeats}
    with tempfile.TemporaryDirectory() as tmp:
        for name, fn in sections.items():
            if a.only and name not in a.only:
                continue
            t = time.time()
            args = (a, Path(tmp) / name) if name in ("encode", "scale") else (a,)
            result[name] = fn(*args)
            log(f"== {name}: {time.time() - t:.0f} s")
    result["wall_seconds"] = time.time() - wall
    if a.only and Path(a.out).is_file():  # a partial rerun replaces its sections and keeps the others
        old = json.loads(Path(a.out).read_text())
        result = {**old, **result, "command": old["command"] + "; then " + result["command"],
                  "wall_seconds": old["wall_seconds"] + result["wall_seconds"]}
    Path(a.out).write_text(json.dumps(result, indent=2))
    md = Path(a.out).with_suffix(".md")
    md.write_text(render(result))
    log(f"wrote {a.out} and {md}")


FORMS = {"paper": "paper (m = 1)", "preset": "presets' (own view + 1 mined + code NT-Xent 0.5)"}


def _table(rows: list[dict], columns: dict[str, str]) -> list[str]:
    def cell(v):
        if v is None:
            return ""
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
        return str(v)
    out = ["| " + " | ".join(columns.values()) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return out + [""]


def render(r: dict) -> str:
    """docs/performance.md from the JSON: every number below was measured by the command at its top."""
    lines = ["# Performance (`bench/performance.py`)", "",
             f"Command: `{r['command']}`; machine: {r['machine']}; {r['threads']} threads; medians of {r['repeats']} "
             f"repeats unless a section says otherwise; wall time {r['wall_seconds'] / 60:.1f} min. Every ratio compares two things measured in this "
             "run on this machine.", ""]
    notes = ROOT / "docs" / "performance_notes.md"  # hand-written reading of the tables, kept across re-renders
    if notes.is_file():
        lines += [notes.read_text().strip(), ""]
    if "sorting" in r:
        lines += ["## Sorting: SortedNCE forward + backward (64 bits, 128-d latents, m = 1)", "",
                  "Peak memory is the growth of a fresh process's peak RSS over its baseline during the step.", ""]
        lines += _table([{**x, "ms": x["seconds"] * 1e3 if "seconds" in x else None,
                          "why": x.get("note") or x.get("error")} for x in r["sorting"]],
                        {"n": "batch n", "sorter": "loss", "ms": "ms per step", "peak_mib": "peak MiB", "why": "note"})
    if "step" in r:
        rows = []
        for x in r["step"]:
            floor = next(y["seconds"] for y in r["step"]
                         if (y["case"], y.get("form"), y["loss"]) == (x["case"], x.get("form"), "infonce"))
            form = FORMS.get(x.get("form"), x.get("form"))
            rows.append({**x, "form": form, "ms": x["seconds"] * 1e3,
                         "share": 1 - floor / x["seconds"] if x["loss"] != "infonce" else None})
        lines += ["## One training step with each loss", "",
                  "Share of the step spent on sorting = 1 − (floor step) / (step with the sorter). The floor (loss "
                  "`infonce`) is the same step with the own view as the only positive, so nothing is sorted: for the "
                  "paper's form that is InfoNCE on the latents, which leaves the hash head untrained (its backward "
                  "and update count as the sort's); for the presets' form it is the same loss with m = 1, code "
                  "NT-Xent included, so the difference is the sort alone. Medians of 6 × repeats turns for heads-only steps, "
                  "3 for fine-tuned ones.", ""]
        lines += _table(rows, {"case": "step", "form": "loss form", "batch": "batch", "loss": "loss",
                               "ms": "ms per step", "share": "share of the sort"})
    if "encode" in r:
        lines += ["## Encoding: Ray Data pipeline against a plain PyTorch loop (same model, same images)", ""]
        lines += _table(r["encode"], {"what": "encoder", "items": "images", "items_per_s": "images/s (median)",
                                      "per_round": "images/s by round", "ratio_to_plain": "of the plain loop (median)",
                                      "ratios": "by round"})
    if "loader" in r:
        lines += ["## The loader at 224 px (CIFAR-10's 32 px images upscaled, as in the full preset)", "",
                  "Per-image transform cost in one thread (what each loader worker pays), the bytes a worker hands "
                  "to the main process, and images/s delivered by a DataLoader with one worker to a consumer that "
                  "makes the model's input from them (on a GPU that last step runs on the device).", ""]
        lines += _table(r["loader"], {"what": "loader output", "transform_ms_per_image": "transform ms/image",
                                      "bytes_per_image": "bytes/image",
                                      "images_per_s_one_worker": "images/s, 1 worker"})
    if "backbone" in r:
        lines += ["## The frozen backbone on this CPU: NCHW against channels-last input", "",
                  "EfficientNet-Lite0 forward pass on real CIFAR-10 images (the feature cache's and the encoder's "
                  "work per image), plain NCHW input against `Hasher.features`, which hands oneDNN channels-last "
                  "input; the two outputs differ by float32 rounding only.", ""]
        lines += _table(r["backbone"], {"size": "input px", "batch": "batch", "nchw_images_per_s": "NCHW images/s",
                                        "nhwc_images_per_s": "channels-last images/s", "speedup": "speed-up",
                                        "max_abs_difference": "max |difference|"})
    if "scale" in r:
        lines += ["## Scaling of the Ray Data encode pipeline", "",
                  "Peak memory of all Ray worker processes together, sampled every 0.2 s: RSS, and its anonymous "
                  "part (what the workers own). RSS also counts page-cache pages of the memory-mapped input and "
                  "Ray's shared-memory object store once per process that maps a block.", ""]
        lines += _table(r["scale"], {"corpus": "corpus", "items": "items", "seconds": "seconds",
                                     "items_per_s": "items/s", "peak_ray_rss_mib": "peak RSS MiB",
                                     "peak_ray_anon_mib": "peak anonymous MiB"})
    if "search" in r:
        flat, mh = r["search"][0], r["search"][1:]
        lines += ["## Hamming search", "", f"{flat['what']}, {flat['threads']} faiss threads: raw faiss "
                  f"IndexBinaryFlat {flat['faiss_qps']:.0f} queries/s, nsh.search.HammingIndex {flat['nsh_qps']:.0f} "
                  f"queries/s ({flat['ratio']:.3f} of faiss). Scan rate {flat['scan_bytes_per_s'] / 1e9:.2f} GB/s of "
                  f"codes against {flat['numpy_copy_bytes_per_s'] / 1e9:.2f} GB/s moved by a 512 MiB NumPy copy (read + "
                  "write).", "",
                  "IndexBinaryMultiHash (nflip = 1) on clustered codes (copies of 2,000 random centres with 3% of bits flipped), recall@10 "
                  "against the exact flat search:", ""]
        lines += _table(mh, {"what": "index", "qps": "queries/s", "flat_qps": "flat queries/s", "speedup": "speed-up",
                             "recall_at_10": "recall@10"})
    if "metrics" in r:
        lines += ["## Metrics", ""]
        lines += _table(r["metrics"], {"what": "metric", "nsh_seconds": "nsh s", "naive_seconds": "naive s",
                                       "speedup": "speed-up", "abs_difference": "|nsh − naive|"})
        lines += ["The naive reference is the loop most hashing code uses (DeepHash's CalcTopMap): ±1 float codes, "
                  "distances by a dot product, a full (stable) sort per query.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
