"""A sweep on a local Ray: ASHA stops trials and records the bad one, and the report is
complete. (A killed sweep's resume is in test_job.py, through `ray job submit`.)"""

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from raysys.config import load_config
from raysys.sweep.experiments import Experiment, grid
from raysys.sweep.runner import run_sweep
from tests.conftest import RAY_DATA_ACTORS, ray_leftovers

pytestmark = pytest.mark.slow


def test_asha_sweep_stops_trials_and_records_the_bad_one(ray_local, demo_manifest, tmp_path):
    """One trial at a time, in grid order, so ASHA's rungs are deterministic: lr 3e-5 reaches
    epoch 1's rung after 2e-3 has set it, and is stopped there (side by side, it could reach
    the rung first, with nothing to compare against, and go on). Three trials, finished,
    stopped and diverged, leave nothing behind in Ray: it holds what it held before the sweep,
    and Ray Data's per-cluster actors, once the first run of this Ray has made them."""
    space, points = grid(optim__lr=[2e-3, 3e-5, 1e4])
    exp = Experiment("lr_probe", "test", space, points)
    before = ray_leftovers()
    base = load_config("micro", sets=[f"data.manifest={demo_manifest}", "optim.epochs=2",
                                      "optim.warmup_epochs=0", "sweep.grace_period=1",
                                      "sweep.reduction_factor=2", "sweep.max_concurrent=1",
                                      "run.metric=val/balanced_acc", "run.figures=false"])
    report = Path(run_sweep(exp, base, str(tmp_path / "lr_probe")))
    trials = pd.read_csv(tmp_path / "lr_probe" / "trials.csv")
    assert len(trials) == 3
    (actors, groups), (actors_before, groups_before) = ray_leftovers(), before
    assert groups == groups_before, groups
    assert {k: v for k, v in actors.items() if k not in RAY_DATA_ACTORS} == {
        k: v for k, v in actors_before.items() if k not in RAY_DATA_ACTORS}, actors
    assert sorted(trials["param:optim.lr"]) == sorted([2e-3, 3e-5, 1e4])
    assert (trials["status"] == "stopped early").sum() >= 1, trials[["status", "epochs"]]
    # A huge lr ends as diverged: a non-finite loss stops the trial cleanly and says so.
    bad = trials[trials["param:optim.lr"] == 1e4].iloc[0]
    assert bad["status"] == "diverged" and bad["epochs"] < 2
    bad_run = tmp_path / "lr_probe" / "runs" / bad["trial_id"]
    assert json.loads((bad_run / "training_log.json").read_text())[-1]["diverged"] is True
    assert "**diverged**" in (bad_run / "summary.md").read_text()
    # run.metric chooses the best model, the best epoch, ASHA and the winner alike.
    for t in trials.itertuples():
        run = tmp_path / "lr_probe" / "runs" / t.trial_id
        log = json.loads((run / "training_log.json").read_text())
        finite = [h for h in log if not h["diverged"]]
        if finite:
            # a tie goes to the later epoch, as Ray Train ranks ties
            best = max(reversed(finite), key=lambda h: h["val/balanced_acc"])["epoch"]
            assert t.best_epoch == best
            assert torch.load(run / "best_model.pth", weights_only=True)["epoch"] == best
    winner = trials.loc[trials["val/balanced_acc"].idxmax(), "trial_id"]
    summary = report.read_text()
    assert f"Trial `{winner}`: val/balanced_acc" in summary
    assert all(t in summary for t in trials["trial_id"])
    assert "1 of 3 trials diverged" in summary and "n/a: no trial with 30 names" in summary
    # issue 27: the winner's claims choose trial and epoch together inside (selection.py)
    assert "## Sweep level: trial and epoch chosen together" in summary
    level = json.loads((tmp_path / "lr_probe" / "inference.json").read_text())
    (k, got), = level.items()
    assert got["trials"] >= 2 and 0 <= got["signal"]["p"] <= 1 and "balanced_acc" in got
    # One drawn curve per trial that ran two epochs (a legend swatch alone is ~60 pixels).
    drawn = curve_pixels((tmp_path / "lr_probe" / "curves.png").read_bytes(), len(trials))
    assert sum(n > 300 for n in drawn) >= (trials["epochs"] >= 2).sum(), drawn
    for t in trials.itertuples():
        assert f"(runs/{t.trial_id}/summary.md)" in summary
        own = (tmp_path / "lr_probe" / "runs" / t.trial_id / "summary.md").read_text()
        assert (t.status == "diverged"
                or f"best epoch by `val/balanced_acc`: **{int(t.best_epoch)}**" in own), own[:400]


def curve_pixels(png: bytes, n: int) -> list[int]:
    """Pixels of each of matplotlib's first n cycle colours in a figure."""
    from matplotlib import colors

    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).reshape(-1, 3).astype(int)
    return [int((np.abs(rgb - np.round(np.array(colors.to_rgb(f"C{i}")) * 255)).max(1) <= 8)
                .sum()) for i in range(n)]
