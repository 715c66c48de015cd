"""The ViT: timm's VisionTransformer by name, from scratch, plus the views the report needs
(pooled pre-logits features for embeddings, attention maps and their rollout)."""

from __future__ import annotations

from contextlib import contextmanager

import timm
import torch
from timm.utils import AttentionExtract
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
    """prepare_model wraps in DDP only when world_size > 1; torch.compile wraps in _orig_mod."""
    model = getattr(model, "_orig_mod", model)
    return getattr(model, "module", model)


def features_and_logits(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward pass giving (B, D) pooled pre-logits features and (B, K) logits."""
    m = unwrap(model)
    pooled = m.forward_head(m.forward_features(x), pre_logits=True)
    # The head in fp32, outside any autocast: bf16 logits over 500 names (8 bits of mantissa)
    # tie often, and top-1 would hang on the tie-break.
    with torch.autocast(x.device.type, enabled=False):
        return pooled, m.head(pooled.float())


@contextmanager
def unfused_attention(model: nn.Module):
    """Fused SDPA never materialises the attention matrix; switch it off for visualisation only."""
    attns = [m for m in unwrap(model).modules() if hasattr(m, "fused_attn")]
    saved = [m.fused_attn for m in attns]
    for m in attns:
        m.fused_attn = False
    try:
        yield
    finally:
        for m, s in zip(attns, saved, strict=True):
            m.fused_attn = s


@torch.no_grad()
def attention_maps(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Per block, the (B, heads, N, N) attention probabilities; N = patches + cls token. Uses
    timm's AttentionExtract on a copy-free hook of each block's attn_drop (identity in eval)."""
    with unfused_attention(model):
        extract = AttentionExtract(unwrap(model), method="hook", names=["*attn_drop"])
        try:
            out = extract(x)
        finally:
            for handle in _hook_handles(extract):
                handle.remove()
    return [v.cpu() for v in out.values()]


def _hook_handles(extract: AttentionExtract) -> list:
    hooks = extract.hooks
    return list(getattr(hooks, "_handles", [])) if hooks is not None else []


def attention_rollout(maps: list[torch.Tensor]) -> torch.Tensor:
    """Abnar & Zuidema 2020: average the heads, add the identity for the residual path,
    renormalise rows, multiply through the layers. Returns (B, N-1): how much the cls token
    draws from each patch after the last block."""
    result = None
    for a in maps:
        a = a.float().mean(dim=1)  # (B, N, N)
        a = a + torch.eye(a.shape[-1], device=a.device)
        a = a / a.sum(dim=-1, keepdim=True)
        result = a if result is None else a @ result
    return result[:, 0, 1:]
