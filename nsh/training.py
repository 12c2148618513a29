"""The training loop, free of Ray: one function, `fit`, that every entry point runs.

A `Session` is what the loop needs from its surroundings: its rank in a data-parallel group, how to wrap
the model for that group, where the last checkpoint is, and where to report an epoch's metrics and
checkpoint. `LocalSession` runs in one process (a notebook, a lent GPU); the Ray Train session in
pipelines/ implements the same five methods over Ray Train.
"""
from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, DistributedSampler

from nsh import checkpoint as ckpt_io
from nsh.codes import pack
from nsh.config import Config, from_dict
from nsh.data import (BadItemError, CachedViews, Corpus, DeviceAugment, ItemDataset, TwoViews, build_corpus,
                      collate_skip_bad, eval_load, load_or_make_split, report_bad, train_load)
from nsh.features import backbone_features, digest
from nsh.losses import CodeNTXent, SortedNCE, mined_weight_at
from nsh.metrics import map_at_k
from nsh.models import Hasher
from nsh.sorters import build_sorter


class Session:
    """Single process. Subclasses override for data-parallel training."""

    rank, world_size = 0, 1

    def device(self) -> torch.device:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        return model

    def gather(self, *tensors: torch.Tensor) -> tuple[list[torch.Tensor], int]:
        """All workers' rows of each tensor, in rank order, differentiable; and the row where this worker's
        own rows start. Workers may hold different row counts (a batch that lost unreadable images)."""
        return list(tensors), 0

    def latest_checkpoint(self) -> Path | None:
        return None

    def report(self, metrics: dict, checkpoint_dir: Path | None) -> None:
        pass


class LocalSession(Session):
    """Checkpoints in <output_dir>/checkpoints/epoch_NNN. The newest is where a rerun resumes; it and the
    best by validation mAP are kept, older ones are deleted."""

    def __init__(self, output_dir: str | Path, log=print):
        self.root = Path(output_dir) / "checkpoints"
        self.log = log

    def _done(self) -> list[Path]:
        return sorted(p.parent for p in self.root.glob(f"epoch_*/{ckpt_io.CHECKPOINT_FILE}"))

    def latest_checkpoint(self) -> Path | None:
        done = self._done()
        return done[-1] if done else None

    def best_checkpoint(self) -> Path | None:
        done = self._done()
        if not done:
            return None
        history = ckpt_io.load(done[-1])["history"]
        return self.root / f"epoch_{best_checkpoint(history):03d}"

    def report(self, metrics: dict, checkpoint_dir: Path | None) -> None:
        if checkpoint_dir is None:
            return
        dest = self.root / f"epoch_{int(metrics['epoch']):03d}"
        dest.mkdir(parents=True, exist_ok=True)
        (Path(checkpoint_dir) / ckpt_io.CHECKPOINT_FILE).replace(dest / ckpt_io.CHECKPOINT_FILE)
        keep = {dest, self.best_checkpoint()}
        for old in self._done():
            if old not in keep:
                (old / ckpt_io.CHECKPOINT_FILE).unlink()
                old.rmdir()


@dataclass
class FitResult:
    history: list[dict] = field(default_factory=list)
    best_val_map: float = -1.0
    best_epoch: int = -1
    val_k: int = 0  # the cutoff of the validation mAP (validation_k)
    features: str | None = None  # features_digest of a run on backbone features; None when it trained on images

    @property
    def train_seconds(self) -> float:
        """The epochs' own training time, from the history: the same for a run trained now and one that fit()
        reused or resumed from its checkpoints."""
        return sum(h.get("epoch_seconds", 0.0) for h in self.history)


def default_split_path(cfg: Config) -> Path:
    if cfg.data.split_file:
        return Path(cfg.data.split_file)
    return Path(cfg.output_dir).parent / "splits" / f"{cfg.data.dataset}_seed{cfg.data.split_seed}.json"


def load_data(cfg: Config) -> tuple[Corpus, dict[str, np.ndarray]]:
    d = cfg.data
    corpus = build_corpus(d.dataset, d.root, d.source)
    split = load_or_make_split(corpus, default_split_path(cfg), d.split_seed, query_per_class=d.query_per_class,
                               train_per_class=d.train_per_class, val_query_per_class=d.val_query_per_class,
                               val_db_per_class=d.val_db_per_class, database_per_class=d.database_per_class)
    return corpus, split


