"""The report's analyses on hand-computed inputs: ECE, frequency bands, leakage, the balanced
subset and the tau choice."""

import numpy as np
import pytest

from raysys.report import analysis


def test_ece_on_a_hand_computed_example():
    conf = np.array([0.95, 0.95, 0.15, 0.45, 0.55])
    correct = np.array([1, 0, 0, 1, 1])
    value, table = analysis.ece(conf, correct, bins=10)
    # bins: (0.9,1]: acc .5 conf .95 (2 of 5); (0.1,0.2]: acc 0 conf .15; (0.4,0.5]: acc 1 conf
    # .45; (0.5,0.6]: acc 1 conf .55.
    expected = 2 / 5 * 0.45 + 1 / 5 * 0.15 + 1 / 5 * 0.55 + 1 / 5 * 0.45
    assert value == pytest.approx(expected)
    assert sum(b["n"] for b in table) == 5 and len(table) == 10
    assert analysis.ece(np.array([1.0, 1.0]), np.array([1, 1]))[0] == 0.0


def test_bands_leakage_subset_and_tau_choice():
    counts = np.array([2000.0, 300, 50])
    assert analysis.frequency_bands(counts) == pytest.approx((1000 * 2000 / 4768,
                                                              200 * 2000 / 4768))
    labels = np.array([0, 0, 1, 1, 2, 2])
    preds = np.array([0, 0, 1, 0, 0, 0])
    bands = {r["band"]: r for r in analysis.band_accuracy(labels, preds, counts)}
    assert bands["Many"]["accuracy"] == 1.0 and bands["Medium"]["accuracy"] == 0.5
    assert bands["Few"]["accuracy"] == 0.0 and bands["Few"]["names"] == 1
    leak = analysis.identity_leakage(np.array(["p1", "p1", "p2", "p3", "p4", "p4"]),
                                     {"p1", "p3"}, labels, preds)
    assert leak["seen"] == {"images": 3, "top1": 2 / 3}
    assert leak["unseen"]["images"] == 3
    sub = analysis.balanced_subset(np.repeat([0, 1, 2], [10, 3, 5]),
                                   np.repeat([0, 1, 2], [10, 3, 5]))
    assert sub["per_name"] == 3 and sub["images"] == 9 and sub["top1"] == 1.0
    entry = {"val/top1": 0.5, "val/balanced_acc": 0.3, "val/rel_pred_cv": 0.9,
             "posthoc_tau0.5/top1": 0.45, "posthoc_tau0.5/balanced_acc": 0.35,
             "posthoc_tau0.5/rel_pred_cv": 0.25, "posthoc_tau1.0/top1": 0.40,
             "posthoc_tau1.0/balanced_acc": 0.38, "posthoc_tau1.0/rel_pred_cv": 0.1}
    choice = analysis.tau_tradeoff(entry)
    assert [r["tau"] for r in choice.rows] == [0.0, 0.5, 1.0] and choice.best["tau"] == 0.5
