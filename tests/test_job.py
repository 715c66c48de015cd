"""`ray job submit`, as cluster/README.md step 3 runs it: a sweep script submitted through the
Jobs API with the project as working_dir and a W&B key in the job's env vars. The job succeeds,
its results land under --storage, and the key is in no job log line and no stored file.

One node: on simulated nodes that share this machine's /tmp/ray/session_*/runtime_resources, a
submitted job whose trials ran on added nodes lost its working directory under its driver
(os.getcwd() raised FileNotFoundError at the end). A one-node cluster tests the path the job
takes through Ray (supervisor, runtime env, driver) without that artefact of simulation."""

import os
import socket
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
FAKE_KEY = "fakejobwandbkey0123456789abcdef012345678"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def one_node_with_jobs():
    import ray
    from ray.cluster_utils import Cluster

    ray.shutdown()
    os.environ.pop("RAYSYS_TEST_RAY", None)
    port = _free_port()
    c = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 4, "object_store_memory": 400 * 2**20, "include_dashboard": True,
        "dashboard_host": "127.0.0.1", "dashboard_port": port})
    yield f"http://127.0.0.1:{port}"
    c.shutdown()


def test_submitted_sweep_succeeds_and_never_shows_the_key(one_node_with_jobs, demo_manifest,
                                                        tmp_path, reliability_log):
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(one_node_with_jobs)
    storage = tmp_path / "results"
    job = client.submit_job(
        entrypoint=f"{sys.executable} sweeps/label_smoothing.py --manifest {demo_manifest} "
                   f"--preset micro --epochs 1 --storage {storage} --set run.wandb=true",
        runtime_env={"working_dir": str(ROOT),
                     "env_vars": {"WANDB_API_KEY": FAKE_KEY, "WANDB_MODE": "offline"}})
    deadline = time.time() + 600
    while (status := client.get_job_status(job)) not in JobStatus.__members__.values() or \
            not status.is_terminal():
        assert time.time() < deadline, "the job did not end in time"
        time.sleep(2)
    logs = client.get_job_logs(job)
    assert status == JobStatus.SUCCEEDED, logs[-3000:]
    sweep = storage / "sweeps" / "label_smoothing"
    trials = pd.read_csv(sweep / "trials.csv")
    assert len(trials) == 3 and (sweep / "summary.md").exists()
    for t in trials["trial_id"]:
        assert (sweep / "runs" / t / "summary.md").exists()
    assert "sweep report:" in logs and "batch 1 worker(s) x 64 = 64 global" in logs
    assert list(sweep.glob("wandb/offline-run-*")), "W&B offline runs belong in the sweep folder"
    assert FAKE_KEY not in logs
    files = [p for p in storage.rglob("*") if p.is_file()]
    leaks = [p for p in files if FAKE_KEY.encode() in p.read_bytes()]
    assert not leaks, leaks
    reliability_log.append({
        "fault": "W&B key in a submitted job's runtime env (ray job submit)", "tries": 1,
        "outcome": f"job SUCCEEDED; the key in none of {len(files)} stored files nor the job "
                   "log", "lost": "-"})
