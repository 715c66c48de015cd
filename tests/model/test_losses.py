"""The loss the seed meant: class weights per sample (w[y], or t.w for soft targets),
smoothing towards (1 - eps) onehot + eps/K for every class alike, one normalisation (the sum of
the sample weights) for hard and soft targets."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from raysys.config import CLASS_WEIGHT_SCHEMES, LossConfig, load_config
from raysys.model.losses import CLASS_WEIGHTS, WeightedSmoothedCE, build_mixup, class_weights

COUNTS = np.array([90.0, 30.0, 10.0, 5.0])


def loss_fn(scheme="inverse", eps=0.0, tau=0.0):
    return WeightedSmoothedCE(LossConfig(label_smoothing=eps, class_weights=scheme,
                                         logit_adjust_tau=tau), COUNTS)


def test_hand_computed_value_on_a_multiclass_batch():
    logits = torch.tensor([[2.0, 0.0, 0.0, -1.0], [0.0, 1.0, 0.0, 0.0], [0.5, 0.5, 3.0, 0.0]])
    y = torch.tensor([0, 1, 3])
    eps, k = 0.1, 4
    w = COUNTS.sum() / (k * COUNTS)
    w = w / w.mean()
    logp = torch.log_softmax(logits.double(), 1).numpy()
    expected = 0.0
    for i, c in enumerate(y.tolist()):
        target = np.full(k, eps / k)
        target[c] += 1 - eps
        expected += w[c] * -(target * logp[i]).sum()
    expected /= sum(w[c] for c in y.tolist())
    assert loss_fn(eps=eps)(logits, y).item() == pytest.approx(expected, rel=1e-6)


def test_with_no_smoothing_it_is_torchs_weighted_ce():
    logits, y = torch.randn(16, 4), torch.randint(0, 4, (16,))
    w = loss_fn().weight
    torch.testing.assert_close(loss_fn()(logits, y), F.cross_entropy(logits, y, weight=w))


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.2])
def test_hard_labels_equal_their_one_hot_soft_targets(eps):
    logits, y = torch.randn(16, 4), torch.randint(0, 4, (16,))
    f = loss_fn(eps=eps)
    torch.testing.assert_close(f(logits, y), f(logits, F.one_hot(y, 4).float()))


def test_weights_reach_the_loss():
    """A batch of several classes: weighted and unweighted losses must differ, and the weighted
    one must be the sample-weighted mean of the per-sample losses."""
    logits = torch.tensor([[3.0, 0, 0, 0], [0, 0, 0, 0.0]])  # sample 0 easy, sample 1 hard
    y = torch.tensor([0, 3])  # largest class easy, smallest class hard
    weighted, plain = loss_fn("inverse")(logits, y), loss_fn("none")(logits, y)
    per = F.cross_entropy(logits, y, reduction="none")
    w = loss_fn("inverse").weight[y]
    assert weighted.item() == pytest.approx(((w * per).sum() / w.sum()).item())
    assert weighted.item() > plain.item() + 0.3  # the rare, misclassified sample weighs more


@pytest.mark.parametrize("cls", [0, 3])  # the largest and the smallest class
def test_smoothing_target_is_not_reweighted(cls):
    """The loss is minimised where softmax = (1 - eps) onehot + eps/K for every class:
    torch's weight= + label_smoothing= would pull the smallest class's target off 0.90."""
    eps = 0.1
    target = torch.full((4,), eps / 4)
    target[cls] += 1 - eps
    logits = torch.log(target).unsqueeze(0).requires_grad_(True)
    loss_fn(eps=eps)(logits, torch.tensor([cls])).backward()
    assert logits.grad.abs().max().item() < 1e-6
    torch_style = F.cross_entropy(logits, torch.tensor([cls]), weight=loss_fn().weight,
                                  label_smoothing=eps)
    g = torch.autograd.grad(torch_style, logits)[0]
    assert g.abs().max().item() > 1e-3  # the old loss's minimum is somewhere else


def test_mixup_and_hard_losses_have_the_same_scale():
    """timm's Mixup targets at lambda = 1 are one-hot: the loss equals the hard-label loss
    (the old soft path divided by N, not sum w, and came out at about half)."""
    cfg = load_config("micro", sets=["augment.mixup=0.8", "augment.mix_prob=0.0"])
    mix = build_mixup(cfg.augment, 4)  # mix_prob 0: targets are plain one-hot
    logits, y = torch.randn(8, 4), torch.tensor([0, 1, 2, 3, 3, 2, 1, 0])
    _, soft = mix(torch.randn(8, 3, 32, 32), y)
    f = loss_fn(eps=0.1)
    torch.testing.assert_close(f(logits, soft), f(logits, y))


@pytest.mark.parametrize("scheme", list(CLASS_WEIGHTS))
@pytest.mark.parametrize("mix", [False, True])
def test_every_weighting_backprops(scheme, mix):
    cfg = load_config("micro", sets=[f"loss.class_weights={scheme}"] +
                      (["augment.mixup=0.8", "augment.cutmix=1.0"] if mix else []))
    f = WeightedSmoothedCE(cfg.loss, COUNTS)
    logits = torch.randn(8, 4, requires_grad=True)
    y = torch.randint(0, 4, (8,))
    mixup = build_mixup(cfg.augment, 4)
    assert (mixup is not None) == mix
    target = mixup(torch.randn(8, 3, 32, 32), y)[1] if mix else y
    loss = f(logits, target)
    loss.backward()
    assert torch.isfinite(loss) and logits.grad.abs().sum() > 0
    assert f.weight.mean().item() == pytest.approx(1.0)


def test_the_config_validates_exactly_the_registered_schemes():
    assert tuple(CLASS_WEIGHTS) == CLASS_WEIGHT_SCHEMES


def test_class_weight_schemes():
    n = np.array([100.0, 10.0, 1.0])
    inv, sq, eff = (class_weights(n, s) for s in ("inverse", "sqrt", "effective"))
    assert inv[2] / inv[0] == pytest.approx(100.0)
    assert sq[2] / sq[0] == pytest.approx(10.0)
    assert eff[2] / eff[0] == pytest.approx((1 - 0.999**100) / (1 - 0.999))
    assert class_weights(n, "none").tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="choose one of"):
        class_weights(n, "bogus")
    with pytest.raises(ValueError, match="no training images"):
        class_weights(np.array([3.0, 0.0]), "inverse")


def test_logit_adjustment_shifts_by_the_prior():
    """Hand-computed: with all-zero logits the adjusted softmax is prior^tau, normalised, so
    the loss of a rare name is -log(p^tau / sum p^tau); tau = 1 gives -log p exactly. A forward
    that ignored the shift would give log K for both."""
    prior = COUNTS / COUNTS.sum()
    zeros = torch.zeros(2, 4)
    target = torch.tensor([3, 0])
    for tau in (1.0, 0.5):
        per_name = -(tau * np.log(prior) - np.log((prior ** tau).sum()))
        f = loss_fn("none", tau=tau)
        assert f(zeros, target).item() == pytest.approx(per_name[[3, 0]].mean(), rel=1e-6)
    assert loss_fn("none", tau=1.0)(zeros[:1], target[:1]).item() == pytest.approx(
        np.log(COUNTS.sum() / COUNTS[3]), rel=1e-6)  # = log 27
    # The shift trains the rare name's logit up: the gradient pushes class 3 harder than
    # without it.
    logits = torch.zeros(1, 4, requires_grad=True)
    loss_fn("none", tau=1.0)(logits, target[:1]).backward()
    plain = torch.zeros(1, 4, requires_grad=True)
    loss_fn("none", tau=0.0)(plain, target[:1]).backward()
    assert logits.grad[0, 3] < plain.grad[0, 3] < 0
