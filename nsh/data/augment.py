"""Image transforms: the two random views of training, and the deterministic view of encoding."""
from __future__ import annotations

from torchvision import transforms as T


def train_view(size: int, mean, std) -> T.Compose:
    """SimCLR-style augmentation, as CIBHash and NSH use: crop, flip, colour jitter, greyscale."""
    return T.Compose([
        T.RandomResizedCrop(size, scale=(0.3, 1.0), antialias=True),
        T.RandomHorizontalFlip(),
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        T.RandomGrayscale(p=0.2),
        T.ToTensor(),
        T.Normalize(mean, std),
    ])


def eval_view(size: int, mean, std) -> T.Compose:
    return T.Compose([T.Resize((size, size), antialias=True), T.ToTensor(), T.Normalize(mean, std)])


class TwoViews:
    """Applies one random transform twice, independently: X-bar = Aug(X), X-hat = Aug(X)."""

    def __init__(self, transform):
        self.transform = transform

    def __call__(self, image):
        return self.transform(image), self.transform(image)
