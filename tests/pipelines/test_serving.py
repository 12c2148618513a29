"""`mlflow models serve` of the registered encoder on 127.0.0.1 answers a real HTTP request with packed codes."""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from nsh import tracking
from nsh.config import load_config

from conftest import REPO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_registered_model_serves_packed_codes_over_http_on_localhost(tmp_path, trained_tiny, monkeypatch):
    from nsh.checkpoint import load_model
    from nsh.codes import pack
    from nsh.data import eval_view
    import torch
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = load_config(REPO / "conf" / "test_tiny.yaml", [f"mlflow.tracking_uri={uri}"])
    client, _ = tracking.setup(cfg)
    _, ckpt = trained_tiny
    images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    run_id = tracking.start_run(cfg)
    tracking.register(client, tracking.log_model(run_id, ckpt / "checkpoint.pt", cfg, images), "nsh", run_id, 0.5, cfg)

    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    server = subprocess.Popen(["mlflow", "models", "serve", "-m", "models:/nsh@champion", "--env-manager", "local",
                               "--host", "127.0.0.1", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
                break
            except OSError:
                assert server.poll() is None, "mlflow models serve exited"
                time.sleep(1)
        else:
            pytest.fail("the model server did not come up in 180 s")
        listening = subprocess.run(["ss", "-ltn", f"sport = :{port}"], capture_output=True, text=True).stdout
        assert f"127.0.0.1:{port}" in listening and f"0.0.0.0:{port}" not in listening
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations",
                                         data=json.dumps({"inputs": images.tolist()}).encode(),
                                         headers={"Content-Type": "application/json"})
        served = np.array(json.loads(urllib.request.urlopen(request, timeout=60).read())["predictions"], np.uint8)
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
    model, mcfg, _ = load_model(ckpt)
    t = eval_view(mcfg.data.image_size, model.mean, model.std)
    expected = pack(model.encode(torch.stack([t(Image.fromarray(im)) for im in images])))
    assert served.shape == (2, 2) and np.array_equal(served, expected)
