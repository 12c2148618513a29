"""Shared fixtures: real data from ../shared and Debian, one Ray cluster and one MLflow store per session."""
from __future__ import annotations

import os

# One thread each: on a 2-core box OpenMP spin-waits turn milliseconds into hundreds of them.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# Ray reads these when it is imported, and any test module may import it during collection: the session's
# head runs without token auth and binds 127.0.0.1 only, and every client in this process must agree.
os.environ["RAY_AUTH_MODE"] = "disabled"
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def cifar_root() -> Path:
    from nsh.data.sources import find_cifar10_folder

    return find_cifar10_folder(None)


@pytest.fixture
def image_folder(tmp_path, cifar_root) -> Path:
    """A small real image folder (3 classes x 12 CIFAR-10 images) plus the awkward files users have:
    a grey PNG and an RGBA PNG (to be converted), a corrupt JPEG, a truncated JPEG and a zero-byte file."""
    import shutil

    from PIL import Image

    root = tmp_path / "images"
    for c in ("airplane", "cat", "ship"):
        (root / c).mkdir(parents=True)
        for f in sorted((cifar_root / "train" / c).iterdir())[:12]:
            shutil.copy(f, root / c / f.name)
    Image.open(cifar_root / "train" / "cat" / "0100.jpg").convert("L").save(root / "cat" / "grey.png")
    Image.open(cifar_root / "train" / "ship" / "0100.jpg").convert("RGBA").save(root / "ship" / "rgba.png")
    (root / "cat" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg at all" * 10)
    good = (cifar_root / "train" / "airplane" / "0100.jpg").read_bytes()
    (root / "airplane" / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (root / "ship" / "empty.jpg").write_bytes(b"")
    return root


BAD_FILES = {"cat/corrupt.jpg", "airplane/truncated.jpg", "ship/empty.jpg"}


@pytest.fixture(scope="session")
def trained_tiny(tmp_path_factory):
    """One tiny model trained once (2 epochs, 16 bits) for the encoding and tracking tests."""
    from nsh.config import load_config
    from nsh.training import LocalSession, fit

    root = tmp_path_factory.mktemp("tiny_model")
    cfg = load_config(REPO / "conf" / "test_tiny.yaml", [f"output_dir={root}/run", f"data.split_file={root}/split.json"])
    fit(cfg, log=lambda *_: None)
    return cfg, LocalSession(cfg.output_dir).latest_checkpoint()


@pytest.fixture(scope="session")
def ray_head(tmp_path_factory):
    """One real Ray head for the whole session, on 127.0.0.1, with its job server; stopped at the end."""
    import shutil
    import subprocess
    import sys

    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
           "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(REPO)}
    ray = shutil.which("ray", path=env["PATH"])
    subprocess.run([ray, "stop", "--force"], env=env, capture_output=True)
    subprocess.run([ray, "start", "--head", "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1",
                    "--num-cpus=2", "--disable-usage-stats", "--include-dashboard=true"],
                   env=env, check=True, capture_output=True)
    yield {"address": "127.0.0.1:6379", "dashboard": "http://127.0.0.1:8265", "env": env, "ray": ray}
    import ray as ray_mod

    ray_mod.shutdown()
    subprocess.run([ray, "stop", "--force"], env=env, capture_output=True)


def listening_sockets() -> list[tuple[str, int, int, str]]:
    """(ip, port, pid, command line) of every TCP socket listening on this machine, read from /proc (Linux)."""
    import re

    inodes = {}
    for family in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{family}").read_text().splitlines()[1:]:
            f = line.split()
            if f[3] != "0A":  # TCP_LISTEN
                continue
            addr, port = f[1].split(":")
            raw = bytes.fromhex(addr)
            # /proc prints each 32-bit word in host (little-endian) order
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            ip = ".".join(map(str, raw)) if family == "tcp" else str(__import__("ipaddress").IPv6Address(raw))
            inodes[f[9]] = (ip, int(port, 16))
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # gone, or not ours to read
            continue
        for fd in fds:
            try:
                m = re.fullmatch(r"socket:\[(\d+)\]", os.readlink(f"/proc/{pid}/fd/{fd}"))
            except OSError:
                continue
            if m and m.group(1) in inodes:
                out.append((*inodes[m.group(1)], int(pid), cmd))
    return sorted(set(out))


def is_loopback(ip: str) -> bool:
    import ipaddress

    addr = ipaddress.ip_address(ip)
    return addr.is_loopback or (addr.version == 6 and addr.ipv4_mapped is not None and addr.ipv4_mapped.is_loopback)