def build_loss(cfg: Config) -> torch.nn.Module:
    loss = cfg.loss
    if loss.name == "nt_xent":
        return CodeNTXent(loss.tau)
    return SortedNCE(build_sorter(loss.sorter, loss.steepness), m=loss.m, tau=loss.tau,
                     own_positive=loss.own_positive, symmetric=loss.symmetric, code_weight=loss.code_weight,
                     code_tau=loss.code_tau, mined_weight=loss.mined_weight, near=loss.near,
                     near_weight=loss.near_weight, near_grad=loss.near_grad)


def cache_dir(cfg: Config) -> Path:
    return Path(cfg.data.cache_dir) if cfg.data.cache_dir else Path(cfg.output_dir).parent / "cache"


def load_feature_rows(corpus: Corpus, indices: np.ndarray, log=print) -> tuple[np.ndarray, np.ndarray]:
    """(features, the indices they belong to) for a feature corpus; rows with NaN/Inf are reported and dropped."""
    rows, kept = [], []
    for i in indices:
        try:
            rows.append(corpus.load(int(i)))
            kept.append(int(i))
        except BadItemError as err:
            log(f"skipping bad item: {err}")
    return np.stack(rows).astype(np.float32), np.array(kept, dtype=np.int64)


def validation_k(cfg: Config, split: dict) -> int:
    """The validation mAP cutoff: train.val_k if set, else the test cutoff scaled to the validation database.

    Validation must look as deep into each class as the test metric does. mAP@1000 of 5,000 validation items
    (500 per class) scores whole classes, while the test's mAP@1000 of 54,000 (5,400 per class) scores the top
    fifth of each: on CIFAR-10 at 16 bits the first ranked the bench's 12 runs with a correlation of -0.03 to
    their test mAP, the scaled cutoff (93) with 0.92 (docs/measurements.md, session 10).
    """
    if cfg.train.val_k is not None:
        return min(cfg.train.val_k, len(split["val_db"]))
    return scaled_k(cfg, split)


def scaled_k(cfg: Config, split: dict) -> int:
    """The test cutoff eval.k scaled from the database to the validation database."""
    test_k = min(cfg.eval.k, len(split["database"]))
    return max(1, round(test_k * len(split["val_db"]) / len(split["database"])))


class Evaluator:
    """Validation mAP on codes: val queries against the val database (never the test queries)."""

    def __init__(self, cfg: Config, model: Hasher, corpus: Corpus, split: dict, device, log=print):
        self.cfg, self.device, self.log = cfg, device, log
        self.inputs, self.kept = {}, {}  # kept: the corpus indices of the rows in inputs (feature inputs only)
        precompute = corpus.kind == "features" or cfg.model.freeze_backbone
        for s in ("val_query", "val_db"):
            if corpus.kind == "features":
                feats, self.kept[s] = load_feature_rows(corpus, split[s], log)
                self.inputs[s] = torch.from_numpy(feats)
            elif precompute:  # frozen backbone: its features of the plain view never change
                f = backbone_features(model, corpus, split[s], cache_dir(cfg), cfg.data.image_size,
                                      device=str(device), workers=cfg.data.loader_workers, log=log)
                ok = ~np.isnan(f).any(1)  # unreadable images, already reported by backbone_features
                self.inputs[s], self.kept[s] = torch.from_numpy(f[ok].astype(np.float32)), split[s][ok]
            else:
                self.inputs[s] = ItemDataset(corpus, split[s], eval_load(cfg.data.image_size))
        self.is_feature = precompute
        self.labels = corpus.labels
        self.first_call = True  # unreadable images are the same at every evaluation: report them once
        self.k = validation_k(cfg, split)

    @torch.no_grad()
    def codes(self, model: Hasher, which: str) -> tuple[np.ndarray, np.ndarray]:
        """Packed codes of a validation split and the labels of the items they encode (unreadable images left out)."""
        data = self.inputs[which]
        if self.is_feature:
            out = [model.hash_head(data[lo: lo + 1024].to(self.device)) for lo in range(0, len(data), 1024)]
            return pack(torch.cat(out)), self.labels[self.kept[which]]
        out, kept = [], []
        for batch in DataLoader(data, batch_size=256, collate_fn=collate_skip_bad,
                                num_workers=self.cfg.data.loader_workers):
            if self.first_call:
                report_bad(batch, self.log)
            if batch["x"] is not None:
                out.append(model.encode(batch["x"].to(self.device)))
                kept.append(batch["index"].numpy())
        if not out:
            raise ValueError(f"no image of the validation split {which!r} could be read; check data.root")
        return pack(torch.cat(out)), self.labels[np.concatenate(kept)]

    def __call__(self, model: Hasher) -> float:
        was_training = model.training
        model.eval()
        (q, q_labels), (db, db_labels) = self.codes(model, "val_query"), self.codes(model, "val_db")
        self.first_call = False
        score = map_at_k(q, db, q_labels, db_labels, min(self.k, len(db_labels)))
        model.train(was_training)
        return score


