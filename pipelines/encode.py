"""Encode a corpus into Parquet binary codes with Ray Data.

    python pipelines/encode.py --config conf/cifar10_quick.yaml [encode.model=models:/nsh@champion]
    python pipelines/encode.py --config conf/cifar10_quick.yaml encode.input=/data/my_images

By default it encodes the protocol splits named in encode.splits (query, database) with this run's best
checkpoint; encode.input encodes an image folder or a feature file (.npy/.npz/.parquet) instead. Output:
<output_dir>/codes/<split>/part-NNNNN.parquet (id, code as fixed_size_binary, label, path; metadata
nsh.nbits, nsh.bit_order, nsh.model_uri). The corpus is cut into shards of encode.shard_size rows, each
written atomically: rerunning the same command after a crash encodes only the missing shards. Items that
cannot be read are listed in <split>/_errors.json and the rest still encode.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines import ray_runtime  # noqa: E402
from nsh import tracking  # noqa: E402
from nsh.config import Config, load_config  # noqa: E402
from nsh.encoding import ERRORS, CorpusSpec, collect_errors, count_rows, plan  # noqa: E402
from nsh.training import load_data  # noqa: E402

log = ray_runtime.log


def resolve(cfg: Config) -> tuple[Path, str]:
    """(local checkpoint, the URI to record): encode.model, else this run's registered version or best checkpoint."""
    uri = cfg.encode.model
    if uri is None:
        summary = Path(cfg.output_dir) / "train_summary.json"
        if not summary.is_file():
            raise FileNotFoundError(f"no trained model in {cfg.output_dir}; run pipelines/train.py first or set "
                                    "encode.model (a checkpoint path or models:/nsh@champion)")
        s = json.loads(summary.read_text())
        uri = s.get("model_uri") or s["checkpoint"]
    tracking.setup(cfg)
    if uri.startswith("models:/") and "@" in uri:  # pin the alias to the version it points at now
        name, alias = uri[len("models:/"):].split("@", 1)
        try:
            uri = f"models:/{name}/{tracking.MlflowClient().get_model_version_by_alias(name, alias).version}"
        except tracking.mlflow.exceptions.MlflowException as err:
            raise FileNotFoundError(f"MLflow model {cfg.encode.model!r} not found ({err.message}); "
                                    "train and register a model first") from None
    return tracking.resolve_model(uri), uri


def jobs(cfg: Config):
    """(name, corpus spec, corpus indices) for each thing to encode."""
    import numpy as np

    if cfg.encode.input:
        path = Path(cfg.encode.input)
        dataset = "image_folder" if path.is_dir() else "features"
        spec = CorpusSpec(dataset, str(path))
        yield path.stem or path.name, spec, np.arange(len(spec.build()))
        return
    _, split = load_data(cfg)
    spec = CorpusSpec(cfg.data.dataset, cfg.data.root, cfg.data.source)
    for name in cfg.encode.splits:
        if name not in split:
            raise ValueError(f"encode.splits names {name!r}; choose from {sorted(split)}")
        yield name, spec, split[name]


def main(argv=None) -> dict:
    args = ray_runtime.script_args(argv, __doc__)
    cfg = load_config(args.config, args.overrides)
    checkpoint, model_uri = resolve(cfg)
    log(f"encoding with {model_uri}")
    ray_runtime.connect(cfg)
    done = {}
    for name, spec, indices in jobs(cfg):
        out = Path(cfg.output_dir) / "codes" / name
        shards = plan(out, spec.build().ids[indices], cfg.encode.shard_size, model_uri)
        log(f"{name}: {len(indices)} items, {len(shards)} shard(s) to encode -> {out}")
        ray_runtime.encode(shards, checkpoint, spec, model_uri, indices, out, cfg)
        errors = collect_errors(out)
        (out / ERRORS).write_text(json.dumps(errors, indent=1))
        rows = count_rows(out)
        done[name] = {"rows": rows, "errors": len(errors), "path": str(out)}
        log(f"{name}: {rows} codes written, {len(errors)} unreadable item(s)")
        for e in errors[:10]:
            log(f"  skipped {e['error']}")
        if rows + len(errors) != len(indices):
            raise RuntimeError(f"{name}: {rows} codes + {len(errors)} errors != {len(indices)} items; rerun to finish")
    return done


if __name__ == "__main__":
    main()
