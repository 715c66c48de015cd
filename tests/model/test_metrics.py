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


def test_top1_uses_the_fp32_argmax_of_predictions():
    torch.manual_seed(0)
    logits = torch.randn(512, 500).to(torch.bfloat16)  # many near-ties in bf16
    out = predictions(logits, torch.zeros(500))
    assert torch.equal(out["pred_tau0.0"], logits.float().argmax(1))
    assert set(out) == {"top5", *(f"pred_tau{t}" for t in POST_HOC_TAUS)}


def test_posthoc_tau_moves_predictions_to_rare_names():
    log_prior = torch.log(torch.tensor([0.9, 0.1]))
    logits = torch.tensor([[1.0, 0.5]] * 4)
    out = predictions(logits, log_prior)
    assert out["pred_tau0.0"].tolist() == [0] * 4 and out["pred_tau1.0"].tolist() == [1] * 4


def test_cv():
    assert cv(np.array([5, 5, 5])) == 0.0
    assert np.isnan(cv(np.array([0, 0])))
