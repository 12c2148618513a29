"""Configs: typed, validated on load, unknown keys rejected with a suggestion, overrides checked the same way."""
import pytest

from nsh.config import ConfigError, load_config

from conftest import REPO


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "conf").glob("*.yaml") if p.name != "ray_cluster.yaml"))
def test_every_shipped_config_loads(name):
    load_config(REPO / "conf" / name)


def test_overrides_are_parsed_as_yaml_and_applied():
    cfg = load_config(REPO / "conf" / "cifar10_quick.yaml", ["loss.tau=0.2", "model.nbits=64", "encode.splits=[query]"])
    assert (cfg.loss.tau, cfg.model.nbits, cfg.encode.splits) == (0.2, 64, ["query"])


@pytest.mark.parametrize("override,message", [
    ("loss.tauu=1", "unknown config key 'loss.tauu'; did you mean 'loss.tau'?"),
    ("lose.tau=1", "unknown config key 'lose'; did you mean 'loss'?"),
    ("loss.tau=-0.1", "loss.tau: Input should be greater than 0"),
    ("model.nbits=12", "model.nbits=12 is not a positive multiple of 8"),
    ("loss.m=256", "loss.m=256 plus loss.near=0 must be smaller than train.batch_size=256"),
    ("loss.near=254", "loss.m=2 plus loss.near=254 must be smaller than train.batch_size=256"),
    ("loss.near_weight=2", "loss.near_weight and loss.near_grad weigh the band of candidates after the positives, "
                           "but loss.near=0 makes it empty: set loss.near >= 1"),
    ("data.feature_dropout=1", "data.feature_dropout: Input should be less than 1"),
    ("loss.sorter=bubble", "loss.sorter: Input should be 'softsort' or 'torchsort'"),
    ("tau", "override 'tau' is not key=value"),
    ("data.augment_on=device", "data.augment_on=device augments images online, but this run trains on cached views"),
    ("model.bn_stats=batch", "model.bn_stats=batch trains a fine-tuned backbone's BatchNorm statistics, but "
                             "model.freeze_backbone=true"),
    ("train.backbone_lr=1e-4", "train.backbone_lr sets a fine-tuned backbone's learning rate, but "
                               "model.freeze_backbone=true; set model.freeze_backbone=false"),
])
def test_bad_configs_fail_with_a_message_that_names_the_key(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(REPO / "conf" / "cifar10_quick.yaml", [override])
    assert message in str(err.value)


def test_unknown_key_in_a_yaml_file_is_rejected(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("train:\n  epochz: 3\n")
    with pytest.raises(ConfigError, match="unknown config key 'train.epochz'; did you mean 'train.epochs'"):
        load_config(p)


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_relative_paths_become_absolute_at_load_so_ray_workers_elsewhere_see_the_same_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(REPO / "conf" / "cifar10_quick.yaml", ["data.split_file=splits/s.json",
                                                            "encode.model=models:/nsh@champion"])
    assert cfg.output_dir == str(tmp_path / "runs" / "cifar10_quick")
    assert cfg.data.split_file == str(tmp_path / "splits" / "s.json")
    assert cfg.encode.model == "models:/nsh@champion"  # URIs are left alone


def test_mined_weight_or_warmup_without_mined_positives_is_refused_with_the_fix():
    assert load_config(REPO / "conf" / "cifar10_quick.yaml", ["loss.mined_weight=0.5"]).loss.mined_weight == 0.5
    for setting in ("loss.mined_weight=0.5", "loss.mined_warmup=10"):
        for nothing_mined in (["loss.m=1"], ["loss.own_positive=false"]):
            with pytest.raises(ConfigError, match="loss.mined_weight and loss.mined_warmup weigh mined positives "
                               "against the own view: they need loss.own_positive=true and loss.m >= 2"):
                load_config(REPO / "conf" / "cifar10_quick.yaml", [setting, *nothing_mined])


def test_feature_dropout_on_images_augmented_online_is_refused_with_the_fix():
    with pytest.raises(ConfigError, match="data.feature_dropout acts on feature vectors.*set data.cache_views > 0"):
        load_config(REPO / "conf" / "cifar10_full.yaml", ["data.feature_dropout=0.3"])
