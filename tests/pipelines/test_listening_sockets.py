"""Every server the project starts listens on 127.0.0.1 only, read from the machine's listening sockets."""
import os
import subprocess
import sys
import time

from conftest import REPO, is_loopback, listening_sockets


def ray_sockets(sockets):
    return [s for s in sockets if "/ray/" in s[3] or s[3].startswith("ray::") or "ray.util.client" in s[3]]


def test_ray_head_dashboard_and_job_server_listen_on_loopback_only(ray_head):
    ours = ray_sockets(listening_sockets())
    ports = {port for _, port, _, _ in ours}
    assert {6379, 8265} <= ports, f"the head's GCS (6379) and dashboard/job server (8265) are not listening: {ours}"
    exposed = [s for s in ours if not is_loopback(s[0])]
    assert not exposed, f"Ray servers listening beyond loopback: {exposed}"


def test_local_cluster_started_by_the_pipelines_listens_on_loopback_only(ray_head, tmp_path):
    """No ray.address: pipelines/ray_runtime.connect starts its own cluster, as `python pipelines/train.py` does."""
    script = ("import sys, time; from pipelines.ray_runtime import connect; from nsh.config import Config\n"
              "connect(Config()); print('up', flush=True); time.sleep(120)")
    env = {k: v for k, v in ray_head["env"].items() if k != "RAY_ADDRESS"}
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        assert proc.stdout.readline().strip() == "up"
        time.sleep(2)  # the dashboard agent and runtime-env agent open their ports after init returns
        tree = {proc.pid}
        for _ in range(4):  # the driver's children (gcs_server, raylet) and theirs (agents, workers)
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    ppid = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
                except OSError:
                    continue
                if ppid in tree:
                    tree.add(int(pid))
        ours = [s for s in listening_sockets() if s[2] in tree]
        assert any("gcs_server" in s[3] for s in ours), f"no GCS server found among the driver's processes: {ours}"
        exposed = [s for s in ours if not is_loopback(s[0])]
        assert not exposed, f"the local cluster listens beyond loopback: {exposed}"
    finally:
        os.killpg(proc.pid, 9)
        proc.wait(timeout=30)