# Two copies of a precomputed row are one view twice: without dropout NT-Xent learns nothing from them, and on
# Fashion-MNIST features 0.5 lifted validation mAP@1000 from 0.523 to 0.651 for it and from 0.603 to 0.634 for
# NSH (docs/measurements.md). Cached image views are already augmented; there it is an option, not a default.
PRECOMPUTED_DROPOUT = 0.5


def training_data(cfg, model, corpus, split, device, log):
    """(dataset, inputs-are-features) for the training set: cached views, raw features, or online views."""
    train_idx = split["train"]
    dropout = cfg.data.feature_dropout
    if dropout is None:
        dropout = PRECOMPUTED_DROPOUT if corpus.kind == "features" else 0.0
    if corpus.kind == "features":
        feats, _ = load_feature_rows(corpus, train_idx, log)
        return CachedViews(np.stack([feats, feats], 1), cfg.train.seed, dropout), True
    if cfg.data.cache_views:
        views = backbone_features(model, corpus, train_idx, cache_dir(cfg), cfg.data.image_size,
                                  views=cfg.data.cache_views, seed=view_seed(cfg), device=str(device),
                                  workers=cfg.data.loader_workers, log=log)
        keep = ~np.isnan(views.reshape(len(views), -1)).any(1)
        return CachedViews(views[keep], cfg.train.seed, dropout), True
    if cfg.data.augment_on == "device":  # one resized uint8 image per item; fit() draws the two views
        return ItemDataset(corpus, train_idx, eval_load(cfg.data.image_size)), False
    # uint8 views from the workers, normalised on the device by the model: see nsh.data.augment.eval_load
    return ItemDataset(corpus, train_idx, TwoViews(train_load(cfg.data.image_size))), False


# What a run's checkpoints depend on (train.val_k: which epoch is kept): continuing them under other values would
# mix two runs in one.
# train.epochs may grow (a finished run continues), paths, workers, logging and tracking may change.
RUN_DEFINING = ("model.", "loss.", "data.dataset", "data.image_size", "data.cache_views", "data.feature_dropout",
                "data.augment_on",
                "train.lr", "train.backbone_lr", "train.batch_size", "train.weight_decay", "train.ema_decay",
                "train.seed", "train.val_k")


def check_same_run(saved: dict, cfg: Config, where) -> None:
    """Refuse to resume a run folder whose checkpoint was trained with other settings than cfg."""
    old = run_defining(from_dict(saved))  # through from_dict: keys added since then get their defaults
    new = run_defining(cfg)
    changed = [f"{k}: {old.get(k)!r} -> {v!r}" for k, v in new.items() if old.get(k) != v]
    if changed:
        raise ValueError(f"{where} was trained with other settings ({'; '.join(changed)}); resuming would mix two "
                         "runs. Use a new output_dir, or train.resume_from=<that checkpoint> to start a new run "
                         "from its weights")


def features_digest(dataset, evaluator: Evaluator) -> str | None:
    """The digest of all a run on backbone features reads (its training views and validation rows): runs with the
    same one trained on bit-identical inputs. None for a run on images, whose inputs are drawn online."""
    if not isinstance(dataset, CachedViews):
        return None
    return digest(dataset.views, *(evaluator.inputs[s] for s in ("val_query", "val_db")))


def check_same_features(saved: str | None, now: str | None, where) -> None:
    """Refuse to resume a run on other features than it trained on: a rebuilt cache need not be bit-identical."""
    if saved is not None and saved != now:
        raise ValueError(f"{where} was trained on other features (digest {saved}, now {now}): the feature cache was "
                         "rebuilt or replaced since, and resuming would mix two runs. Restore the cache the run was "
                         "trained on, or delete the run folder to train it again on the features there now")


def run_defining(cfg: Config) -> dict:
    keys = {k: v for k, v in cfg.flat().items() if k.startswith(RUN_DEFINING)}
    if cfg.loss.name == "nt_xent":  # the baseline reads only its temperature of the loss section
        keys = {k: v for k, v in keys.items() if not k.startswith("loss.") or k in ("loss.name", "loss.tau")}
    if cfg.data.cache_views:  # the draw the heads trained on; compared as drawn, so None and its train.seed agree
        keys["data.view_seed"] = view_seed(cfg)
    return keys


