"""The report a scientist reads: every section and figure of `raysys report`, attention
rollout on a hand-built case, ECE on a hand-computed example, the analyses on known inputs."""

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from raysys import analysis
from raysys.model import attention_rollout
from raysys.report import best_entry, render_summary

SECTIONS = ("## Success criteria", "## Against chance and the floors", "## Identity leakage",
            "## Accuracy by name frequency", "Calibration: ECE",
            "## Skew control: post-hoc logit adjustment", "## Top-5 names by F1",
            "## Bottom-5 names by F1", "## Curves", "## Figures")
FIGURES = ("curves.png", "f1_vs_train_images.png", "prediction_histogram.png",
           "confusion_top20.png", "reliability.png", "accuracy_by_frequency.png",
           "skew_control.png", "embeddings_pca.png", "attention_maps/contact_sheet.png")


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


def _entry(epoch=1, k=12, **over):
    base = {"epoch": epoch, "train/loss": 2.0, "train/acc": 0.3, "val/loss": 2.1,
            "val/top1": 0.3, "val/top5": 0.7, "val/balanced_acc": 0.25, "val/macro_f1": 0.2,
            "val/pred_cv": 1.0, "val/true_cv": 0.5, "val/rel_pred_cv": 0.6,
            "val/names_present": k, "val/images": 100, "chance/uniform": 1 / k,
            "chance/majority": 0.2, "chance/prior_match": 0.1, "train/lr": 1e-3,
            "train/img_per_s": 100.0, "data/wait_frac": 0.1, "time/epoch_s": 1.0,
            "gpu/peak_mem_gb": 0.0, "data/bad_images": 0, "diverged": False,
            "data/num_classes": k}
    return base | over


@pytest.mark.parametrize("k, applies", [(30, "top-1 > 15% on 30 names"),
                                        (500, "top-1 > 5% on 500 names")])
def test_criteria_apply_only_where_defined(k, applies):
    text = render_summary([_entry(k=k)], None, {"metric": "val/top1", "device": "cpu"})
    for line in text.splitlines():
        if line.startswith("| top-1 > "):
            assert ("n/a" in line) == (applies not in line), line
    assert "GPU memory" not in text
    cuda = render_summary([_entry(k=k, **{"gpu/peak_mem_gb": 3.5})], None,
                          {"metric": "val/top1", "device": "cuda"})
    assert "peak GPU memory 3.50 GB" in cuda


def test_names_without_val_images_are_listed_apart():
    table = pd.DataFrame({"name": ["a", "b", "c"], "precision": [1.0, 0.5, 0.0],
                          "recall": [1.0, 0.5, 0.0], "f1": [1.0, 0.5, 0.0],
                          "support": [5, 5, 0], "train_count": [20, 10, 5],
                          "predicted": [5, 5, 0]})
    text = render_summary([_entry(k=3)], table, {"metric": "val/top1"})
    bottom = text.split("## Bottom-5 names by F1")[1].split("##")[0]
    assert "| c |" not in bottom and "Names with no val images (1, not ranked): c" in text
    assert best_entry([_entry(1, **{"val/top1": 0.2}), _entry(2)], "val/top1")["epoch"] == 2


def test_a_tie_for_best_goes_to_the_later_epoch():
    """Ray Train's checkpoint manager ranks a tie as the later checkpoint: the summary (and
    rank 0's best_model.pth) must name the same epoch as fit()'s Result."""
    history = [_entry(e, **{"val/top1": v}) for e, v in ((1, 0.1), (2, 0.3), (3, 0.3), (4, 0.2))]
    assert best_entry(history, "val/top1")["epoch"] == 3


@pytest.mark.slow
def test_raysys_report_rebuilds_every_section_and_figure(straight_run, tmp_path):
    """`raysys report RUN_DIR` on a micro demo run: every section, every PNG a valid image."""
    from raysys.cli import main

    run, _ = straight_run
    (run / "summary.md").unlink()
    assert main(["report", str(run)]) == 0
    summary = (run / "summary.md").read_text()
    for section in SECTIONS:
        assert section in summary, section
    for name in FIGURES:
        assert f"]({name})" in summary
        with Image.open(run / name) as im:
            im.verify()
    overlays = [p for p in (run / "attention_maps").glob("*.png")
                if p.name != "contact_sheet.png"]
    assert len(overlays) >= 2
    assert "pixel-linear floor: logistic regression on 32x32 grayscale" in summary
