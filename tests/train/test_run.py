"""Training on a local Ray: learning above chance with every output, and an exact resume with
one worker (the same config twice gives the same numbers). Two workers, a worker killed
mid-epoch and bad input are in test_reliability.py; divergence in test_sweep.py."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from raysys.cli import main as cli
from raysys.data.manifest import read_manifest
from raysys.train.run import fit
from tests.conftest import micro

OUTPUTS = ("config.json", "best_model.pth", "predictions.npy", "true_labels.npy", "val_rows.npy",
           "names.json", "results.csv", "training_log.json", "embeddings.npy", "summary.md",
           "logits.npy", "val_predictions_by_epoch.npz", "inference.json", "demographics.csv")
EXACT = ("train/loss", "val/top1", "val/balanced_acc", "val/rel_pred_cv", "train/lr")

pytestmark = pytest.mark.slow


def _log(run):
    return json.loads((run / "training_log.json").read_text())


def test_learns_with_every_output_and_resumes_exactly(straight_run, demo_manifest, tmp_path):
    """One worker, 4 epochs straight, against 2 epochs + a resume through the CLI with the same
    --out: the same numbers every epoch (seeded data path, per-epoch reseeding)."""
    run, r = straight_run
    history = r["history"]
    k = len(json.loads((run / "names.json").read_text()))
    best_bal = max(h["val/balanced_acc"] for h in history)
    assert best_bal >= 2.0 / k, f"balanced accuracy {best_bal:.3f} < 2x chance {2 / k:.3f}"
    assert history[-1]["train/loss"] < history[0]["train/loss"]
    for name in OUTPUTS:
        assert (run / name).is_file(), name
    blob = torch.load(run / "best_model.pth", weights_only=True)
    assert blob["names"] == json.loads((run / "names.json").read_text())
    assert blob["epoch"] == r["best_epoch"]
    preds, labels = np.load(run / "predictions.npy"), np.load(run / "true_labels.npy")
    assert (preds == labels).mean() == pytest.approx(r["best_val_top1"])  # same argmax
    rows = np.load(run / "val_rows.npy")
    df = read_manifest(str(demo_manifest))
    assert rows.tolist() == sorted(df.loc[df.split == "val", "row"])  # each val row, once
    assert np.load(run / "embeddings.npy").shape == (len(labels), 64)
    table = pd.read_csv(run / "results.csv")
    assert list(table.columns[:6]) == ["name", "precision", "recall", "f1", "support",
                                       "train_count"] and len(table) == k
    summary = (run / "summary.md").read_text()
    assert "Success criteria" in summary and "Bottom-5 names by F1" in summary
    assert "GPU memory" not in summary  # a CPU run has none to report

    out = tmp_path / "resumed"
    first = fit(micro(demo_manifest, out, "optim.epochs=4", "run.stop_after=2"))
    assert [h["epoch"] for h in first["history"]] == [1, 2]
    assert cli(["train", "--manifest", str(demo_manifest), "--preset", "micro", "--epochs", "4",
                "--out", str(out)]) == 0
    resumed = _log(out)
    assert [h["epoch"] for h in resumed] == [1, 2, 3, 4]
    console = (out / "console.log").read_text()  # both attempts' lines, in order
    assert console.count("Ray's logs: ") == 2
    assert console.index("epoch 2/4") < console.index("resumed at epoch 3") < console.index(
        "epoch 4/4")
    assert resumed[:2] == first["history"]  # epochs 1-2 come from the checkpoint
    for a, b in zip(history, resumed, strict=True):
        for key in EXACT:
            assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-9), (a["epoch"], key)
    # Every epoch's val predictions, kept across the resume: the same as the straight run's.
    straight, again = (np.load(d / "val_predictions_by_epoch.npz") for d in (run, out))
    assert straight["epochs"].tolist() == again["epochs"].tolist() == [1, 2, 3, 4]
    np.testing.assert_array_equal(straight["preds"], again["preds"])
    best = np.flatnonzero(straight["epochs"] == r["best_epoch"])[0]
    np.testing.assert_array_equal(straight["preds"][best], preds)
    logits = np.load(run / "logits.npy")
    assert logits.dtype == np.float16 and logits.shape == (len(labels), k)
