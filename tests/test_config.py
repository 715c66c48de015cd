"""Config layering and validation; every preset and every loss variant runs forward/backward."""

import numpy as np
import pytest
import torch

from raysys.config import PRESETS, ConfigError, load_config
from raysys.losses import ClassWeightedCE, build_mixup
from raysys.manifest import CLASS_WEIGHTS
from raysys.model import attention_maps, build_model, features_and_logits


def test_seed_recipe_is_the_default():
    cfg = load_config()
    assert cfg.model.arch == "vit_base_patch16_224" and cfg.data.img_size == 224
    assert (cfg.data.batch_size, cfg.optim.epochs, cfg.optim.warmup_epochs) == (256, 100, 10)
    assert cfg.optim.resolved_lr(cfg.data.batch_size) == pytest.approx(1e-3)
    assert cfg.optim.resolved_lr(2048) == pytest.approx(8e-3)
    assert (cfg.optim.weight_decay, cfg.optim.grad_clip) == (0.05, 1.0)
    assert (cfg.loss.label_smoothing, cfg.model.drop_rate, cfg.model.drop_path_rate) == \
        (0.1, 0.1, 0.1)
    assert cfg.augment.mixup == 0 and cfg.augment.cutmix == 0


def test_layering_yaml_then_set(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("optim:\n  epochs: 7\nloss:\n  label_smoothing: 0.2\n")
    cfg = load_config("micro", y, ["optim.epochs=9", "data.top_k=30", "optim.lr=1e4",
                                   "augment.scale=[0.5, 1.0]"])
    assert cfg.optim.epochs == 9 and cfg.loss.label_smoothing == 0.2
    assert cfg.data.top_k == 30 and cfg.optim.lr == 1e4 and cfg.augment.scale == (0.5, 1.0)
    assert type(cfg).from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("sets, message", [
    (["optim.epoch=3"], "unknown key optim.epoch"),
    (["optimizer.lr=1"], "unknown config section"),
    (["loss.class_weights=bogus"], "choose one of"),
    (["optim.epochs=three"], "expected int"),
    (["run.gpus=maybe"], "expected true/false"),
    (["loss.label_smoothing=1.5"], "label_smoothing"),
    (["data.img_size=30"], "multiple of model.patch_size"),
    (["model.pretrained=true"], "from scratch"),
    (["optim.lr"], "section.key=value"),
])
def test_bad_values_fail_before_ray_starts(sets, message):
    with pytest.raises(ConfigError, match=message):
        load_config("micro", sets=sets)


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


@pytest.mark.parametrize("scheme", sorted(CLASS_WEIGHTS))
@pytest.mark.parametrize("mix", [False, True])
@pytest.mark.parametrize("tau", [0.0, 1.0])
def test_every_loss_variant_backprops(scheme, mix, tau):
    cfg = load_config("micro", sets=[f"loss.class_weights={scheme}", f"loss.logit_adjust_tau={tau}"]
                      + (["augment.mixup=0.8", "augment.cutmix=1.0"] if mix else []))
    counts = np.array([50.0, 20, 5, 1])
    loss_fn = ClassWeightedCE(cfg.loss, counts)
    logits = torch.randn(8, 4, requires_grad=True)
    y = torch.randint(0, 4, (8,))
    mixup = build_mixup(cfg.augment, cfg.loss, 4)
    assert (mixup is not None) == mix
    target = y
    if mix:
        _, target = mixup(torch.randn(8, 3, 32, 32), y)
        assert target.shape == (8, 4)
    loss = loss_fn(logits, target)
    loss.backward()
    assert torch.isfinite(loss) and logits.grad.abs().sum() > 0


def test_class_weights_and_smoothing_reach_the_loss():
    cfg = load_config("micro", sets=["loss.class_weights=inverse", "loss.label_smoothing=0.0"])
    counts = np.array([90.0, 10.0])
    loss_fn = ClassWeightedCE(cfg.loss, counts)
    assert loss_fn.weight[1] / loss_fn.weight[0] == pytest.approx(9.0)
    logits = torch.tensor([[2.0, 0.0]])
    expected = torch.nn.functional.cross_entropy(logits, torch.tensor([0]))
    torch.testing.assert_close(loss_fn(logits, torch.tensor([0])), expected)
