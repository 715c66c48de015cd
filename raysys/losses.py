"""Class-weighted cross-entropy with label smoothing, mixup/cutmix soft targets and logit
adjustment. torch's cross_entropy takes soft targets together with `weight=`, so the only thing
wrapped here is the bookkeeping of which smoothing applies where."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from timm.data import Mixup
from torch import nn

from raysys.config import AugmentConfig, LossConfig
from raysys.manifest import class_weights


class ClassWeightedCE(nn.Module):
    def __init__(self, cfg: LossConfig, train_counts: np.ndarray):
        super().__init__()
        weight = torch.tensor(class_weights(train_counts, cfg.class_weights), dtype=torch.float32)
        prior = np.maximum(train_counts, 1) / np.maximum(train_counts, 1).sum()
        self.register_buffer("weight", weight)
        # Menon et al. 2021: training on logits + tau*log(prior) makes the plain argmax at test
        # time balanced; tau = 0 turns it off.
        self.register_buffer("logit_shift", cfg.logit_adjust_tau *
                             torch.tensor(np.log(prior), dtype=torch.float32))
        self.label_smoothing = cfg.label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float() + self.logit_shift
        if target.ndim == 2:  # mixup/cutmix soft targets already carry the smoothing
            return F.cross_entropy(logits, target, weight=self.weight)
        return F.cross_entropy(logits, target, weight=self.weight,
                               label_smoothing=self.label_smoothing)


def build_mixup(aug: AugmentConfig, loss: LossConfig, num_classes: int) -> Mixup | None:
    if aug.mixup <= 0 and aug.cutmix <= 0:
        return None
    return Mixup(mixup_alpha=aug.mixup, cutmix_alpha=aug.cutmix, prob=aug.mix_prob,
                 switch_prob=aug.switch_prob, label_smoothing=loss.label_smoothing,
                 num_classes=num_classes)
