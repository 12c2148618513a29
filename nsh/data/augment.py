"""Image transforms: the two random views of training, and the deterministic view of encoding."""
from __future__ import annotations

import torch
from torchvision import transforms as T


def train_view(size: int, mean, std) -> T.Compose:
    """SimCLR-style augmentation, as CIBHash and NSH use: crop, flip, colour jitter, greyscale."""
    return T.Compose([train_load(size), T.ConvertImageDtype(torch.float32), T.Normalize(mean, std)])


def train_load(size: int) -> T.Compose:
    """The loader half of train_view (see eval_load): the random augmentation, as uint8."""
    return T.Compose([
        T.RandomResizedCrop(size, scale=(0.3, 1.0), antialias=True),
        T.RandomHorizontalFlip(),
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        T.RandomGrayscale(p=0.2),
        T.PILToTensor(),
    ])


def eval_view(size: int, mean, std) -> T.Compose:
    return T.Compose([eval_load(size), T.ConvertImageDtype(torch.float32), T.Normalize(mean, std)])


def eval_load(size: int) -> T.Compose:
    """The loader half of eval_view: resized uint8 (C, H, W), normalised later by `normalize_batch`.

    Split so that loader workers do a third of the work and hand over a quarter of the bytes (uint8, not
    float32): converting and normalising a 224 px batch is cheap where the batch lands (the GPU).
    """
    return T.Compose([T.Resize((size, size), antialias=True), T.PILToTensor()])


def normalize_batch(x: torch.Tensor, mean, std) -> torch.Tensor:
    """The other half: uint8 (B, C, H, W) from a `*_load` -> the model's input, exactly as the `*_view` gives it."""
    return T.functional.normalize(T.functional.convert_image_dtype(x, torch.float32), mean, std)


class TwoViews:
    """Applies one random transform twice, independently: X-bar = Aug(X), X-hat = Aug(X)."""

    def __init__(self, transform):
        self.transform = transform

    def __call__(self, image):
        return self.transform(image), self.transform(image)
