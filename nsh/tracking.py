"""MLflow helpers: where runs go, idempotent epoch logging, the pyfunc encoder, and the champion rule.

Default store: a sqlite database in the working directory (mlflow.db) with artifacts beside it
(mlartifacts/); `MLFLOW_TRACKING_URI` or mlflow.tracking_uri in the config override it.
"""
from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import mlflow
import numpy as np
import yaml
from filelock import FileLock
from mlflow.tracking import MlflowClient

from nsh.config import Config, flatten_dict

CHAMPION = "champion"
SECRET_WORDS = ("token", "password", "secret", "key", "credential")


def tracking_uri(configured: str | None = None) -> str:
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def setup(cfg: Config) -> tuple[MlflowClient, str]:
    """Point MLflow at the configured store; return a client and the experiment id."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    uri = tracking_uri(cfg.mlflow.tracking_uri)
    mlflow.set_tracking_uri(uri)
    # Opening a new sqlite store creates and migrates its schema; jobs that start together (a sweep's trials,
    # parallel evaluations) would race on that and fail, so opening is serialised.
    db_file = uri[len("sqlite:///"):] if uri.startswith("sqlite:///") else None
    with FileLock(db_file + ".lock") if db_file else contextlib.nullcontext():
        client = MlflowClient(uri)
    exp = client.get_experiment_by_name(cfg.mlflow.experiment)
    if exp is None:
        # Artifacts beside the sqlite file, so one folder holds the whole store.
        # sqlite:///runs/m.db is relative to the working directory, as sqlite reads it; a file URI must be absolute
        location = (Path(db_file).resolve().parent / "mlartifacts").as_uri() if db_file else None
        try:
            exp_id = client.create_experiment(cfg.mlflow.experiment, artifact_location=location)
        except mlflow.exceptions.MlflowException:  # created concurrently by another process
            exp_id = client.get_experiment_by_name(cfg.mlflow.experiment).experiment_id
    else:
        exp_id = exp.experiment_id
    return client, exp_id


def redact(uri: str | None) -> str | None:
    """The URI with any user:password@ part replaced by ***@: what logs, params and files may show."""
    return re.sub(r"//[^/@]*@", "//***@", uri) if uri else uri


def safe_config(cfg: Config) -> dict:
    """The config as a nested dict with anything that looks like a credential masked (for params and artifacts)."""
    def mask(section: dict) -> dict:
        out = {}
        for k, v in section.items():
            if isinstance(v, dict):
                out[k] = mask(v)
            elif any(w in k.lower() for w in SECRET_WORDS) and v not in (None, ""):
                out[k] = "***"
            elif isinstance(v, str) and "://" in v:
                out[k] = redact(v)
            else:
                out[k] = v
        return out
    return mask(cfg.dump())


def safe_params(cfg: Config) -> dict[str, str]:
    """The whole config as params (dotted keys), credentials masked."""
    return {k: str(v)[:500] for k, v in flatten_dict(safe_config(cfg))}


def start_run(cfg: Config, run_name: str | None = None, parent_run_id: str | None = None, tags=None) -> str:
    client, exp_id = setup(cfg)
    all_tags = dict(tags or {})
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    run = client.create_run(exp_id, run_name=run_name or cfg.name, tags=all_tags)
    client.log_batch(run.info.run_id, params=[mlflow.entities.Param(k, v) for k, v in safe_params(cfg).items()])
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "config.yaml"
        p.write_text(yaml.safe_dump(safe_config(cfg), sort_keys=False))
        client.log_artifact(run.info.run_id, str(p))
    return run.info.run_id


class RunLogger:
    """Logs one run's per-epoch metrics; an epoch already logged (a restarted worker) is not logged twice."""

    def __init__(self, run_id: str, uri: str):
        self.run_id, self.client = run_id, MlflowClient(uri)

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        logged = {m.step for m in self.client.get_metric_history(self.run_id, "val_map")}
        if epoch in logged:
            return
        # One batch, one store transaction: a worker killed mid-call leaves all of the epoch or none of it, so
        # val_map's presence really means the epoch is logged (separate calls left a stray `loss` to repeat).
        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[mlflow.entities.Metric(name, float(v), now, epoch)
                                                    for name, v in metrics.items()])

    def set_tag(self, key: str, value: str) -> None:
        self.client.set_tag(self.run_id, key, value)

    def log_metrics(self, metrics: dict[str, float]) -> None:
        for name, value in metrics.items():
            self.client.log_metric(self.run_id, name, float(value))


