"""The ViT (raysys/model/vit.py): every preset builds and backpropagates on the CPU, attention
maps come out unfused only for their pass, and rollout matches a hand-built case."""

import pytest
import torch

from raysys.config import PRESETS, load_config
from raysys.model.vit import attention_maps, attention_rollout, build_model, features_and_logits


def test_rollout_on_a_hand_built_two_layer_case():
    """Two layers, one head, N = 3 tokens (cls + 2 patches). Rollout = prod of
    (A + I) / rowsum over the layers; the cls row, without itself, is the patch map."""
    a1 = torch.tensor([[0.5, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    a2 = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    r1 = (a1 + torch.eye(3)) / 2  # each row of A sums to 1, so + I sums to 2
    r2 = (a2 + torch.eye(3)) / 2
    expected = (r2 @ r1)[0, 1:]
    got = attention_rollout([a1.view(1, 1, 3, 3), a2.view(1, 1, 3, 3)])
    torch.testing.assert_close(got, expected.view(1, 2))
    assert got[0, 1] > got[0, 0]  # layer 2 sends cls to patch 2
    # heads are averaged first
    two_heads = torch.stack([a1, torch.eye(3)]).unsqueeze(0)
    torch.testing.assert_close(attention_rollout([two_heads]),
                               (((a1 + torch.eye(3)) / 2 + torch.eye(3)) / 2)[0, 1:].view(1, 2))


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_trains_a_step_on_cpu(preset):
    cfg = load_config(preset)
    # The production presets at a tiny resolution: same model code, seconds on the CPU.
    size = cfg.data.img_size if preset == "micro" else 32
    model = build_model(cfg.model, 5, size)
    x = torch.randn(2, 3, size, size)
    feats, logits = features_and_logits(model, x)
    assert logits.shape == (2, 5) and feats.shape[0] == 2
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 4])).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_attention_maps_unfused_only_for_the_pass():
    cfg = load_config("micro")
    model = build_model(cfg.model, 5, 32).eval()
    fused = [m.fused_attn for m in model.modules() if hasattr(m, "fused_attn")]
    maps = attention_maps(model, torch.randn(2, 3, 32, 32))
    assert len(maps) == cfg.model.depth
    assert maps[0].shape == (2, cfg.model.num_heads, 65, 65)  # 8x8 patches + cls
    torch.testing.assert_close(maps[0].sum(-1), torch.ones(2, cfg.model.num_heads, 65))
    assert [m.fused_attn for m in model.modules() if hasattr(m, "fused_attn")] == fused
    assert not any(m._forward_hooks for m in model.modules())  # hooks removed
