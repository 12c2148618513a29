"""Everything nsh asks of Ray, in one place: connecting, Ray Train sessions, Tune sessions, Ray Data encoding.

The loops themselves live in nsh/ (no Ray there); this module only adapts them.
"""
from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import ray
import torch

from nsh.config import Config, from_dict
from nsh.training import Session, fit

REPO = Path(__file__).resolve().parents[1]


def connect(cfg: Config) -> None:
    """Join the configured cluster, the one `ray job submit` runs us in, or start a local one on 127.0.0.1."""
    if ray.is_initialized():
        return
    # Ray workers must import pipelines/ as the driver does, locally and under `ray job submit`.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # every port on 127.0.0.1
    address = cfg.ray.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
    else:
        ray.init(address="local", num_cpus=cfg.ray.num_cpus, include_dashboard=False,
                 _node_ip_address="127.0.0.1", configure_logging=False)


def storage_path(cfg: Config) -> str:
    return str(Path(cfg.ray.storage_path or Path(cfg.output_dir) / "ray").resolve())


def log(msg: str) -> None:
    print(msg, flush=True)


class RayTrainSession(Session):
    """One Ray Train worker: rank and DDP from Ray Train; checkpoints and metrics through ray.train.report."""

    def __init__(self):
        ctx = ray.train.get_context()
        self.rank, self.world_size = ctx.get_world_rank(), ctx.get_world_size()

    def device(self):
        return ray.train.torch.get_device()

    def wrap(self, model):
        return ray.train.torch.prepare_model(model) if self.world_size > 1 else model

    def gather(self, t):
        import torch.distributed.nn.functional as dist_fn

        return torch.cat(dist_fn.all_gather(t.contiguous()))

    def latest_checkpoint(self):
        ckpt = ray.train.get_checkpoint()
        return Path(ckpt.to_directory()) if ckpt else None

    def report(self, metrics, checkpoint_dir):
        from ray.train import Checkpoint

        ray.train.report(metrics, checkpoint=Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None)


class TuneSession(Session):
    """A Tune trial (one process): checkpoints and metrics through ray.tune.report."""

    def latest_checkpoint(self):
        ckpt = ray.tune.get_checkpoint()
        return Path(ckpt.to_directory()) if ckpt else None

    def report(self, metrics, checkpoint_dir):
        from ray.tune import Checkpoint

        ray.tune.report(metrics, checkpoint=Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None)


def _tracker(run_id, uri, rank):
    if rank != 0 or not run_id:
        return None
    from nsh.tracking import RunLogger

    return RunLogger(run_id, uri)


def train_worker(loop_config: dict) -> None:
    """Ray Train's train_loop_per_worker: the same fit() as everywhere, in a RayTrainSession."""
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    cfg = from_dict(loop_config["config"])
    session = RayTrainSession()
    fit(cfg, session, _tracker(loop_config.get("run_id"), loop_config.get("tracking_uri"), session.rank), log=log)


def train(cfg: Config, run_id: str | None, uri: str):
    """Run fit() under a Ray Train TorchTrainer; returns the Ray Train Result."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    use_gpu = cfg.train.use_gpu if cfg.train.use_gpu is not None else ray.cluster_resources().get("GPU", 0) > 0
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={"config": cfg.dump(), "run_id": run_id, "tracking_uri": uri},
        scaling_config=ScalingConfig(num_workers=cfg.train.workers, use_gpu=use_gpu),
        run_config=RunConfig(
            name=cfg.name, storage_path=storage_path(cfg),
            failure_config=FailureConfig(max_failures=cfg.train.max_failures),
            # The best checkpoint by validation mAP is kept for model selection; Ray also keeps the latest.
            checkpoint_config=CheckpointConfig(num_to_keep=1, checkpoint_score_attribute="val_map",
                                               checkpoint_score_order="max"),
        ),
    )
    return trainer.fit()


@ray.remote
def _prepare_remote(config: dict, threads: int) -> None:
    from nsh.training import prepare

    torch.set_num_threads(threads)
    prepare(from_dict(config), log=log)


def prepare(cfg: Config) -> None:
    """Compute the cached backbone features once, on the cluster, before any worker needs them.

    One task with every free CPU of a node: a frozen backbone's forward passes are the expensive part.
    """
    threads = max(1, min(int(ray.available_resources().get("CPU", 1)), os.cpu_count() or 1))
    ray.get(_prepare_remote.options(num_cpus=threads).remote(cfg.dump(), threads))


class _EncodeActor:
    def __init__(self, checkpoint, spec, model_uri, batch_size, loader_workers, indices, out_dir):
        from nsh.encoding import ShardEncoder

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        self.encoder = ShardEncoder(checkpoint, spec, model_uri, batch_size, loader_workers=loader_workers)
        self.indices, self.out_dir = indices, out_dir

    def __call__(self, batch: dict) -> dict:
        from nsh.encoding import Shard

        rows = [self.encoder(Shard(int(n), int(a), int(b)), self.indices, self.out_dir)
                for n, a, b in zip(batch["number"], batch["start"], batch["stop"])]
        return {k: [r[k] for r in rows] for k in rows[0]}


def encode(shards, checkpoint, spec, model_uri, indices, out_dir, cfg: Config) -> list[dict]:
    """Ray Data: one row per pending shard, encoded by a pool of actors that each load the model once."""
    if not shards:
        return []
    gpus = 1 if torch.cuda.is_available() and ray.cluster_resources().get("GPU", 0) > 0 else 0
    ds = ray.data.from_items([asdict(s) for s in shards], override_num_blocks=len(shards))
    ds = ds.map_batches(
        _EncodeActor, batch_size=1, compute=ray.data.ActorPoolStrategy(size=cfg.encode.concurrency), num_gpus=gpus,
        fn_constructor_kwargs=dict(checkpoint=str(checkpoint), spec=spec, model_uri=model_uri,
                                   batch_size=cfg.encode.batch_size, loader_workers=cfg.data.loader_workers,
                                   indices=indices, out_dir=str(out_dir)))
    return ds.take_all()


def script_args(argv=None):
    """--config FILE and key=value overrides, shared by every entry point."""
    import argparse

    p = argparse.ArgumentParser(description=sys.modules["__main__"].__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML config (conf/*.yaml)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted job where it stopped")
    p.add_argument("overrides", nargs="*", help="config overrides, e.g. loss.tau=0.2 model.nbits=64")
    return p.parse_args(argv)
