"""Sweeps on a local Ray: ASHA stops trials and records the bad one, the report is complete,
a grid runs each value once, the user's flags reach every trial, and a SIGKILLed sweep resumes
without rerunning finished trials, continuing the interrupted one from its own checkpoint."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from raysys.cli import main
from raysys.config import load_config
from raysys.sweep.experiments import Experiment, grid
from raysys.sweep.runner import run_sweep

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_asha_sweep_stops_trials_and_records_the_bad_one(ray_local, demo_manifest, tmp_path):
    space, points = grid(optim__lr=[2e-3, 3e-5, 1e4])
    exp = Experiment("lr_probe", "test", space, points)
    base = load_config("micro", sets=[f"data.manifest={demo_manifest}", "optim.epochs=3",
                                      "optim.warmup_epochs=0", "sweep.grace_period=1",
                                      "sweep.reduction_factor=2",
                                      "run.metric=val/balanced_acc"])
    report = Path(run_sweep(exp, base, str(tmp_path / "lr_probe")))
    trials = pd.read_csv(tmp_path / "lr_probe" / "trials.csv")
    assert len(trials) == 3
    assert sorted(trials["param:optim.lr"]) == sorted([2e-3, 3e-5, 1e4])
    assert (trials["status"] == "stopped early").sum() >= 1, trials[["status", "epochs"]]
    # A huge lr ends as diverged: a non-finite loss stops the trial cleanly and says so.
    bad = trials[trials["param:optim.lr"] == 1e4].iloc[0]
    assert bad["status"] == "diverged" and bad["epochs"] < 3
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
    assert (tmp_path / "lr_probe" / "curves.png").stat().st_size
    for t in trials["trial_id"]:
        assert f"(runs/{t}/summary.md)" in summary
        assert (tmp_path / "lr_probe" / "runs" / t / "summary.md").exists()


def _state_says_terminated(out: Path) -> bool:
    return any("TERMINATED" in f.read_text() for f in out.glob("experiment_state-*.json"))


def _checkpointed(out: Path, trial: str) -> bool:
    """Train has registered at least one checkpoint of this trial."""
    snap = out / "runs" / trial / "checkpoints" / "checkpoint_manager_snapshot.json"
    return snap.exists() and "checkpoint_" in snap.read_text()


def _logs(out: Path) -> dict[str, list]:
    logs = {}
    for d in (out / "runs").iterdir() if (out / "runs").exists() else []:
        try:
            logs[d.name] = json.loads((d / "training_log.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            pass
    return logs


def test_sweep_resumes_after_sigkill_mid_trial(ray_local, demo_manifest, tmp_path,
                                               reliability_log):
    out = tmp_path / "ls"
    args = ["--manifest", str(demo_manifest), "--preset", "micro", "--epochs", "3",
            "--grace-period", "3", "--out", str(out), "--set", "run.workers=2",
            "--set", "run.cpus_per_worker=0.5", "--set", "data.batch_size=64"]
    env = dict(os.environ, RAY_ADDRESS=ray_local.get_runtime_context().gcs_address)
    proc = subprocess.Popen([sys.executable, str(ROOT / "sweeps" / "label_smoothing.py"), *args],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 400
    try:
        # One trial finished (and Tune saved that), and another is between epochs 1 and 3 with
        # a checkpoint registered.
        while not (_state_says_terminated(out) and any(
                1 <= log[-1]["epoch"] < 3 and _checkpointed(out, t)
                for t, log in _logs(out).items())):
            assert proc.poll() is None, "sweep ended before it could be killed"
            assert time.time() < deadline, "no trial got that far in time"
            time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    before = _logs(out)
    finished = {t: log for t, log in before.items() if log[-1]["epoch"] == 3}
    midway = {t: log for t, log in before.items() if log[-1]["epoch"] < 3}
    assert finished and midway and not (out / "trials.csv").exists()
    mtimes = {t: (out / "runs" / t / "training_log.json").stat().st_mtime for t in finished}

    assert main(["sweep", "label_smoothing", *args, "--resume"]) == 0
    trials = pd.read_csv(out / "trials.csv")
    assert sorted(trials["param:loss.label_smoothing"]) == [0.0, 0.1, 0.2]  # each once
    assert (trials["status"] == "finished").all()
    after = _logs(out)
    assert len(after) == 3
    for t, mtime in mtimes.items():  # finished trials were not run again
        assert (out / "runs" / t / "training_log.json").stat().st_mtime == mtime
    for t, log in midway.items():  # resumed from its own checkpoint, not from epoch 1
        assert [h["epoch"] for h in after[t]] == [1, 2, 3]
        assert after[t][0] == log[0]  # epoch 1 came from the checkpoint, not trained again
    reliability_log.append({
        "fault": "sweep driver SIGKILLed mid-trial, then --resume", "tries": 1,
        "outcome": f"{len(finished)} finished trial(s) not rerun; {len(midway)} interrupted "
                   "trial(s) continued from their own checkpoint; each grid point once",
        "lost": "the interrupted epoch's progress only"})
    # The user's --set and --epochs reached every trial, over the experiment's defaults.
    for t in after:
        cfg = json.loads((out / "runs" / t / "config.json").read_text())
        assert cfg["run"]["workers"] == 2 and cfg["optim"]["epochs"] == 3
