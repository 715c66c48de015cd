"""`ray job submit`, as cluster/README.md step 3 runs it: a sweep script submitted through the
Jobs API with the project as working_dir and a W&B key in the job's env vars; its driver
SIGKILLed mid-trial, and the job submitted again with --resume. The job succeeds, its results
land under --storage, and the key is in no job log line and no stored file.

One node: on simulated nodes that share this machine's /tmp/ray/session_*/runtime_resources, a
submitted job whose trials ran on added nodes lost its working directory under its driver
(os.getcwd() raised FileNotFoundError at the end). A one-node cluster tests the path the job
takes through Ray (supervisor, runtime env, driver) without that artefact of simulation."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from raysys.train.connect import free_port

pytestmark = [pytest.mark.slow, pytest.mark.own_ray, pytest.mark.cluster]
ROOT = Path(__file__).resolve().parents[1]
FAKE_KEY = "fakejobwandbkey0123456789abcdef012345678"


@pytest.fixture
def one_node_with_jobs():
    import ray
    from ray.cluster_utils import Cluster

    ray.shutdown()
    os.environ.pop("RAYSYS_TEST_RAY", None)
    port = free_port()
    c = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 4, "object_store_memory": 400 * 2**20, "include_dashboard": True,
        "dashboard_host": "127.0.0.1", "dashboard_port": port,
        "dashboard_agent_listen_port": free_port()})  # not the default: another Ray's may hold it
    yield f"http://127.0.0.1:{port}"
    c.shutdown()


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


def _submit(client, **job) -> str:
    """submit_job, once the head's job agent is up: a new head's dashboard may answer before
    its agent does ("No available agent to submit job, please try again later")."""
    deadline = time.time() + 60
    while True:
        try:
            return client.submit_job(**job)
        except RuntimeError as e:
            if "No available agent" not in str(e) or time.time() > deadline:
                raise
            time.sleep(1)


def _wait(client, job: str, deadline: float):
    from ray.job_submission import JobStatus

    while (status := client.get_job_status(job)) not in JobStatus.__members__.values() or \
            not status.is_terminal():
        assert time.time() < deadline, "the job did not end in time"
        time.sleep(1)
    return status


def test_submitted_sweep_survives_its_driver_killed_and_never_shows_the_key(
        one_node_with_jobs, demo_manifest, tmp_path, reliability_log):
    """README step 3 as a user runs it, with the worst a job's driver can meet: SIGKILLed
    once one trial has finished and another is between epochs. The same command with
    --resume, submitted again, runs no finished trial twice, continues the interrupted one from
    its own checkpoint, and succeeds; neither job shows the key, nor does any stored file."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(one_node_with_jobs)
    storage = tmp_path / "results"
    sweep = storage / "sweeps" / "label_smoothing"
    command = (f"{sys.executable} sweeps/label_smoothing.py --manifest {demo_manifest} "
               f"--preset micro --epochs 2 --grace-period 2 --storage {storage} "
               "--set run.wandb=true --set run.figures=false")
    runtime_env = {"working_dir": str(ROOT),
                   "env_vars": {"WANDB_API_KEY": FAKE_KEY, "WANDB_MODE": "offline"}}
    first = _submit(client, entrypoint=command, runtime_env=runtime_env)
    deadline = time.time() + 500
    while not (_state_says_terminated(sweep) and any(
            log[-1]["epoch"] == 1 and _checkpointed(sweep, t) for t, log in _logs(sweep).items())):
        assert not client.get_job_status(first).is_terminal(), client.get_job_logs(first)[-3000:]
        assert time.time() < deadline, "no trial got that far in time"
        time.sleep(0.5)
    # The job's driver (the entrypoint's processes), SIGKILLed as an OOM kill or a lost head
    # would: its trial actors go with it.
    subprocess.run(["pkill", "-KILL", "-f", f"label_smoothing.py --manifest {demo_manifest}"],
                   check=True)
    assert _wait(client, first, time.time() + 120) == JobStatus.FAILED
    before = _logs(sweep)
    finished = {t: log for t, log in before.items() if log[-1]["epoch"] == 2}
    midway = {t: log for t, log in before.items() if log[-1]["epoch"] < 2}
    assert finished and midway and not (sweep / "trials.csv").exists()
    mtimes = {t: (sweep / "runs" / t / "training_log.json").stat().st_mtime for t in finished}

    second = _submit(client, entrypoint=f"{command} --resume", runtime_env=runtime_env)
    status = _wait(client, second, time.time() + 600)
    logs = client.get_job_logs(first) + client.get_job_logs(second)
    assert status == JobStatus.SUCCEEDED, logs[-3000:]
    trials = pd.read_csv(sweep / "trials.csv")
    assert sorted(trials["param:loss.label_smoothing"]) == [0.0, 0.1, 0.2]  # each once
    assert (trials["status"] == "finished").all() and (sweep / "summary.md").exists()
    after = _logs(sweep)
    assert len(after) == 3
    for t, mtime in mtimes.items():  # finished trials were not run again
        assert (sweep / "runs" / t / "training_log.json").stat().st_mtime == mtime
    for t, log in midway.items():  # resumed from its own checkpoint, not from epoch 1
        assert [h["epoch"] for h in after[t]] == [1, 2]
        assert after[t][0] == log[0]  # epoch 1 came from the checkpoint, not trained again
    for t in after:  # the user's --set and --epochs reached every trial
        assert (sweep / "runs" / t / "summary.md").exists()
        cfg = json.loads((sweep / "runs" / t / "config.json").read_text())
        assert cfg["optim"]["epochs"] == 2 and cfg["run"]["figures"] is False
    assert "sweep report:" in logs and "batch 1 worker(s) x 64 = 64 global" in logs
    assert list(sweep.glob("wandb/offline-run-*")), "W&B offline runs belong in the sweep folder"
    assert FAKE_KEY not in logs
    files = [p for p in storage.rglob("*") if p.is_file()]
    leaks = [p for p in files if FAKE_KEY.encode() in p.read_bytes()]
    assert not leaks, leaks
    reliability_log.append({
        "id": "job-key",
        "fault": "W&B key in a submitted job's runtime env (ray job submit)", "tries": 2,
        "outcome": f"both jobs ran; the key in none of {len(files)} stored files nor the job "
                   "logs", "lost": "-"})
    reliability_log.append({
        "id": "job-driver-sigkill", "epochs_before": {t: len(v) for t, v in before.items()},
        "epochs_after": {t: len(v) for t, v in after.items()},
        "fault": "a submitted sweep's driver SIGKILLed mid-trial, then resubmitted with --resume",
        "tries": 1,
        "outcome": f"{len(finished)} finished trial(s) not rerun; {len(midway)} interrupted "
                   "trial(s) continued from their own checkpoint; each grid point once",
        "lost": "the interrupted epoch's progress only"})
