"""Each batched op, given the factors torchvision would draw, equals torchvision's functional
op applied image by image (within 1e-5)."""

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF

from raysys.config import AugmentConfig
from raysys.model import augment as A

torch.manual_seed(0)
X = torch.rand(6, 3, 20, 24)
F = torch.tensor([0.8, 0.95, 1.0, 1.1, 1.2, 0.85])
TV_JITTER = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation)


def _close(a, b):
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


@pytest.mark.parametrize("k", range(3))
def test_each_jitter_op_matches_torchvision(k):
    ours = A.JITTER_OPS[k](X, F)
    _close(ours, torch.stack([TV_JITTER[k](x, float(f)) for x, f in zip(X, F, strict=True)]))


def test_color_jitter_random_order_matches_torchvision():
    factors = 0.8 + 0.4 * torch.rand(len(X), 3)
    order = torch.stack([torch.randperm(3) for _ in range(len(X))])
    expected = []
    for x, f, o in zip(X, factors, order, strict=True):
        for k in o.tolist():
            x = TV_JITTER[k](x, float(f[k]))
        expected.append(x)
    _close(A.color_jitter(X, factors, order), torch.stack(expected))


def test_grayscale_matches_torchvision():
    apply = torch.tensor([True, False, True, False, False, True])
    expected = [TF.rgb_to_grayscale(x, 3) if a else x for x, a in zip(X, apply, strict=True)]
    _close(A.random_grayscale(X, apply), torch.stack(expected))


def test_normalize_matches_torchvision():
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    ours = A.normalize(X, torch.tensor(mean), torch.tensor(std))
    _close(ours, torch.stack([TF.normalize(x, mean, std) for x in X]))


def test_erase_matches_torchvision_and_draws_valid_boxes():
    u = torch.rand(len(X), 2 * A.ERASE_TRIES + 2, generator=torch.Generator().manual_seed(1))
    boxes, found = A.erase_boxes(u, 20, 24)
    assert found.all()
    h, w = boxes[:, 2], boxes[:, 3]
    assert ((h * w) >= 0.02 * 480 * 0.5).all() and ((h * w) <= 0.33 * 480 * 1.5).all()
    assert (boxes[:, 0] + h <= 20).all() and (boxes[:, 1] + w <= 24).all()
    apply = torch.tensor([True, True, False, True, False, True])
    expected = [TF.erase(x, *b.tolist(), v=torch.tensor(0.0)) if a else x
                for x, b, a in zip(X, boxes, apply, strict=True)]
    _close(A.erase(X, boxes, apply), torch.stack(expected))


def test_batch_augment_draws_per_sample():
    aug = A.BatchAugment(AugmentConfig(), (0.5,) * 3, (0.5,) * 3, torch.device("cpu"))
    images = torch.full((64, 3, 16, 16), 128, dtype=torch.uint8)
    u = torch.from_numpy(A.augment_uniforms(0, np.ones(64, int), np.arange(64)))
    out = aug(images, u)
    assert out.dtype == torch.float32 and out.shape == images.shape
    per_sample = out.flatten(1)
    assert per_sample.std(dim=0).max() > 0  # samples got different factors
    zero_frac = (per_sample == 0).float().mean(dim=1)
    erased = (zero_frac > 0.01).float().mean()
    assert 0.05 < erased < 0.6  # RandomErasing p=0.25
    torch.testing.assert_close(aug(images, u), out)  # a function of the draws alone
    val = aug(images)
    _close(val, torch.full_like(val, (128 / 255 - 0.5) / 0.5))
