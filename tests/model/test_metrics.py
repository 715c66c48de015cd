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


# --- exact behaviour, pinned so that a changed constant or key fails (benchmarks/MUTATION.md)

def test_val_metrics_on_a_hand_computed_example():
    """Four names (3 has no val image), six val images; every key and value by hand."""
    labels = np.array([0, 0, 0, 1, 1, 2])
    preds = np.array([0, 0, 1, 1, 0, 3])  # name 3 is predicted, never true
    top5 = np.array([[0, 1], [1, 0], [1, 0], [2, 3], [0, 1], [3, 0]])  # true in 4 of 6 rows
    by_tau = {f"pred_tau{t}": preds for t in POST_HOC_TAUS}
    by_tau["pred_tau0.25"] = labels  # a post-hoc tau that fixes everything
    by_tau["pred_tau1.5"] = np.zeros(6, int)
    train = np.array([6.0, 2, 1, 1])
    m = val_metrics(labels, top5, by_tau, train)
    assert m["val/top1"] == pytest.approx(3 / 6) and m["val/top5"] == pytest.approx(4 / 6)
    assert m["val/balanced_acc"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    # macro-F1 over the 3 names present: F1 0 = 2*(2/3*2/3)/(4/3) = 2/3, F1 1 = 1/2, F1 2 = 0
    assert m["val/macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    assert m["val/pred_cv"] == pytest.approx(cv(np.array([3, 2, 0, 1])))  # all K names
    assert m["val/true_cv"] == pytest.approx(cv(np.array([3, 2, 1, 0])))
    assert m["val/rel_pred_cv"] == pytest.approx(cv(np.array([3 / 3, 2 / 2, 0 / 1])))
    assert m["val/names_present"] == 3 and m["val/images"] == 6
    assert m["posthoc_tau0.25/top1"] == 1.0 and m["posthoc_tau0.25/balanced_acc"] == 1.0
    assert m["posthoc_tau0.25/rel_pred_cv"] == 0.0
    assert m["posthoc_tau1.5/top1"] == pytest.approx(0.5)
    assert m["posthoc_tau1.5/rel_pred_cv"] == pytest.approx(cv(np.array([6 / 3, 0, 0])))
    assert m["chance/majority"] == pytest.approx(3 / 6)  # name 0, the largest in train
    assert m["chance/prior_match"] == pytest.approx(0.6 * 0.5 + 0.2 / 3 + 0.1 / 6)
    assert m["chance/uniform"] == 0.25
    assert m["chance/balanced_constant"] == pytest.approx(1 / 3)  # 3 of the 4 names in val
    taus = {f"posthoc_tau{t}/{k}" for t in POST_HOC_TAUS[1:]
            for k in ("top1", "balanced_acc", "rel_pred_cv")}
    assert set(m) == {"val/top1", "val/top5", "val/balanced_acc", "val/macro_f1",
                      "val/pred_cv", "val/true_cv", "val/rel_pred_cv", "val/names_present",
                      "val/images", "chance/majority", "chance/prior_match",
                      "chance/uniform", "chance/balanced_constant"} | taus


def test_val_metrics_count_every_name_even_past_the_last_label():
    """Predicted counts over all K names: names past the largest label still count as 0."""
    labels = np.array([0, 1])
    m = _metrics(labels, labels, 6)
    assert m["val/pred_cv"] == pytest.approx(cv(np.array([1, 1, 0, 0, 0, 0])))
    assert m["val/true_cv"] == m["val/pred_cv"]


def test_macro_f1_scores_a_name_never_predicted_as_zero():
    labels = np.array([0, 1, 1])
    preds = np.array([0, 0, 0])  # name 1 never predicted: precision 0/0
    m = _metrics(labels, preds, 2)
    assert m["val/macro_f1"] == pytest.approx((2 * (1 / 3) / (4 / 3) + 0) / 2)


def test_chance_of_an_empty_val_set_is_zero_not_an_error():
    from raysys.model.metrics import chance_baselines

    out = chance_baselines(np.array([3.0, 1.0]), np.zeros(0, int))
    assert np.isnan(out.pop("chance/balanced_constant"))
    assert out == {"chance/majority": 0.0, "chance/prior_match": 0.0, "chance/uniform": 0.5}
    one = chance_baselines(np.array([1.0, 3.0]), np.array([1]))  # one image: divide by 1
    assert one["chance/majority"] == 1.0 and one["chance/prior_match"] == 0.75
    assert one["chance/balanced_constant"] == 1.0  # one name in val: a constant guess is it


def test_cv_and_relative_cv_exactly():
    assert cv([1, 3]) == pytest.approx(0.5)  # std 1, mean 2; lists and ints accepted
    assert np.isnan(cv([])) and np.isnan(cv(np.array([0, 0])))
    # a name with one true image predicted once counts; absent names (true 0) are left out
    assert relative_pred_cv(np.array([0, 1]), np.array([0, 0]), 3) == pytest.approx(1.0)
    assert relative_pred_cv(np.array([0, 0, 1]), np.array([0, 0, 1]), 3) == 0.0


def test_per_class_table_and_accuracy_spread():
    from raysys.model.metrics import accuracy_spread, per_class_table

    labels = np.array([0, 0, 1, 1, 1, 2])
    preds = np.array([0, 1, 1, 1, 3, 2])  # name 3: predicted once, no val image
    table = per_class_table(labels, preds, ["ann", "bob", "cy", "dee"], np.array([9.7, 5, 3, 1]))
    assert list(table.columns) == ["name", "precision", "recall", "f1", "support",
                                   "train_count", "predicted"]
    assert table["name"].tolist() == ["ann", "bob", "cy", "dee"]
    np.testing.assert_allclose(table["precision"], [1, 2 / 3, 1, 0])
    np.testing.assert_allclose(table["recall"], [1 / 2, 2 / 3, 1, 0])
    np.testing.assert_allclose(table["f1"], [2 / 3, 2 / 3, 1, 0])
    assert table["support"].tolist() == [2, 3, 1, 0]
    assert table["train_count"].tolist() == [9, 5, 3, 1] and table["train_count"].dtype.kind == "i"
    assert table["predicted"].tolist() == [1, 3, 1, 1]
    spread = accuracy_spread(table)  # over names present: recalls 1/2, 2/3, 1
    assert spread == pytest.approx({"min": 0.5, "q25": 7 / 12, "median": 2 / 3,
                                    "q75": 5 / 6, "max": 1.0})
    assert list(spread) == ["min", "q25", "median", "q75", "max"]
    empty = accuracy_spread(table.assign(support=0))
    assert list(empty) == ["min", "q25", "median", "q75", "max"]
    assert all(np.isnan(v) for v in empty.values())
    # the last name predicted but never true: counted in `predicted` even past the labels
    assert per_class_table(np.array([0]), np.array([2]), ["a", "b", "c"],
                           np.ones(3))["predicted"].tolist() == [0, 0, 1]


@pytest.mark.filterwarnings("error")
def test_undefined_cv_is_nan_without_a_runtime_warning():
    """Empty or all-zero counts are 'no spread to speak of', not a division by zero that
    floods a run's log with RuntimeWarnings."""
    assert np.isnan(cv([])) and np.isnan(cv([0, 0, 0]))


def test_per_class_table_has_a_row_for_names_never_predicted_past_the_last():
    from raysys.model.metrics import per_class_table

    table = per_class_table(np.array([0, 1]), np.array([0, 0]), ["a", "b", "c"], np.ones(3))
    assert table["predicted"].tolist() == [2, 0, 0] and table["support"].tolist() == [1, 1, 0]
