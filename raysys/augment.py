"""Batched photometric augmentation on the training device.

The CPU actors hand over uint8 crops; jitter, grayscale, normalize and erasing are elementwise
work that a GPU does on a whole batch for almost nothing. Each op takes per-sample factors
explicitly and matches torchvision's functional op on one image (tests/test_augment.py);
`BatchAugment` draws those factors the way torchvision's transforms do, per sample.
"""

from __future__ import annotations

import itertools

import torch

from raysys.config import AugmentConfig

GRAY = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights


def _per_sample(v: torch.Tensor) -> torch.Tensor:
    return v.view(-1, 1, 1, 1)


def blend(a: torch.Tensor, b: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    r = _per_sample(ratio)
    return (r * a + (1.0 - r) * b).clamp(0.0, 1.0)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 1, H, W)."""
    r, g, b = x.unbind(dim=-3)
    return (GRAY[0] * r + GRAY[1] * g + GRAY[2] * b).unsqueeze(-3)


def adjust_brightness(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return blend(x, torch.zeros_like(x), f)


def adjust_contrast(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return blend(x, grayscale(x).mean(dim=(-3, -2, -1), keepdim=True), f)


def adjust_saturation(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return blend(x, grayscale(x), f)


JITTER_OPS = (adjust_brightness, adjust_contrast, adjust_saturation)


PERMUTATIONS = torch.tensor(list(itertools.permutations(range(3))))


def color_jitter(x: torch.Tensor, factors: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """factors (B, 3): brightness, contrast, saturation; order (B, 3): a permutation per sample,
    as torchvision's ColorJitter applies its ops in a random order. Samples are grouped by
    their order (6 groups), so each op runs once per sample, not once per op and position."""
    perm_id = (order.unsqueeze(1) == PERMUTATIONS.to(order.device)).all(dim=2).int().argmax(1)
    out = torch.empty_like(x)
    for p, perm in enumerate(PERMUTATIONS.tolist()):
        idx = (perm_id == p).nonzero().squeeze(1)
        if len(idx) == 0:
            continue
        sub, f = x[idx], factors[idx]
        for k in perm:
            sub = JITTER_OPS[k](sub, f[:, k])
        out[idx] = sub
    return out


def random_grayscale(x: torch.Tensor, apply: torch.Tensor) -> torch.Tensor:
    return torch.where(_per_sample(apply), grayscale(x).expand_as(x), x)


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return (x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)


def erase(x: torch.Tensor, boxes: torch.Tensor, apply: torch.Tensor) -> torch.Tensor:
    """Zero each sample's box (i, j, h, w) where apply is set: torchvision's erase with value 0."""
    H, W = x.shape[-2:]
    i, j, h, w = (boxes[:, k].view(-1, 1, 1) for k in range(4))
    rows = torch.arange(H, device=x.device).view(1, H, 1)
    cols = torch.arange(W, device=x.device).view(1, 1, W)
    inside = (rows >= i) & (rows < i + h) & (cols >= j) & (cols < j + w)
    return x.masked_fill((inside & apply.view(-1, 1, 1)).unsqueeze(1), 0.0)


def draw_erase_boxes(n: int, H: int, W: int, scale=(0.02, 0.33), ratio=(0.3, 3.3), tries: int = 10,
                     generator: torch.Generator | None = None, device=None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """torchvision's RandomErasing.get_params for n samples at once: up to 10 tries each, the
    first box that fits wins; a sample with no fitting box is left alone (found=False)."""
    kw = {"generator": generator, "device": device}
    area = H * W * (scale[0] + (scale[1] - scale[0]) * torch.rand(n, tries, **kw))
    lo, hi = torch.log(torch.tensor(ratio, dtype=torch.float32))
    aspect = torch.exp(lo + (hi - lo) * torch.rand(n, tries, **kw))
    h = torch.round(torch.sqrt(area * aspect)).long()
    w = torch.round(torch.sqrt(area / aspect)).long()
    fits = (h < H) & (w < W)
    first = fits.float().argmax(dim=1, keepdim=True)
    h, w = h.gather(1, first).squeeze(1), w.gather(1, first).squeeze(1)
    i = (torch.rand(n, **kw) * (H - h + 1)).long()
    j = (torch.rand(n, **kw) * (W - w + 1)).long()
    return torch.stack([i, j, h, w], dim=1), fits.any(dim=1)


class BatchAugment:
    """uint8 (B, 3, H, W) on device -> normalized float, with the seed's photometric recipe in
    training and only normalization in evaluation."""

    def __init__(self, aug: AugmentConfig, mean, std, device: torch.device, seed: int = 0):
        self.aug = aug
        self.mean = torch.tensor(mean, device=device)
        self.std = torch.tensor(std, device=device)
        self.gen = torch.Generator(device=device)
        self.gen.manual_seed(seed)

    def __call__(self, images: torch.Tensor, train: bool = True) -> torch.Tensor:
        x = images.float().div_(255.0)
        if train:
            x = self._photometric(x)
        x = normalize(x, self.mean, self.std)
        if train and self.aug.erasing > 0:
            boxes, found = draw_erase_boxes(len(x), *x.shape[-2:], generator=self.gen,
                                            device=x.device)
            x = erase(x, boxes, found & (self._rand(len(x)) < self.aug.erasing))
        return x

    def _rand(self, *shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=self.gen, device=self.mean.device)

    def _photometric(self, x: torch.Tensor) -> torch.Tensor:
        n, s = len(x), self.aug.jitter
        if s > 0:
            factors = 1 - s + 2 * s * self._rand(n, 3)  # uniform in [1 - s, 1 + s]
            order = torch.argsort(self._rand(n, 3), dim=1)
            x = color_jitter(x, factors, order)
        if self.aug.grayscale > 0:
            x = random_grayscale(x, self._rand(n) < self.aug.grayscale)
        return x