class HasherModel(mlflow.pyfunc.PythonModel):
    """pyfunc: images (n, H, W, 3) uint8 or feature vectors (n, D) float32 in, packed uint8 codes out."""

    def load_context(self, context):
        from nsh.checkpoint import load_model

        self.model, self.config, _ = load_model(context.artifacts["checkpoint"])

    # np.ndarray is a hint MLflow takes without inferring a schema from it: the logged signature stays the
    # contract, and MLflow stops warning that predict has no type hints. DataFrames are accepted too.
    def predict(self, context, model_input: np.ndarray, params=None) -> np.ndarray:
        import torch

        from nsh.codes import pack
        from nsh.data import eval_view

        x = np.asarray(model_input.to_numpy() if hasattr(model_input, "to_numpy") else model_input)
        with torch.no_grad():
            if self.model.backbone_name == "features":
                codes = self.model.encode(torch.as_tensor(x, dtype=torch.float32), is_feature=True)
            else:
                from PIL import Image

                t = eval_view(self.config.data.image_size, self.model.mean, self.model.std)
                batch = torch.stack([t(Image.fromarray(np.asarray(im, dtype=np.uint8)).convert("RGB")) for im in x])
                codes = self.model.encode(batch)
        return pack(codes)


def log_model(run_id: str, checkpoint_path: str | Path, cfg: Config, example: np.ndarray) -> str:
    """Log the checkpoint as a pyfunc model in the run; returns its model URI."""
    from mlflow.models import infer_signature

    model = HasherModel()
    model.load_context(type("Ctx", (), {"artifacts": {"checkpoint": str(checkpoint_path)}})())
    signature = infer_signature(example, model.predict(None, example))
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pyfunc.log_model(name="model", python_model=str(Path(__file__).with_name("pyfunc_model.py")),
                                       artifacts={"checkpoint": str(checkpoint_path)},
                                       signature=signature, input_example=example,
                                       code_paths=[str(Path(__file__).parent)])
    return info.model_uri


class Registration(NamedTuple):
    version: int
    promoted: bool  # the champion alias moved to this version
    why: str  # why it did or did not, for the log


def _task(cfg: Config) -> dict[str, str]:
    """Tags naming the retrieval task a validation mAP was measured on: mAPs compare only within one task."""
    named = cfg.data.dataset in ("cifar10", "fashion_mnist") or cfg.data.root is None
    dataset = cfg.data.dataset if named else f"{cfg.data.dataset}:{Path(cfg.data.root).name}"
    return {"dataset": dataset, "nbits": str(cfg.model.nbits)}


def register(client: MlflowClient, model_uri: str, name: str, run_id: str, val_map: float, cfg: Config) -> Registration:
    """Register a version; move the champion alias to it only if its validation mAP beats the champion's.

    A champion of another dataset or code length is never displaced: its mAP measures a different task, and
    replacing it would change the code length of every `models:/NAME@champion` consumer. Such a model is registered
    without the alias, and `why` says to give each task its own `mlflow.registered_model`.
    """
    task = _task(cfg)
    # full precision: a 6-decimal tag made a rerun with the very same score look better than its rounded self
    version = mlflow.register_model(model_uri, name, tags={
        "val_map": repr(float(val_map)), **task, "backbone": cfg.model.backbone,
        "sorter": cfg.loss.sorter if cfg.loss.name == "sorted_nce" else cfg.loss.name, "run_id": run_id})
    v = int(version.version)
    try:
        champ = client.get_model_version_by_alias(name, CHAMPION)
    except mlflow.exceptions.MlflowException:
        champ = None
    if champ is not None:
        # versions registered before the dataset tag existed are compared on what they do carry
        other = {k: champ.tags[k] for k in task if k in champ.tags}
        if any(task[k] != other[k] for k in other):
            per_task = f"{name}-{task['dataset'].replace(':', '-')}-{task['nbits']}bits"
            return Registration(v, False, f"champion unchanged: version {champ.version} is {_describe(other)}, this "
                                          f"model {_describe(task)}; set mlflow.registered_model to a name per task "
                                          f"(e.g. {per_task}) to keep a champion for each")
        champ_map = float(champ.tags.get("val_map", "-1"))
        if val_map <= champ_map:
            return Registration(v, False, f"champion unchanged: version {champ.version}'s validation mAP "
                                          f"{champ_map:.4f} is not below this model's {val_map:.4f}")
    client.set_registered_model_alias(name, CHAMPION, v)
    return Registration(v, True, f"now the champion ({name}@{CHAMPION})")


def _describe(task: dict[str, str]) -> str:
    return " at ".join(f"{task[k]} bits" if k == "nbits" else task[k] for k in ("dataset", "nbits") if k in task)


def resolve_model(uri: str) -> Path:
    """A checkpoint path for `uri`: a file or folder, or an MLflow model URI (models:/nsh@champion, runs:/...)."""
    p = Path(uri)
    if p.exists():
        return p
    if ":" not in uri:
        raise FileNotFoundError(f"model {uri!r} is neither a checkpoint path nor an MLflow URI (models:/nsh@champion)")
    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=uri.rstrip("/"))
    except mlflow.exceptions.MlflowException as err:
        raise FileNotFoundError(f"MLflow model {uri!r} not found in {mlflow.get_tracking_uri()} ({err.message}); "
                                "list versions with `mlflow models` or train one first") from None
    found = sorted(Path(local).rglob("checkpoint.pt"))
    if not found:
        raise FileNotFoundError(f"MLflow model {uri!r} holds no nsh checkpoint")
    return found[0]
