"""The NSH model: one backbone feeding a hash head and a latent head."""
from __future__ import annotations

import torch
from torch import nn

from nsh.codes import check_nbits
from nsh.data.augment import normalize_batch
from nsh.models.backbones import build_backbone
from nsh.models.heads import HashHead, LatentHead


class Hasher(nn.Module):
    """images (or feature vectors, with backbone 'features') -> (codes in {-1,+1}, unit latents)."""

    def __init__(self, backbone: str, nbits: int, latent_dim: int = 128, hidden: int = 1024,
                 surrogate: str = "tanh", freeze_backbone: bool = True, pretrained: bool = True,
                 weights_path: str | None = None, feature_dim: int | None = None, bn_stats: str = "frozen"):
        super().__init__()
        self.nbits = check_nbits(nbits)
        bb = build_backbone(backbone, pretrained=pretrained, weights_path=weights_path, feature_dim=feature_dim)
        self.backbone_name, self.feature_dim = backbone, bb.dim
        self.backbone, self.mean, self.std = bb.module, bb.mean, bb.std
        if bn_stats not in ("frozen", "batch"):
            raise ValueError(f"unknown bn_stats {bn_stats!r}; choose 'frozen' or 'batch'")
        self.freeze_backbone, self.bn_stats = freeze_backbone, bn_stats
        if freeze_backbone:
            self.backbone.requires_grad_(False)
        self.hash_head = HashHead(bb.dim, nbits, hidden, surrogate)
        self.latent_head = LatentHead(bb.dim, latent_dim, hidden)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze_backbone:  # a frozen backbone keeps its BatchNorm statistics too
            self.backbone.eval()
        elif self.bn_stats == "frozen":
            # Fine-tuning with batch statistics lost to the frozen backbone on both an H200 and this CPU, and the
            # CPU runs fell further every epoch; with the pretrained statistics they gained (docs/measurements.md,
            # session 13). A batch holds both views of every image, and its statistics drift from those of the
            # plain images that are encoded later.
            for module in self.backbone.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        # uint8 images come straight from a loader (nsh.data.augment.eval_load) and are normalised here, on x's
        # device: loader workers then hand over a quarter of the bytes
        if x.dtype == torch.uint8:
            x = normalize_batch(x, self.mean, self.std)
        if x.dim() == 4 and x.device.type == "cpu":
            # oneDNN's convolutions run EfficientNet-Lite0 1.5-1.6x faster on NHWC than on NCHW input
            # (bench/performance.py --only backbone); not measured on a GPU, so left to cuDNN's default there
            x = x.contiguous(memory_format=torch.channels_last)
        if self.freeze_backbone:
            with torch.no_grad():
                return self.backbone(x)
        return self.backbone(x)

    def heads(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.hash_head(f), self.latent_head(f)

    def forward(self, x: torch.Tensor, is_feature: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        return self.heads(x if is_feature else self.features(x))

    @torch.no_grad()
    def encode(self, x: torch.Tensor, is_feature: bool = False) -> torch.Tensor:
        """Codes in {-1, +1} for inference (eval mode is the caller's business)."""
        f = x if is_feature else self.features(x)
        return self.hash_head(f)
