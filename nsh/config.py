"""Typed configuration: YAML -> pydantic models, validated on load, unknown keys rejected.

`load_config("conf/cifar10.yaml", ["loss.tau=0.2", "model.nbits=64"])` applies command-line overrides
(values parsed as YAML) before validation, so an override is checked exactly like the file.
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class ConfigError(ValueError):
    """A config that cannot run: names the key and the fix."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(Section):
    dataset: Literal["cifar10", "fashion_mnist", "image_folder", "list_file", "features"] = "cifar10"
    root: str | None = Field(None, description="dataset folder or file; default: a dataset-specific location")
    source: Literal["auto", "folder", "torchvision"] = Field(
        "auto", description="cifar10 only: the JPEG image-folder tree or torchvision's pickles")
    image_size: int = Field(96, ge=16, description="side of the square images fed to the backbone")
    cache_views: int = Field(0, ge=0, description="K > 0: backbone features of K augmented views per training "
                             "image are computed once and the heads train on them (frozen backbone only)")
    feature_dropout: float | None = Field(None, ge=0, lt=1, description="fraction of each training feature "
                                          "vector's dimensions zeroed at random per view: augmentation in feature "
                                          "space; None: 0.5 for precomputed features, 0 for cached image views")
    view_seed: int | None = Field(None, description="seed of the cached augmented views; None: train.seed "
                                  "(fix it to share one cache between training seeds)")
    split_seed: int = 0
    split_file: str | None = Field(None, description="default: <output_dir>/../splits/<dataset>_seed<seed>.json")
    cache_dir: str | None = Field(None, description="cached backbone features; default: <output_dir>/../cache")
    query_per_class: int = Field(100, ge=1)
    train_per_class: int = Field(500, ge=1)
    val_query_per_class: int = Field(100, ge=1, description="validation queries, drawn from the database")
    val_db_per_class: int = Field(500, ge=1, description="validation database, drawn from the database")
    database_per_class: int | None = Field(None, description="cap the database (tests, quick runs); None = all")
    loader_workers: int = Field(0, ge=0, description="torch DataLoader worker processes")
    augment_on: Literal["loader", "device"] = Field(
        "loader", description="online views (data.cache_views=0): 'loader' augments in the DataLoader workers; "
        "'device' has them only decode and resize, and crops, flips and jitters both views on the model's device "
        "(nsh.data.augment.DeviceAugment): for GPUs, whose training the workers' augmentation starves")


class ModelConfig(Section):
    backbone: str = "efficientnet_lite0"
    nbits: int = 32
    latent_dim: int = Field(128, ge=1)
    hidden: int = Field(1024, ge=1)
    surrogate: Literal["tanh", "identity"] = "tanh"
    freeze_backbone: bool = True
    bn_stats: Literal["frozen", "batch"] = Field(
        "frozen", description="a fine-tuned backbone's BatchNorm: 'frozen' normalises with the pretrained running "
        "statistics (scale and shift still train); 'batch' normalises each training batch by its own statistics "
        "and updates the running ones")
    pretrained: bool = True
    weights_path: str | None = None
    feature_dim: int | None = Field(None, description="input width for backbone 'features'")

    @model_validator(mode="after")
    def _nbits(self):
        if self.nbits <= 0 or self.nbits % 8:
            raise ValueError(f"model.nbits={self.nbits} is not a positive multiple of 8 (codes are packed into bytes)")
        return self


class LossConfig(Section):
    name: Literal["sorted_nce", "nt_xent"] = "sorted_nce"
    sorter: Literal["softsort", "torchsort"] = "softsort"
    steepness: float = Field(0.5, gt=0, description="sorter steepness, per Hamming bit")
    m: int = Field(1, ge=1, description="positives per anchor (sorted positions)")
    tau: float = Field(0.3, gt=0, description="SortedNCE temperature")
    own_positive: bool = Field(False, description="always count the anchor's other view as a positive")
    mined_weight: float = Field(1.0, gt=0, description="with own_positive: weight of each mined positive against "
                                "the own view's 1 in the mean over positives")
    mined_warmup: int = Field(0, ge=0, description="with own_positive: epochs over which the mined positives' "
                              "weight grows linearly from 0 to loss.mined_weight, since the first epochs sort by an "
                              "untrained hash head's codes")
    near: int = Field(0, ge=0, description="candidates ranked right after the m positives by Hamming distance, "
                      "which weigh loss.near_weight as negatives")
    near_weight: float = Field(0.0, ge=0, description="0 leaves the near candidates out of the negatives (the "
                               "likeliest to share the anchor's class: neither pulled nor pushed away); above 1 "
                               "pushes them, the hardest negatives, harder")
    near_grad: bool = Field(True, description="false: the near band reweighs the latents' negatives only, and its "
                            "soft membership sends the codes no gradient")
    symmetric: bool = False
    code_weight: float = Field(0.0, ge=0, description="weight of an added NT-Xent term on the codes")
    code_tau: float = Field(0.3, gt=0)
    global_batch: bool = Field(False, description="sort each anchor against all workers' candidates (torchsort)")


