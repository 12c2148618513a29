"""Checkpoints: plain tensors and primitives only, so they load with torch.load(weights_only=True).

A frozen backbone's weights are not stored (they come from its pretrained source); everything trainable is.
"model" holds the weights that were validated and that encoding uses: under train.ema_decay their moving average,
with the optimiser's own weights beside them as "trained_model", which only a resumed run needs.
Files are written to a temporary name and renamed, so a crash never leaves a half-written checkpoint.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from nsh.config import Config, from_dict
from nsh.models import Hasher

CHECKPOINT_FILE = "checkpoint.pt"


class CheckpointError(ValueError):
    pass


def model_state(model: Hasher) -> dict:
    state = model.state_dict()
    if model.freeze_backbone:
        state = {k: v for k, v in state.items() if not k.startswith("backbone.")}
    return state


def save(directory: str | Path, model: Hasher, config: Config, epoch: int, metrics: dict,
         optimizer: torch.optim.Optimizer | None = None, history: list | None = None,
         scheduler: torch.optim.lr_scheduler.LRScheduler | None = None, trained: Hasher | None = None,
         features: str | None = None) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    payload = {
        "model": model_state(model),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "epoch": epoch,
        "config": config.dump(),
        "metrics": {k: float(v) for k, v in metrics.items()},
        "history": history or [],
    }
    if trained is not None:
        payload["trained_model"] = model_state(trained)
    if features is not None:  # nsh.training.features_digest: what a run on backbone features trained on
        payload["features"] = features
    path = directory / CHECKPOINT_FILE
    tmp = directory / f".{CHECKPOINT_FILE}.{os.getpid()}.tmp"
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def load(path: str | Path) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}; pass a checkpoint file or the folder holding {CHECKPOINT_FILE}")
    return torch.load(path, map_location="cpu", weights_only=True)


def build_model(config: Config, feature_dim: int | None = None) -> Hasher:
    m = config.model
    return Hasher(m.backbone, m.nbits, m.latent_dim, m.hidden, m.surrogate, m.freeze_backbone, m.pretrained,
                  m.weights_path, feature_dim or m.feature_dim, m.bn_stats)


def restore_model(model: Hasher, state: dict, source: str = "checkpoint") -> None:
    """Load trained weights, saying plainly when the checkpoint is for another code length or model."""
    head = state.get("hash_head.net.3.weight")
    if head is not None and head.shape[0] != model.nbits:
        raise CheckpointError(f"{source} holds {head.shape[0]}-bit codes but the model is configured for "
                              f"{model.nbits} bits; set model.nbits={head.shape[0]} or train a new model")
    missing, unexpected = model.load_state_dict(state, strict=False)
    # A frozen-backbone run stores its heads only: the backbone comes from its pretrained source, whether it stays
    # frozen here or is fine-tuned from those heads on (the two-stage recipe: heads first, then end to end).
    heads_only = not any(k.startswith("backbone.") for k in state)
    missing = [k for k in missing if not ((model.freeze_backbone or heads_only) and k.startswith("backbone."))]
    if missing or unexpected:
        raise CheckpointError(f"{source} does not fit this model (missing {missing[:3]}, unexpected {unexpected[:3]}); "
                              "check model.backbone and model.hidden against the run that wrote it")


def load_model(path: str | Path) -> tuple[Hasher, Config, dict]:
    """A ready-to-encode model (eval mode) with the config it was trained with."""
    ckpt = load(path)
    config = from_dict(ckpt["config"])
    model = build_model(config)
    restore_model(model, ckpt["model"], str(path))
    return model.eval(), config, ckpt