def view_seed(cfg: Config) -> int:
    return cfg.train.seed if cfg.data.view_seed is None else cfg.data.view_seed


def prepare(cfg: Config, log=print) -> None:
    """Build the split and every feature cache that fit() will read, so that parallel workers only read them."""
    corpus, split = load_data(cfg)
    model = ckpt_io.build_model(cfg, feature_dim=corpus.feature_dim)
    training_data(cfg, model, corpus, split, "cpu", log)
    Evaluator(cfg, model, corpus, split, "cpu", log)


def best_checkpoint(history: list[dict]) -> int:
    """The epoch to keep: highest validation mAP, earliest on ties."""
    return max(history, key=lambda h: (h["val_map"], -h["epoch"]))["epoch"]


def param_groups(model: Hasher, cfg: Config) -> list[dict]:
    """The trainable parameters; a fine-tuned backbone in a group of its own when train.backbone_lr is set.

    Pretrained features are easily spoilt by the randomly initialised heads' early gradients, so fine-tuning
    usually wants the backbone to move slower than the heads.
    """
    if cfg.train.backbone_lr is None:  # model order, as before the option existed: older checkpoints resume
        return [{"params": [p for p in model.parameters() if p.requires_grad]}]
    heads = [p for name, p in model.named_parameters() if p.requires_grad and not name.startswith("backbone.")]
    backbone = [p for name, p in model.named_parameters() if p.requires_grad and name.startswith("backbone.")]
    return [{"params": heads}, {"params": backbone, "lr": cfg.train.backbone_lr}]