class TrainConfig(Section):
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(256, ge=2, description="per worker")
    lr: float = Field(1e-3, gt=0)
    backbone_lr: float | None = Field(None, gt=0, description="learning rate of a fine-tuned backbone (the heads "
                                      "keep train.lr); None: train.lr for both")
    weight_decay: float = Field(1e-5, ge=0)
    ema_decay: float | None = Field(None, gt=0, lt=1, description="validate, keep and export an exponential moving "
                                    "average of the weights, updated every step at this decay; None: the weights "
                                    "as trained")
    seed: int = 0
    val_k: int | None = Field(None, ge=1, description="validation mAP cutoff; None: eval.k scaled to the "
                              "validation database (nsh.training.validation_k)")
    workers: int = Field(1, ge=1, description="Ray Train workers (data-parallel)")
    use_gpu: bool | None = Field(None, description="None: use GPUs when the cluster has them")
    max_failures: int = Field(2, ge=0, description="worker crashes to recover from, from the last checkpoint")
    resume_from: str | None = Field(None, description="checkpoint file or folder to continue or fine-tune from")
    log_every: int = Field(20, ge=1, description="steps between progress lines")


class EncodeConfig(Section):
    splits: list[str] = Field(default_factory=lambda: ["query", "database"])
    input: str | None = Field(None, description="encode this image folder or feature file instead of protocol splits")
    model: str | None = Field(None, description="MLflow model URI or checkpoint path; default: this run's best")
    batch_size: int = Field(256, ge=1)
    concurrency: int = Field(1, ge=1, description="encoder actors")
    shard_size: int = Field(4096, ge=1, description="rows per output file: the unit of resumption")


class EvalConfig(Section):
    k: int = Field(1000, ge=1)
    grid_queries: int = Field(8, ge=0)
    grid_hits: int = Field(10, ge=1)


class MlflowConfig(Section):
    tracking_uri: str | None = Field(None, description="default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db")
    experiment: str = "nsh"
    registered_model: str = "nsh"
    register_best: bool = Field(True, description="register the best model; it becomes champion only if better")


class RayConfig(Section):
    address: str | None = Field(None, description="None: start (or join) a local cluster")
    num_cpus: int | None = None
    storage_path: str | None = Field(None, description="Ray Train/Tune results; default <output_dir>/ray")


class TuneConfig(Section):
    space: dict[str, dict[str, Any]] = Field(default_factory=dict, description="dotted key -> {type: ..., ...}")
    num_samples: int = Field(4, ge=1)
    scheduler: Literal["asha", "fifo"] = "asha"
    grace_period: int = Field(1, ge=1)
    max_concurrent: int = Field(2, ge=1)
    cpus_per_trial: float = Field(1, gt=0)
    gpus_per_trial: float = Field(0, ge=0)
    metric: str = "val_map"


