"""Image transforms: the two random views of training, and the deterministic view of encoding."""
from __future__ import annotations

import math

import torch
from torchvision import transforms as T
from torchvision.ops import roi_align

# The augmentation of CIBHash and NSH, shared by the loader (train_load) and the device (DeviceAugment) forms.
CROP_SCALE = (0.3, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
JITTER = dict(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)
JITTER_P, GREY_P, FLIP_P = 0.8, 0.2, 0.5


def train_view(size: int, mean, std) -> T.Compose:
    """SimCLR-style augmentation, as CIBHash and NSH use: crop, flip, colour jitter, greyscale."""
    return T.Compose([train_load(size), T.ConvertImageDtype(torch.float32), T.Normalize(mean, std)])


def train_load(size: int) -> T.Compose:
    """The loader half of train_view (see eval_load): the random augmentation, as uint8."""
    return T.Compose([
        T.RandomResizedCrop(size, scale=CROP_SCALE, ratio=CROP_RATIO, antialias=True),
        T.RandomHorizontalFlip(FLIP_P),
        T.RandomApply([T.ColorJitter(**JITTER)], p=JITTER_P),
        T.RandomGrayscale(p=GREY_P),
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


# RGB <-> YIQ: a hue shift is a rotation of the (I, Q) chroma plane
_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_RGB_FROM_YIQ = torch.linalg.inv(_YIQ)


class DeviceAugment:
    """train_load's augmentation drawn per image on a batch already on the device: (B, 3, S, S) uint8 -> the same.

    Loader workers then only decode and resize each image once (eval_load); the crop, flip, colour jitter and
    greyscale of both views run as a few batched kernels where the model is. On an H200 machine 14 loader
    workers made 1,909 training views/s at 224 px, fewer than fine-tuning takes; this makes 7,954
    (bench/augment_rate.py, docs/measurements.md).
    Differences from train_load, by design: the crop samples the already resized image (bilinear, with area
    averaging when shrinking, by roi_align) rather than the original; a crop that would not fit is clamped to
    the image instead of redrawn; the jitter runs in one fixed order (brightness, contrast, saturation, hue)
    rather than a random one; and hue turns the YIQ chroma plane, which is close to, not equal to, HSV's hue.
    """

    def __init__(self, size: int, scale=CROP_SCALE, ratio=CROP_RATIO, flip_p=FLIP_P, jitter_p=JITTER_P,
                 grey_p=GREY_P, jitter=None):
        self.size, self.scale, self.ratio = size, scale, ratio
        self.flip_p, self.jitter_p, self.grey_p = flip_p, jitter_p, grey_p
        self.jitter = JITTER if jitter is None else jitter

    def _uniform(self, n, lo, hi, device):
        return lo + (hi - lo) * torch.rand(n, device=device)

    def crop_boxes(self, n: int, h: int, w: int, device) -> torch.Tensor:
        """(n, 5) roi_align boxes (batch index, x0, y0, x1, y1): area fraction and aspect ratio as RandomResizedCrop."""
        area = self._uniform(n, *self.scale, device) * h * w
        ratio = torch.exp(self._uniform(n, math.log(self.ratio[0]), math.log(self.ratio[1]), device))
        cw = torch.sqrt(area * ratio).clamp(max=w)
        ch = torch.sqrt(area / ratio).clamp(max=h)
        x0 = torch.rand(n, device=device) * (w - cw)
        y0 = torch.rand(n, device=device) * (h - ch)
        return torch.stack([torch.arange(n, device=device, dtype=area.dtype), x0, y0, x0 + cw, y0 + ch], 1)

    def colour(self, x: torch.Tensor) -> torch.Tensor:
        """ColorJitter, applied to each image with probability jitter_p, with its own factors."""
        n, dev, j = len(x), x.device, self.jitter
        on = (torch.rand(n, device=dev) < self.jitter_p).float().view(n, 1, 1, 1)

        def factor(spread):  # identity where the image is not jittered
            return 1 + on * self._uniform(n, -spread, spread, dev).view(n, 1, 1, 1)

        x = (x * factor(j["brightness"])).clamp(0, 1)
        c = factor(j["contrast"])
        x = (c * x + (1 - c) * T.functional.rgb_to_grayscale(x).mean((2, 3), keepdim=True)).clamp(0, 1)
        s = factor(j["saturation"])
        x = (s * x + (1 - s) * T.functional.rgb_to_grayscale(x)).clamp(0, 1)
        angle = on.view(n) * self._uniform(n, -j["hue"], j["hue"], dev) * 2 * math.pi
        cos, sin = torch.cos(angle), torch.sin(angle)
        rot = torch.zeros(n, 3, 3, device=dev)
        rot[:, 0, 0], rot[:, 1, 1], rot[:, 2, 2], rot[:, 1, 2], rot[:, 2, 1] = 1, cos, cos, -sin, sin
        mix = _RGB_FROM_YIQ.to(dev) @ rot @ _YIQ.to(dev)  # (n, 3, 3), per image
        return torch.einsum("bij,bjhw->bihw", mix, x).clamp(0, 1)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"DeviceAugment takes (B, 3, H, W) uint8 images, got {tuple(images.shape)} "
                             f"{images.dtype}")
        n, _, h, w = images.shape
        x = images.float() / 255
        x = roi_align(x, self.crop_boxes(n, h, w, x.device), self.size, aligned=True)
        flip = (torch.rand(n, device=x.device) < self.flip_p).view(n, 1, 1, 1)
        x = torch.where(flip, x.flip(3), x)
        x = self.colour(x)
        grey = (torch.rand(n, device=x.device) < self.grey_p).view(n, 1, 1, 1)
        x = torch.where(grey, T.functional.rgb_to_grayscale(x, 3), x)
        return (x * 255).round().to(torch.uint8)
