"""Everything nsh asks of Ray, in one place: connecting, Ray Train sessions, Tune sessions, Ray Data encoding.

The loops themselves live in nsh/ (no Ray there); this module only adapts them.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

# Read by Ray when it is imported: with it, a local cluster binds every port to 127.0.0.1 (ENVIRONMENT.md).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
# A trial checkpoints every epoch and Tune keeps one checkpoint per trial, which forces a snapshot of the sweep's state
# at every epoch; on frozen features an epoch takes seconds, and Tune then warns of each snapshot in three lines that
# bury the epoch lines. The snapshots go to local disk and cost little, so the warning is off.
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")

import ray  # noqa: E402
import torch  # noqa: E402

from nsh.config import Config, from_dict, set_dotted  # noqa: E402
from nsh.training import Session, fit  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def connect(cfg: Config) -> None:
    """Join the configured cluster, the one `ray job submit` runs us in, or start a local one on 127.0.0.1."""
    if ray.is_initialized():
        return
    # Ray workers must import pipelines/ as the driver does, locally and under `ray job submit`.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
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

    def gather(self, *tensors):
        import torch.distributed as dist
        import torch.distributed.nn.functional as dist_fn

        n = tensors[0].shape[0]
        counts = [torch.zeros(1, dtype=torch.long, device=tensors[0].device) for _ in range(self.world_size)]
        dist.all_gather(counts, torch.tensor([n], device=tensors[0].device))
        counts = [int(c) for c in counts]
        # all_gather needs equal shapes: pad to the largest batch, then cut each worker's padding off
        out = []
        for t in tensors:
            padded = torch.cat([t, t.new_zeros(max(counts) - n, *t.shape[1:])]).contiguous()
            out.append(torch.cat([g[:c] for g, c in zip(dist_fn.all_gather(padded), counts)]))
        return out, sum(counts[:self.rank])

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


def script_args(argv=None, doc: str | None = None):
    """--config FILE and key=value overrides, shared by every entry point (doc: the pipeline's docstring)."""
    import argparse

    from nsh.config import describe_keys

    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="config keys (override any as section.key=value):\n" + describe_keys())
    p.add_argument("--config", help="YAML config (conf/*.yaml)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted job where it stopped")
    p.add_argument("overrides", nargs="*", help="config overrides, e.g. loss.tau=0.2 model.nbits=64")
    return p.parse_args(argv)


def tune_trial(params: dict, base: dict, parent_run_id: str, uri: str) -> None:
    """One Tune trial: the base config with this trial's values, trained by the same fit() as train.py."""
    import copy

    from nsh import tracking

    ctx = ray.tune.get_context()
    raw = copy.deepcopy(base)
    for key, value in params.items():
        set_dotted(raw, key, value)
    raw["output_dir"] = f"{base['output_dir']}/trials/{ctx.get_trial_id()}"
    raw["name"] = f"{base['name']}-{ctx.get_trial_id()}"
    cfg = from_dict(raw)
    torch.set_num_threads(max(1, int(cfg.tune.cpus_per_trial)))
    marker = Path(cfg.output_dir) / "mlflow_run_id"  # a restored or retried trial keeps its MLflow run
    if marker.is_file():
        run_id = marker.read_text().strip()
    else:
        run_id = tracking.start_run(cfg, run_name=f"trial {ctx.get_trial_id()}", parent_run_id=parent_run_id,
                                    tags={"nsh.trial_params": json.dumps(params)})
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(run_id)
    logger = tracking.RunLogger(run_id, uri)
    result = fit(cfg, TuneSession(), logger, log=log)
    # A sweep driver killed after this trial finished but before Tune saved that fact restarts the trial from
    # its last checkpoint: fit() then trains nothing, and the finished MLflow run must stay as it was.
    if logger.client.get_run(run_id).info.status != "FINISHED":
        logger.log_metrics({"best_val_map": result.best_val_map})
        logger.client.set_terminated(run_id, "FINISHED")


def search_space(space: dict) -> dict:
    """YAML search space -> Ray Tune: {key: {type: loguniform|uniform|choice|grid, ...}}."""
    from ray import tune

    kinds = {
        "loguniform": lambda s: tune.loguniform(s["low"], s["high"]),
        "uniform": lambda s: tune.uniform(s["low"], s["high"]),
        "randint": lambda s: tune.randint(s["low"], s["high"]),
        "choice": lambda s: tune.choice(s["values"]),
        "grid": lambda s: tune.grid_search(s["values"]),
    }
    out = {}
    for key, spec in space.items():
        if spec.get("type") not in kinds:
            raise ValueError(f"tune.space.{key}: type {spec.get('type')!r} is not one of {sorted(kinds)}")
        out[key] = kinds[spec["type"]](spec)
    return out


def tune(cfg: Config, parent_run_id: str, uri: str, resume: bool):
    """Run (or, with resume, restore and finish) the sweep; returns Ray Tune's ResultGrid."""
    from ray import tune as rt
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    trainable = rt.with_resources(
        rt.with_parameters(tune_trial, base=cfg.dump(), parent_run_id=parent_run_id, uri=uri),
        {"cpu": cfg.tune.cpus_per_trial, "gpu": cfg.tune.gpus_per_trial})
    path = Path(storage_path(cfg)) / f"{cfg.name}-sweep"
    if resume and rt.Tuner.can_restore(str(path)):
        log(f"resuming sweep from {path}")
        return rt.Tuner.restore(str(path), trainable, resume_errored=True).fit()
    scheduler = (ASHAScheduler(max_t=cfg.train.epochs, grace_period=cfg.tune.grace_period)
                 if cfg.tune.scheduler == "asha" else FIFOScheduler())
    tuner = rt.Tuner(
        trainable,
        param_space=search_space(cfg.tune.space),
        tune_config=rt.TuneConfig(metric=cfg.tune.metric, mode="max", scheduler=scheduler,
                                  num_samples=cfg.tune.num_samples, max_concurrent_trials=cfg.tune.max_concurrent),
        run_config=rt.RunConfig(
            name=path.name, storage_path=str(path.parent),
            failure_config=rt.FailureConfig(max_failures=cfg.train.max_failures),
            checkpoint_config=rt.CheckpointConfig(num_to_keep=1, checkpoint_score_attribute=cfg.tune.metric,
                                                  checkpoint_score_order="max")))
    return tuner.fit()
