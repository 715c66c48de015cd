"""Sweeps on a local Ray: ASHA stops trials, a bad trial is recorded, the report is complete,
a grid runs each value once, and a SIGKILLed sweep resumes without rerunning finished trials."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from raysys.config import load_config
from raysys.tune import SweepSpec, grid, main, run_sweep

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_asha_sweep_stops_trials_and_records_the_bad_one(ray_local, demo_manifest, tmp_path):
    space, points = grid(optim__lr=[2e-3, 5e-4, 3e-5, 1e4])
    spec = SweepSpec("lr_probe", "test", space, points)
    base = load_config("micro", sets=[f"data.manifest={demo_manifest}", "optim.epochs=4",
                                      "optim.warmup_epochs=0"])
    report = run_sweep(spec, base, tmp_path / "lr_probe", grace_period=1, reduction_factor=2)
    trials = pd.read_csv(tmp_path / "lr_probe" / "trials.csv")
    assert len(trials) == 4
    assert sorted(trials["param:optim.lr"]) == sorted([2e-3, 5e-4, 3e-5, 1e4])
    assert (trials["status"] == "stopped early (ASHA)").sum() >= 1, trials[["status", "epochs"]]
    bad = trials[trials["param:optim.lr"] == 1e4].iloc[0]
    assert bad["status"] in ("diverged", "stopped early (ASHA)")
    assert bad["epochs"] < 4
    summary = report.read_text()
    assert all(t in summary for t in trials["trial_id"])
    assert "no divergence" in summary and (tmp_path / "lr_probe" / "curves.png").stat().st_size
    for t in trials["trial_id"]:
        assert (tmp_path / "lr_probe" / "runs" / t / "summary.md").exists()


def _state_says_terminated(out: Path) -> bool:
    return any("TERMINATED" in f.read_text() for f in out.glob("experiment_state-*.json"))


@pytest.mark.slow
def test_label_smoothing_sweep_resumes_after_sigkill(ray_local, demo_manifest, tmp_path):
    out = tmp_path / "ls"
    args = ["--manifest", str(demo_manifest), "--preset", "micro", "--epochs", "2",
            "--grace-period", "2", "--out", str(out)]
    env = dict(os.environ, RAY_ADDRESS=ray_local.get_runtime_context().gcs_address)
    proc = subprocess.Popen([sys.executable, str(ROOT / "sweeps" / "label_smoothing.py"), *args],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 400
    try:
        while not _state_says_terminated(out):  # one trial finished, and Tune saved that
            assert proc.poll() is None, "sweep ended before it could be killed"
            assert time.time() < deadline, "no trial finished in time"
            time.sleep(1)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finished = {d.name: d.joinpath("training_log.json").stat().st_mtime
                for d in (out / "runs").iterdir()
                if d.joinpath("training_log.json").exists()
                and json.loads(d.joinpath("training_log.json").read_text())[-1]["epoch"] == 2}
    assert finished
    assert not (out / "trials.csv").exists()

    main(lambda demo: SweepSpec("label_smoothing", "2.3", *grid(loss__label_smoothing=[
        0.0, 0.1, 0.2])), "resume", [*args, "--resume"])
    trials = pd.read_csv(out / "trials.csv")
    assert sorted(trials["param:loss.label_smoothing"]) == [0.0, 0.1, 0.2]  # each exactly once
    assert (trials["status"] == "completed").all()
    assert len(list((out / "runs").iterdir())) == 3
    for name, mtime in finished.items():  # finished trials were not run again
        assert (out / "runs" / name / "training_log.json").stat().st_mtime == mtime
