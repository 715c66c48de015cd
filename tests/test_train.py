"""Training on a local Ray: learning above chance with every output, exact resume with one
worker, per-rank randomness after a resume with two, every val row scored once, divergence."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from raysys.cli import main as cli
from raysys.driver import fit
from raysys.manifest import read_manifest
from tests.conftest import micro

OUTPUTS = ("config.json", "best_model.pth", "predictions.npy", "true_labels.npy", "val_rows.npy",
           "names.json", "results.csv", "training_log.json", "embeddings.npy", "summary.md")
EXACT = ("train/loss", "val/top1", "val/balanced_acc", "val/rel_pred_cv", "train/lr")

pytestmark = pytest.mark.slow


def _log(run):
    return json.loads((run / "training_log.json").read_text())


def test_learns_with_every_output_and_resumes_exactly(ray_local, demo_manifest, tmp_path):
    """One worker, 4 epochs straight, against 2 epochs + a resume through the CLI with the same
    --out: the same numbers every epoch (seeded data path, per-epoch reseeding)."""
    run = tmp_path / "straight"
    r = fit(micro(demo_manifest, run, "optim.epochs=4"))
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
    assert resumed[:2] == first["history"]  # epochs 1-2 come from the checkpoint
    for a, b in zip(history, resumed, strict=True):
        for key in EXACT:
            assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-9), (a["epoch"], key)


def test_two_workers_score_every_val_row_once_and_draw_per_rank(ray_local, demo_manifest,
                                                                 tmp_path):
    """2 workers (gloo), val of 235 rows (odd): every row scored exactly once. After a stop and
    resume, each rank's random draws match the uninterrupted run and differ between ranks."""
    sets = ["optim.epochs=3", "run.workers=2", "data.batch_size=32", "augment.mixup=0.8",
            "model.drop_path_rate=0.1", "run.cpus_per_worker=0.5"]
    straight = fit(micro(demo_manifest, tmp_path / "a", *sets))["history"]
    labels = np.load(tmp_path / "a" / "true_labels.npy")
    df = read_manifest(str(demo_manifest))
    n_val = int((df.split == "val").sum())
    assert n_val % 2 == 1 and len(labels) == n_val
    assert np.load(tmp_path / "a" / "val_rows.npy").tolist() == sorted(
        df.loc[df.split == "val", "row"])
    assert all(h["val/images"] == n_val for h in straight)
    fit(micro(demo_manifest, tmp_path / "b", *sets, "run.stop_after=1"))
    resumed = fit(micro(demo_manifest, tmp_path / "b", *sets))["history"]
    assert [h["epoch"] for h in resumed] == [1, 2, 3]
    for a, b in zip(straight, resumed, strict=True):
        assert a["rng/fingerprint"] == b["rng/fingerprint"]
        assert len(set(a["rng/fingerprint"])) == 2  # the two ranks drew differently


def test_huge_lr_ends_as_diverged(ray_local, demo_manifest, tmp_path):
    r = fit(micro(demo_manifest, tmp_path / "run", "optim.epochs=3", "optim.lr=1e4",
                  "optim.warmup_epochs=0"))
    assert r["diverged"] is True
    assert r["history"][-1]["diverged"] is True and len(r["history"]) < 3
    assert "diverged" in (tmp_path / "run" / "summary.md").read_text()
