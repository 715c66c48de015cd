"""Metrics that do not mislead: macro-F1 over the names present in val, top-1 from the same
fp32 argmax as predictions.npy, a prediction CV that is 0 for a perfect classifier."""

import numpy as np
import pytest
import torch

from raysys.model.metrics import POST_HOC_TAUS, cv, predictions, relative_pred_cv, val_metrics


def _metrics(labels, preds, k):
    labels, preds = np.asarray(labels), np.asarray(preds)
    top5 = np.stack([preds] + [(preds + i) % k for i in range(1, min(5, k))], axis=1)
    by_tau = {f"pred_tau{t}": preds for t in POST_HOC_TAUS}
    counts = np.bincount(labels, minlength=k).astype(float) + 1
    return val_metrics(labels, top5, by_tau, counts)


def test_perfect_classifier_on_imbalanced_val():
    labels = np.repeat(np.arange(30), np.linspace(80, 5, 30).astype(int))
    m = _metrics(labels, labels, 30)
    assert m["val/top1"] == 1.0 and m["val/macro_f1"] == 1.0
    assert m["val/rel_pred_cv"] == pytest.approx(0.0)
    assert m["val/pred_cv"] == pytest.approx(m["val/true_cv"]) and m["val/true_cv"] > 0.3


def test_skewed_predictions_have_a_large_relative_cv():
    labels = np.repeat(np.arange(10), 20)
    preds = np.where(labels < 5, 0, labels)  # half the names collapse onto name 0
    assert relative_pred_cv(labels, preds, 10) > 1.0


def test_macro_f1_ignores_names_absent_from_val():
    labels = np.array([0, 0, 1, 1])  # names 2..9 have no val images
    m = _metrics(labels, labels, 10)
    assert m["val/macro_f1"] == 1.0  # scoring the absent names as 0 would give 0.2
    assert m["val/names_present"] == 2


def test_top1_comes_from_an_fp32_head_under_bf16_autocast():
    """Evaluation runs the body in bf16 and the head in fp32: bf16 logits over 500 names (8
    bits of mantissa) tie often, and top-1 would then hang on the tie-break. A head left
    under autocast makes bf16 logits, which this catches."""
    from raysys.config import load_config
    from raysys.model.vit import build_model, features_and_logits, unwrap

    torch.manual_seed(0)
    model = build_model(load_config("micro").model, 500, 32).eval()
    x = torch.randn(64, 3, 32, 32)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        pooled, logits = features_and_logits(model, x)
    assert logits.dtype == torch.float32  # a Linear under autocast gives bf16
    with torch.no_grad():
        fp32_head = unwrap(model).head(pooled.float())
        assert torch.equal(logits, fp32_head)
        bf16 = fp32_head.to(torch.bfloat16)
    assert (bf16 == bf16.max(1, keepdim=True).values).sum(1).gt(1).any()  # bf16 would tie
    out = predictions(logits, torch.zeros(500))
    assert torch.equal(out["pred_tau0.0"], fp32_head.argmax(1))
    assert set(out) == {"top5", *(f"pred_tau{t}" for t in POST_HOC_TAUS)}


def test_posthoc_tau_moves_predictions_to_rare_names():
    log_prior = torch.log(torch.tensor([0.9, 0.1]))
    logits = torch.tensor([[1.0, 0.5]] * 4)
    out = predictions(logits, log_prior)
    assert out["pred_tau0.0"].tolist() == [0] * 4 and out["pred_tau1.0"].tolist() == [1] * 4


def test_cv():
    assert cv(np.array([5, 5, 5])) == 0.0
    assert np.isnan(cv(np.array([0, 0])))
