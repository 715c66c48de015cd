"""summary.md (raysys/report/summary.py): the criteria each where it is defined, names without
val images, the tau table in the live summary."""

import pandas as pd
import pytest

from raysys.report.history import best_entry
from raysys.report.summary import render_summary
from tests.report.helpers import entry


@pytest.mark.parametrize("k, applies", [(30, "top-1 > 15% on 30 names"),
                                        (500, "top-1 > 5% on 500 names"), (12, None)])
def test_criteria_apply_only_where_defined(k, applies):
    text = render_summary([entry(k=k)], None, {"metric": "val/top1", "device": "cpu"})
    rows = {line.split(" | ")[0][2:]: line for line in text.splitlines()
            if line.startswith("| top-1 > ")}
    assert set(rows) == {"top-1 > 5% on 500 names", "top-1 > 15% on 30 names"}
    for name, line in rows.items():
        defined = name == applies
        assert ("n/a: defined for" in line) != defined, line
        if defined:  # judged: top-1 0.3 is above both thresholds
            assert line.endswith("| yes |"), line
    assert "GPU memory" not in text
    cuda = render_summary([entry(k=k, **{"gpu/peak_mem_gb": 3.5})], None,
                          {"metric": "val/top1", "device": "cuda"})
    assert "peak GPU memory 3.50 GB" in cuda


def test_names_without_val_images_are_listed_apart():
    table = pd.DataFrame({"name": ["a", "b", "c"], "precision": [1.0, 0.5, 0.0],
                          "recall": [1.0, 0.5, 0.0], "f1": [1.0, 0.5, 0.0],
                          "support": [5, 5, 0], "train_count": [20, 10, 5],
                          "predicted": [5, 5, 0]})
    text = render_summary([entry(k=3)], table, {"metric": "val/top1"})
    bottom = text.split("## Bottom-5 names by F1")[1].split("##")[0]
    assert "| c |" not in bottom and "Names with no val images (1, not ranked): c" in text
    assert best_entry([entry(1, **{"val/top1": 0.2}), entry(2)], "val/top1")["epoch"] == 2


def test_the_live_summary_has_the_tau_table_with_the_right_note():
    unweighted = render_summary([entry()], None, {"metric": "val/top1",
                                                  "class_weights": "none"})
    table = unweighted.split("## Skew control: post-hoc logit adjustment")[1].split("##")[0]
    assert "| 0.5 | 0.2800 | 0.3000 | 0.250 |" in table
    assert "tau = 0.5 meets relative prediction CV < 0.3" in table
    assert "trade-off between accuracy and prediction skew" in table
    weighted = render_summary([entry()], None, {"metric": "val/top1",
                                                "class_weights": "inverse"})
    assert "corrects twice" in weighted


def test_balanced_chance_is_a_constant_guess_over_the_names_in_val():
    """With 10 names but 4 in val, 'always alex' scores 0.25 balanced accuracy, not 1/10: a
    model at 0.2 does not beat chance. Logs from before the key fall back to 1/K."""
    from raysys.report.summary import balanced_chance, criteria_rows

    best = {"val/top1": 0.3, "val/balanced_acc": 0.2, "val/rel_pred_cv": 0.5, "chance/uniform": 0.1,
            "chance/majority": 0.4, "chance/prior_match": 0.2,
            "chance/balanced_constant": 0.25}
    row = next(r for r in criteria_rows(10, best, False)
               if r[0] == "balanced accuracy beats chance")
    assert row[2] == "a constant guess, 1/(names in val) = 0.2500" and row[3] is False
    assert balanced_chance({"chance/uniform": 0.1}) == 0.1


def test_the_posthoc_table_warns_when_training_already_adjusted_the_logits():
    from raysys.report.summary import posthoc_note

    assert "corrects twice" in posthoc_note("none", logit_adjust_tau=1.0)
    assert "corrects twice" in posthoc_note("sqrt")
    assert "logit adjustment (tau = 0.5)" in posthoc_note("none", 0.5)
    assert "corrects twice" not in posthoc_note("none")  # unweighted, unadjusted: fair
