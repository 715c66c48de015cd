"""Batched photometric augmentation on the training device.

The CPU actors hand over uint8 crops; jitter, grayscale, normalize and erasing are elementwise
work that a GPU does on a whole batch for almost nothing. Each op takes per-sample factors
explicitly and matches torchvision's functional op on one image (tests/test_augment.py);
`BatchAugment` turns per-sample uniforms into those factors the way torchvision's transforms
draw them. The uniforms are a function of (run seed, epoch, row) (`augment_uniforms`, computed
in Ray Data's batch-formatting threads), never of which rank or actor saw the image.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from raysys.config import AugmentConfig
from raysys.keyed_random import keyed_uniform, row_keys

AUGMENT_STREAM = 2  # keyed_random stream id of the batched augmentation

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


ERASE_TRIES = 10
# Uniform draws per sample: jitter factors (3) and order (3), grayscale (1), erasing: area and
# ratio per try (2 x 10), position (2), apply (1).
AUGMENT_DRAWS = 3 + 3 + 1 + 2 * ERASE_TRIES + 2 + 1


def erase_boxes(u: torch.Tensor, H: int, W: int, scale=(0.02, 0.33), ratio=(0.3, 3.3)
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """torchvision's RandomErasing.get_params for a batch, from uniforms u (B, 2*tries + 2):
    up to 10 tries each, the first box that fits wins; a sample with no fitting box is left
    alone (found=False)."""
    t = ERASE_TRIES
    area = H * W * (scale[0] + (scale[1] - scale[0]) * u[:, :t])
    lo, hi = torch.log(torch.tensor(ratio, dtype=u.dtype, device=u.device))
    aspect = torch.exp(lo + (hi - lo) * u[:, t:2 * t])
    h = torch.round(torch.sqrt(area * aspect)).long()
    w = torch.round(torch.sqrt(area / aspect)).long()
    fits = (h < H) & (w < W)
    first = fits.float().argmax(dim=1, keepdim=True)
    h, w = h.gather(1, first).squeeze(1), w.gather(1, first).squeeze(1)
    i = (u[:, 2 * t] * (H - h + 1)).long()
    j = (u[:, 2 * t + 1] * (W - w + 1)).long()
    return torch.stack([i, j, h, w], dim=1), fits.any(dim=1)


class BatchAugment:
    """uint8 (B, 3, H, W) on device -> normalized float. Training applies the seed's photometric
    recipe with per-sample randomness u (B, AUGMENT_DRAWS) that the caller derives from
    (seed, epoch, row); evaluation only normalizes."""

    def __init__(self, aug: AugmentConfig, mean, std, device: torch.device):
        self.aug = aug
        self.mean = torch.tensor(mean, device=device)
        self.std = torch.tensor(std, device=device)

    def __call__(self, images: torch.Tensor, u: torch.Tensor | None = None) -> torch.Tensor:
        x = images.float().div_(255.0)
        if u is None:
            return normalize(x, self.mean, self.std)
        u = u.to(x.device, torch.float32)
        if self.aug.jitter > 0:
            s = self.aug.jitter
            factors = 1 - s + 2 * s * u[:, 0:3]  # uniform in [1 - s, 1 + s]
            x = color_jitter(x, factors, torch.argsort(u[:, 3:6], dim=1))
        if self.aug.grayscale > 0:
            x = random_grayscale(x, u[:, 6] < self.aug.grayscale)
        x = normalize(x, self.mean, self.std)
        if self.aug.erasing > 0:
            boxes, found = erase_boxes(u[:, 7:7 + 2 * ERASE_TRIES + 2], *x.shape[-2:])
            x = erase(x, boxes, found & (u[:, -1] < self.aug.erasing))
        return x


def augment_uniforms(seed: int, epoch: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(B, AUGMENT_DRAWS) float32 uniforms for BatchAugment, keyed by (seed, epoch, row)."""
    keys = row_keys(seed, epoch, rows)
    return keyed_uniform(keys, AUGMENT_DRAWS, stream=AUGMENT_STREAM).astype(np.float32)
