"""The ViT: timm's VisionTransformer by name, from scratch, plus the two views the report needs
(pooled pre-logits features for embeddings, and attention maps)."""

from __future__ import annotations

from contextlib import contextmanager

import timm
import torch
from torch import nn

from raysys.config import ModelConfig

SHRINK_KEYS = ("patch_size", "embed_dim", "depth", "num_heads")


def build_model(cfg: ModelConfig, num_classes: int, img_size: int) -> nn.Module:
    """timm.create_model(arch, pretrained=False): this project never loads pretrained weights."""
    overrides = {k: getattr(cfg, k) for k in SHRINK_KEYS if getattr(cfg, k) is not None}
    return timm.create_model(cfg.arch, pretrained=False, num_classes=num_classes,
                             img_size=img_size, drop_rate=cfg.drop_rate,
                             drop_path_rate=cfg.drop_path_rate, **overrides)


def unwrap(model: nn.Module) -> nn.Module:
    """prepare_model wraps in DDP only when world_size > 1."""
    return getattr(model, "module", model)


def features_and_logits(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward pass giving (B, D) pooled pre-logits features and (B, K) logits."""
    m = unwrap(model)
    pooled = m.forward_head(m.forward_features(x), pre_logits=True)
    return pooled, m.head(pooled)


@contextmanager
def unfused_attention(model: nn.Module):
    """Fused SDPA never materialises the attention matrix; switch it off for visualisation only."""
    attns = [m for m in unwrap(model).modules() if hasattr(m, "fused_attn")]
    saved = [m.fused_attn for m in attns]
    for m in attns:
        m.fused_attn = False
    try:
        yield attns
    finally:
        for m, s in zip(attns, saved, strict=True):
            m.fused_attn = s


@torch.no_grad()
def attention_maps(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Per block, the (B, heads, N, N) attention probabilities; N = patches + cls token."""
    maps: list[torch.Tensor] = []
    with unfused_attention(model) as attns:
        # attn_drop receives softmax(q k^T / sqrt(d)) on the unfused path.
        hooks = [a.attn_drop.register_forward_hook(lambda _m, inp, _o: maps.append(inp[0].cpu()))
                 for a in attns]
        try:
            unwrap(model).forward_features(x)
        finally:
            for h in hooks:
                h.remove()
    return maps
