"""Train NSH with Ray Train, log it to MLflow, and register the best model.

    python pipelines/train.py --config conf/cifar10_quick.yaml [key=value ...]
    ray job submit --working-dir . -- python pipelines/train.py --config conf/cifar10_quick.yaml

Each epoch writes a checkpoint; a crashed worker restarts from the last one (train.max_failures). Rerunning
the same command with the same `name` continues that run from its latest checkpoint (raise train.epochs to
train longer); train.resume_from=<checkpoint> fine-tunes from another run's weights. The model kept is the
epoch with the best validation mAP (validation split only; the test queries are never looked at).
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines import ray_runtime  # noqa: E402
from nsh import tracking  # noqa: E402
from nsh.checkpoint import CHECKPOINT_FILE  # noqa: E402
from nsh.checkpoint import load as load_checkpoint  # noqa: E402
from nsh.config import Config, load_config  # noqa: E402
from nsh.training import load_data  # noqa: E402

log = ray_runtime.log


def example_input(cfg: Config, checkpoint: Path):
    """A real two-item input for the model signature: images (uint8 HxWx3) or feature rows."""
    import numpy as np

    corpus, split = load_data(cfg)
    items = [corpus.load(int(i)) for i in split["val_query"][:2]]
    if corpus.kind == "features":
        return np.stack(items).astype(np.float32)
    return np.stack([np.asarray(im.resize((cfg.data.image_size,) * 2)) for im in items]).astype(np.uint8)


def keep_best(cfg: Config, checkpoints) -> tuple[float, Path]:
    """Copy the checkpoint with the best validation mAP out of Ray's storage to <output_dir>/best/."""
    val_map, best = max(((m.get("val_map", -1.0), c) for c, m in checkpoints), key=lambda t: t[0])
    dest = Path(cfg.output_dir) / "best" / CHECKPOINT_FILE
    dest.parent.mkdir(parents=True, exist_ok=True)
    with best.as_directory() as d:
        shutil.copy(Path(d) / CHECKPOINT_FILE, dest)
    return val_map, dest


def register_best(cfg: Config, client, run_id: str, checkpoint: Path, val_map: float, model_cfg: Config) -> dict:
    """Log the checkpoint as a pyfunc model in `run_id` and register it (champion only if better, same task)."""
    if not cfg.mlflow.register_best:
        return {}
    model_uri = tracking.log_model(run_id, checkpoint, model_cfg, example_input(cfg, checkpoint))
    name = cfg.mlflow.registered_model
    reg = tracking.register(client, model_uri, name, run_id, val_map, model_cfg)
    log(f"registered {name} version {reg.version}: {reg.why}")
    return {"model_uri": f"models:/{name}/{reg.version}", "champion": reg.promoted}


def find_run(cfg: Config) -> str | None:
    """The MLflow run of an earlier attempt at this output_dir, so a rerun continues it instead of forking."""
    marker = Path(cfg.output_dir) / "mlflow_run_id"
    return marker.read_text().strip() if marker.is_file() else None


def main(argv=None) -> dict:
    args = ray_runtime.script_args(argv, __doc__)
    cfg = load_config(args.config, args.overrides)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    uri = tracking.tracking_uri(cfg.mlflow.tracking_uri)
    client, _ = tracking.setup(cfg)
    run_id = find_run(cfg) or tracking.start_run(cfg)
    (out / "mlflow_run_id").write_text(run_id)
    log(f"MLflow run {run_id} in {tracking.redact(uri)}")

    ray_runtime.connect(cfg)
    log("preparing data and feature caches")
    try:
        ray_runtime.prepare(cfg)
        result = ray_runtime.train(cfg, run_id, uri)
        if result.error:
            raise result.error
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise

    val_map, best_file = keep_best(cfg, result.best_checkpoints)
    ckpt = load_checkpoint(best_file)
    with result.checkpoint.as_directory() as d:  # the latest epoch's checkpoint holds the whole history
        history = load_checkpoint(d)["history"]
    logger = tracking.RunLogger(run_id, uri)
    logger.log_metrics({"best_val_map": val_map, "best_epoch": ckpt["epoch"]})

    summary = {"run_id": run_id, "tracking_uri": tracking.redact(uri), "best_val_map": val_map, "best_epoch": int(ckpt["epoch"]),
               "checkpoint": str(best_file), "history": history,
               **register_best(cfg, client, run_id, best_file, val_map, cfg)}
    client.set_terminated(run_id, "FINISHED")
    (out / "train_summary.json").write_text(json.dumps(summary, indent=2))
    log(f"best validation mAP {val_map:.4f} at epoch {ckpt['epoch'] + 1}; checkpoint {best_file}")
    return summary


if __name__ == "__main__":
    main()