def fit(cfg: Config, session: Session | None = None, tracker=None, log=print) -> FitResult:
    """Train NSH as configured. `tracker` (nsh.tracking.RunLogger) receives epoch metrics on rank 0."""
    session = session or LocalSession(cfg.output_dir, log)
    device = session.device()
    if device.type == "cuda":  # TF32 matmuls: float32 accuracy is not needed for codes
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(cfg.train.seed)
    np.random.seed(cfg.train.seed)
    corpus, split = load_data(cfg)
    if corpus.kind == "features":
        if cfg.model.feature_dim not in (None, corpus.feature_dim):
            raise ValueError(f"model.feature_dim={cfg.model.feature_dim} but {cfg.data.root} holds "
                             f"{corpus.feature_dim}-d features; drop model.feature_dim or fix it")
        cfg = cfg.model_copy(deep=True)
        cfg.model.feature_dim = corpus.feature_dim  # saved with every checkpoint, so the model can be rebuilt
    model = ckpt_io.build_model(cfg, feature_dim=corpus.feature_dim).to(device)
    dataset, is_feature = training_data(cfg, model, corpus, split, device, log)
    evaluator = Evaluator(cfg, model, corpus, split, device, log)
    log(f"model selection: validation mAP@{evaluator.k} of {len(split['val_query'])} queries against "
        f"{len(split['val_db'])} items")
    sampler = DistributedSampler(dataset, session.world_size, session.rank, seed=cfg.train.seed) \
        if session.world_size > 1 else None
    loader = DataLoader(dataset, batch_size=cfg.train.batch_size, shuffle=sampler is None, sampler=sampler,
                        drop_last=True, num_workers=cfg.data.loader_workers, collate_fn=collate_skip_bad,
                        persistent_workers=cfg.data.loader_workers > 0, pin_memory=device.type == "cuda")
    if len(loader) == 0:
        raise ValueError(f"train.batch_size={cfg.train.batch_size} is larger than the training set per worker "
                         f"({len(dataset) // session.world_size}); lower it")
    augment = DeviceAugment(cfg.data.image_size) if cfg.data.augment_on == "device" else None
    loss_fn = build_loss(cfg)
    opt = torch.optim.AdamW(param_groups(model, cfg), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    steps = cfg.train.epochs * len(loader)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))

    # Buffers are averaged too: BatchNorm statistics must match the averaged weights they normalise for.
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.train.ema_decay), use_buffers=True) \
        if cfg.train.ema_decay else None
    selected = model if ema is None else ema.module  # the weights validated, checkpointed and exported

    result, start_epoch = FitResult(val_k=evaluator.k, features=features_digest(dataset, evaluator)), 0
    if result.features is not None:
        log(f"features digest {result.features}")
        if tracker is not None:
            tracker.set_tag("features_digest", result.features)
    resume = session.latest_checkpoint()
    if resume is not None or cfg.train.resume_from:
        state = ckpt_io.load(resume or cfg.train.resume_from)
        if resume is not None:
            check_same_run(state["config"], cfg, resume)
            check_same_features(state.get("features"), result.features, resume)
        trained = state.get("trained_model", state["model"]) if resume is not None else state["model"]
        ckpt_io.restore_model(model, trained, str(resume or cfg.train.resume_from))
        if resume is not None and ema is not None:  # the average continues; a fresh one would restart from the
            ckpt_io.restore_model(ema.module, state["model"], str(resume))  # trained weights alone
            ema.n_averaged.fill_((int(state["epoch"]) + 1) * len(loader))
        if resume is not None:  # the same run continuing: optimiser, schedule and history too
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            start_epoch = int(state["epoch"]) + 1
            result.history = list(state["history"])
            if result.history:
                result.best_epoch = best_checkpoint(result.history)
                result.best_val_map = result.history[result.best_epoch]["val_map"]
            log(f"resuming from {resume} at epoch {start_epoch}")
        else:
            log(f"fine-tuning from {cfg.train.resume_from}")
    ddp = session.wrap(model)

    for epoch in range(start_epoch, cfg.train.epochs):
        # Every epoch draws its randomness from (seed, epoch, rank) alone, so a run resumed at epoch e
        # repeats exactly what the uninterrupted run did from e on.
        torch.manual_seed(cfg.train.seed * 100_003 + epoch * 1_009 + session.rank)
        if sampler is not None:
            sampler.set_epoch(epoch)
        if isinstance(dataset, CachedViews):
            dataset.set_epoch(epoch)
        if isinstance(loss_fn, SortedNCE):
            loss_fn.mined_weight = mined_weight_at(epoch, cfg.loss.mined_weight, cfg.loss.mined_warmup)
        model.train()
        t0, losses, seen = time.time(), [], 0
        for step, batch in enumerate(loader):
            if epoch == start_epoch:  # the same items are unreadable every epoch: say so once
                report_bad(batch, log)
            if batch["x"] is None:
                raise ValueError(f"every item of a training batch was unreadable (first: {batch['bad'][0][1]}); "
                                 "check data.root, or remove the unreadable files")
            if augment is not None:
                images = batch["x"].to(device, non_blocking=True)
                x1, x2 = augment(images), augment(images)
            else:
                x1, x2 = batch["x"]
            x = torch.cat([x1, x2]).to(device, non_blocking=True)
            codes, z = ddp(x, is_feature=is_feature)
            n = len(x1)
            c1, c2, z1, z2 = codes[:n], codes[n:], z[:n], z[n:]
            extra = {}
            if cfg.loss.global_batch and session.world_size > 1:
                (gc1, gz1, gc2, gz2), start = session.gather(c1, z1, c2, z2)
                extra = dict(cand_codes_1=gc1, cand_z_1=gz1, cand_codes_2=gc2, cand_z_2=gz2,
                             own_index=start + torch.arange(n, device=device))
            loss = loss_fn(c1, z1, c2, z2, **extra)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if ema is not None:
                ema.update_parameters(model)
            losses.append(loss.item())
            seen += n
            if session.rank == 0 and (step + 1) % cfg.train.log_every == 0:
                log(f"epoch {epoch + 1}/{cfg.train.epochs} step {step + 1}/{len(loader)} "
                    f"loss {np.mean(losses[-cfg.train.log_every:]):.4f} ({seen / (time.time() - t0):.0f} items/s)")
        val = evaluator(selected)
        metrics = {"epoch": epoch, "loss": float(np.mean(losses)), "val_map": val,
                   "epoch_seconds": time.time() - t0}
        result.history.append(metrics)
        if val > result.best_val_map:
            result.best_val_map, result.best_epoch = val, epoch
        metrics["best_val_map"] = result.best_val_map
        if session.rank == 0:
            log(f"epoch {epoch + 1}/{cfg.train.epochs}: loss {metrics['loss']:.4f}, "
                f"val mAP@{evaluator.k} {val:.4f} (best {result.best_val_map:.4f}), {metrics['epoch_seconds']:.1f}s")
            if tracker is not None:
                tracker.log_epoch(epoch, {"loss": metrics["loss"], "val_map": val})
        with tempfile.TemporaryDirectory() as tmp:
            written = None
            if session.rank == 0:
                ckpt_io.save(tmp, selected, cfg, epoch, metrics, opt, result.history, sched,
                             trained=model if ema is not None else None, features=result.features)
                written = Path(tmp)
            session.report(metrics, written)
    return result
