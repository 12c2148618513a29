"""RayTrainSession on a real two-worker Ray Train (gloo): what fit() relies on for the global-batch sort."""
import json

from conftest import REPO


def test_gather_joins_uneven_worker_batches_in_rank_order_and_sums_gradients(ray_head, tmp_path):
    # A worker whose batch lost unreadable images holds fewer rows than the others: all_gather alone needs
    # equal shapes and would fail or hang. Rank 0 holds 2 rows, rank 1 holds 5.
    from ray.train import ScalingConfig
    from ray.train.torch import TorchTrainer

    from nsh.config import load_config
    from pipelines import ray_runtime

    ray_runtime.connect(load_config(REPO / "conf" / "test_tiny.yaml", [f"ray.address={ray_head['address']}"]))
    out = str(tmp_path)

    def loop(_):
        import json as js

        import torch

        from pipelines.ray_runtime import RayTrainSession

        s = RayTrainSession()
        n = 2 + 3 * s.rank
        t = (torch.arange(n * 3, dtype=torch.float64).reshape(n, 3) + 100 * s.rank).requires_grad_()
        (g,), start = s.gather(t)
        (g * torch.arange(len(g), dtype=torch.float64)[:, None]).sum().backward()
        with open(f"{out}/rank{s.rank}.json", "w") as f:
            js.dump({"gathered": g.tolist(), "start": start, "grad": t.grad.tolist()}, f)

    TorchTrainer(loop, scaling_config=ScalingConfig(num_workers=2, use_gpu=False)).fit()
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    rows = [[[3.0 * i + j + 100 * r for j in range(3)] for i in range(2 + 3 * r)] for r in (0, 1)]
    for r, got in enumerate(ranks):
        assert got["gathered"] == rows[0] + rows[1]  # every worker sees all 7 rows, rank 0's first
        assert got["start"] == (0, 2)[r]
        # each of the 2 workers' losses weights global row i by i: the gradient of a local row is 2 * its global index
        assert got["grad"] == [[2.0 * (got["start"] + i)] * 3 for i in range(2 + 3 * r)]
