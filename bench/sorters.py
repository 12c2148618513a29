"""Sorter cost: SortedNCE forward + backward with softsort and torchsort against plain InfoNCE (no sort).

    python bench/sorters.py [--device cuda] [--sizes 64 256 1024 4096] [--out docs/sorters.json]

Median of --repeats timed runs after a warm-up, all in one process on one device; peak memory from the
CUDA allocator on a GPU, from tracemalloc-free RSS growth on a CPU (ru_maxrss, a coarse upper bound).
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from nsh.losses import SortedNCE  # noqa: E402
from nsh.models.heads import sign_ste  # noqa: E402
from nsh.sorters import build_sorter  # noqa: E402


def step(kind, n, nbits, dz, device):
    h = torch.randn(2 * n, nbits, device=device, requires_grad=True)
    z = F.normalize(torch.randn(2 * n, dz, device=device, requires_grad=True), dim=1)
    codes = sign_ste(h)
    if kind == "infonce":
        loss = F.cross_entropy(z[n:] @ z[:n].T / 0.3, torch.arange(n, device=device))
    else:
        loss = SortedNCE(build_sorter(kind, 0.5), m=1, tau=0.3)(codes[:n], z[:n], codes[n:], z[n:])
    loss.backward()


def measure(kind, n, nbits, dz, device, repeats):
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    step(kind, n, nbits, dz, device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        sync()
        t = time.perf_counter()
        step(kind, n, nbits, dz, device)
        sync()
        times.append(time.perf_counter() - t)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else \
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return statistics.median(times), peak


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 1024, 4096])
    p.add_argument("--nbits", type=int, default=64)
    p.add_argument("--latent", type=int, default=128)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--max-softsort", type=int, default=1024, help="largest n tried with softsort (n^3 memory)")
    p.add_argument("--out")
    a = p.parse_args()
    rows = []
    for n in a.sizes:
        for kind in ("infonce", "torchsort", "softsort"):
            if kind == "softsort" and n > a.max_softsort:
                rows.append({"n": n, "sorter": kind, "seconds": None, "peak_mib": None, "note": "skipped: n^3 memory"})
                continue
            try:
                sec, peak = measure(kind, n, a.nbits, a.latent, a.device, a.repeats)
                rows.append({"n": n, "sorter": kind, "seconds": sec, "peak_mib": peak})
            except torch.OutOfMemoryError:
                rows.append({"n": n, "sorter": kind, "seconds": None, "peak_mib": None, "note": "out of memory"})
                torch.cuda.empty_cache()
            r = rows[-1]
            print(f"n={n:5d} {kind:9s} " + (f"{r['seconds'] * 1e3:9.2f} ms  peak {r['peak_mib']:8.1f} MiB"
                                           if r["seconds"] is not None else r["note"]), flush=True)
    result = {"device": torch.cuda.get_device_name(0) if a.device.startswith("cuda") else "cpu",
              "torch": torch.__version__, "nbits": a.nbits, "latent": a.latent, "rows": rows}
    if a.out:
        Path(a.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