class Config(Section):
    name: str = "nsh"
    output_dir: str = "runs/nsh"
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    train: TrainConfig = TrainConfig()
    encode: EncodeConfig = EncodeConfig()
    eval: EvalConfig = EvalConfig()
    mlflow: MlflowConfig = MlflowConfig()
    ray: RayConfig = RayConfig()
    tune: TuneConfig = TuneConfig()

    @model_validator(mode="after")
    def _consistent(self):
        loss = self.loss
        if loss.name == "sorted_nce" and loss.m + loss.near >= self.train.batch_size:
            raise ValueError(f"loss.m={loss.m} plus loss.near={loss.near} must be smaller than "
                             f"train.batch_size={self.train.batch_size}: some candidates must stay negatives")
        if (loss.name == "sorted_nce" and loss.own_positive and loss.m == 1
                and not (loss.near and loss.near_grad)
                and loss.code_weight == 0):
            raise ValueError("loss.own_positive with loss.m=1 leaves nothing to sort, so the hash head gets no "
                             "gradient: set loss.m >= 2, loss.near >= 1 or loss.code_weight > 0")
        if loss.name == "sorted_nce" and (loss.mined_weight != 1 or loss.mined_warmup) and not (
                loss.own_positive and loss.m > 1):
            raise ValueError("loss.mined_weight and loss.mined_warmup weigh mined positives against the own view: "
                             "they need loss.own_positive=true and loss.m >= 2")
        if loss.name == "sorted_nce" and not loss.near and (loss.near_weight or not loss.near_grad):
            raise ValueError("loss.near_weight and loss.near_grad weigh the band of candidates after the positives, "
                             "but loss.near=0 makes it empty: set loss.near >= 1 or drop them")
        if loss.global_batch and loss.sorter != "torchsort":
            raise ValueError("loss.global_batch needs loss.sorter=torchsort (softsort memory grows as n^3)")
        if self.model.bn_stats == "batch" and self.model.freeze_backbone:
            raise ValueError("model.bn_stats=batch trains a fine-tuned backbone's BatchNorm statistics, but "
                             "model.freeze_backbone=true; set model.freeze_backbone=false or drop model.bn_stats")
        if self.train.backbone_lr is not None and self.model.freeze_backbone:
            raise ValueError("train.backbone_lr sets a fine-tuned backbone's learning rate, but "
                             "model.freeze_backbone=true; set model.freeze_backbone=false or drop train.backbone_lr")
        if self.data.cache_views and not self.model.freeze_backbone:
            raise ValueError("data.cache_views needs model.freeze_backbone=true: a trained backbone changes "
                             "its features; use data.cache_views=0 to augment online")
        if self.data.feature_dropout and not self.data.cache_views and self.data.dataset != "features":
            raise ValueError("data.feature_dropout acts on feature vectors, but data.cache_views=0 trains on images "
                             "augmented online; set data.cache_views > 0 or drop data.feature_dropout")
        if self.data.dataset == "features" and self.model.backbone != "features":
            raise ValueError("data.dataset=features needs model.backbone=features")
        if self.data.augment_on == "device" and (self.data.cache_views or self.data.dataset == "features"):
            raise ValueError("data.augment_on=device augments images online, but this run trains on cached views or "
                             "features; set data.cache_views=0 with an image dataset, or data.augment_on=loader")
        return self

    def with_absolute_paths(self, base: Path) -> "Config":
        """Relative paths made absolute against `base` (the caller's working directory), so that Ray tasks and
        workers, which run elsewhere, see the same files."""
        def absolute(value: str | None, *, uri_ok: bool = False) -> str | None:
            if value is None or (uri_ok and ":" in value) or Path(value).is_absolute():
                return value
            return str((base / value).resolve())

        out = self.model_copy(deep=True)
        out.output_dir = absolute(out.output_dir)
        for section, key, uri_ok in (("data", "root", False), ("data", "split_file", False), ("data", "cache_dir", False),
                                     ("model", "weights_path", False), ("train", "resume_from", False),
                                     ("encode", "input", False), ("encode", "model", True),
                                     ("ray", "storage_path", True)):
            part = getattr(out, section)
            setattr(part, key, absolute(getattr(part, key), uri_ok=uri_ok))
        return out

    def dump(self) -> dict:
        return self.model_dump(mode="json")

    def flat(self) -> dict[str, Any]:
        """Dotted keys -> values, for MLflow params."""
        return dict(flatten_dict(self.dump()))


def describe_keys() -> str:
    """Every config key with its type, default and meaning: the text `--help` prints."""
    lines = []
    for section, field in Config.model_fields.items():
        cls = field.annotation
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
            lines.append(f"  {section} = {field.default!r}")
            continue
        for key, f in cls.model_fields.items():
            default = f.default_factory() if f.default_factory else f.default
            if get_origin(f.annotation) is Literal:
                kind = "|".join(map(str, get_args(f.annotation)))
            else:
                kind = getattr(f.annotation, "__name__", None) or str(f.annotation).replace("typing.", "")
            lines.append(f"  {section}.{key} ({kind}, default {default!r})" + (f": {f.description}" if f.description else ""))
    return "\n".join(lines)


def flatten_dict(d: dict, prefix: str = ""):
    for k, v in d.items():
        if isinstance(v, dict) and v and k != "space":
            yield from flatten_dict(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not key=value (e.g. loss.tau=0.2)")
        key, value = item.split("=", 1)
        set_dotted(raw, key.strip(), yaml.safe_load(value))
    return raw


def set_dotted(raw: dict, key: str, value) -> None:
    """raw["a"]["b"] = value for key "a.b", creating sections as needed."""
    node = raw
    *path, last = key.split(".")
    for p in path:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {key!r}: {p!r} is not a section")
    node[last] = value


def from_dict(raw: dict) -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_explain(err)) from None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    raw: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist; pass one of conf/*.yaml")
        raw = yaml.safe_load(path.read_text()) or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"config file {path} must hold a mapping of sections, not {type(raw).__name__}")
    return from_dict(apply_overrides(raw, overrides or [])).with_absolute_paths(Path.cwd())


def _explain(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            section = _section_at(e["loc"][:-1])
            known = list(section.model_fields) if section else []
            close = difflib.get_close_matches(str(e["loc"][-1]), known, n=1)
            hint = f"; did you mean {'.'.join(map(str, e['loc'][:-1] + (close[0],)))!r}?" if close else \
                f"; known keys here: {', '.join(known)}"
            lines.append(f"unknown config key {key!r}{hint}")
        else:
            got = "" if e["type"] == "value_error" else f" (got {e.get('input')!r})"
            lines.append(f"{key or 'config'}: {e['msg'].removeprefix('Value error, ')}{got}")
    return "invalid config: " + "; ".join(lines)


def _section_at(loc) -> type[BaseModel] | None:
    cls: type[BaseModel] = Config
    for part in loc:
        field = cls.model_fields.get(str(part))
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return None
        cls = field.annotation
    return cls
