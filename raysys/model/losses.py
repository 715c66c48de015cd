"""Class-weighted cross-entropy with label smoothing, for hard labels and mixup/cutmix soft
targets alike, plus logit adjustment.

torch's `F.cross_entropy(weight=w, label_smoothing=eps)` is not that loss: it spreads the eps/K
mass in proportion to w (with inverse weights on the production counts the largest name keeps
0.38 of its target and the smallest 0.97, not 0.90 each), and it normalises hard targets by
sum(w[y]) but soft targets by N (mixup came out at 0.5x the hard loss). Here every target is a
distribution t (one-hot, or timm's unsmoothed mixup mix), each sample weighs t.w, smoothing is
(1 - eps) t + eps/K for every class alike, and the batch is normalised by the sum of the sample
weights. With eps = 0 it equals torch's weighted cross-entropy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils.class_weight import compute_class_weight
from timm.data import Mixup
from torch import nn

if TYPE_CHECKING:  # config validates the scheme names itself, so it never imports this module
    from raysys.config import AugmentConfig, LossConfig


def _balanced(counts: np.ndarray) -> np.ndarray:
    """sklearn's 'balanced' weights, n / (K * n_c), from per-class counts."""
    labels = np.repeat(np.arange(len(counts)), counts.astype(np.int64))
    return compute_class_weight("balanced", classes=np.arange(len(counts)), y=labels)


# The keys are config.CLASS_WEIGHT_SCHEMES, in that order (a test holds them equal).
CLASS_WEIGHTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "none": lambda n: np.ones_like(n, dtype=np.float64),
    "inverse": _balanced,
    "sqrt": lambda n: np.sqrt(_balanced(n)),
    # Cui et al. 2019, effective number of samples: (1 - beta) / (1 - beta^n), beta = 0.999.
    "effective": lambda n: (1 - 0.999) / (1 - 0.999 ** n),
}


def class_weights(counts: np.ndarray, scheme: str) -> np.ndarray:
    """Per-class loss weights normalised to mean 1, so the loss scale does not move with K."""
    if scheme not in CLASS_WEIGHTS:
        raise ValueError(f"class weight scheme {scheme!r}: choose one of {list(CLASS_WEIGHTS)}")
    counts = np.asarray(counts, dtype=np.float64)
    if (counts <= 0).any():
        missing = np.flatnonzero(counts <= 0).tolist()
        raise ValueError(f"classes {missing[:10]} have no training images: class weights "
                         "are undefined; rebuild the manifest with another split")
    w = CLASS_WEIGHTS[scheme](counts)
    return w / w.mean()


class WeightedSmoothedCE(nn.Module):
    """sum_i (t_i . w) * CE(logits_i + shift, (1 - eps) t_i + eps/K) / sum_i (t_i . w)."""

    def __init__(self, cfg: LossConfig, train_counts: np.ndarray):
        super().__init__()
        counts = np.asarray(train_counts, dtype=np.float64)
        self.register_buffer("weight", torch.tensor(class_weights(counts, cfg.class_weights),
                                                    dtype=torch.float32))
        # Menon et al. 2021: training on logits + tau log(prior) makes the plain argmax at test
        # time balanced; tau = 0 turns it off. validate() refuses it on top of class weights.
        prior = counts / counts.sum()
        self.register_buffer("logit_shift", cfg.logit_adjust_tau *
                             torch.tensor(np.log(prior), dtype=torch.float32))
        self.smoothing = cfg.label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """logits (B, K); target (B,) class indices or (B, K) distributions."""
        k = logits.shape[1]
        if target.ndim == 1:
            target = F.one_hot(target, k).float()
        target = target.float()
        sample_w = target @ self.weight  # (B,): w[y] for one-hot targets
        smoothed = (1 - self.smoothing) * target + self.smoothing / k
        log_p = F.log_softmax(logits.float() + self.logit_shift, dim=1)
        per_sample = -(smoothed * log_p).sum(dim=1)
        return (sample_w * per_sample).sum() / sample_w.sum()


def build_mixup(aug: AugmentConfig, num_classes: int) -> Mixup | None:
    """timm's Mixup with its own smoothing off: the loss smooths every target the same way."""
    if aug.mixup <= 0 and aug.cutmix <= 0:
        return None
    return Mixup(mixup_alpha=aug.mixup, cutmix_alpha=aug.cutmix, prob=aug.mix_prob,
                 switch_prob=aug.switch_prob, label_smoothing=0.0, num_classes=num_classes)
