"""Under Ray's real autoscaler (v2, as `ray up` starts it), with Ray's fake multi-node provider
standing in for AWS: node types shaped like cluster/gpu.yaml's (a 0-CPU head labelled
raysys-role=head, GPU nodes played by 2-CPU nodes, 0 to 2 of them), a sweep that scales from
zero worker nodes, and the nodes idling out after it.

Ray's own `AutoscalingCluster` cannot be used: the 2.60 wheel lacks its example config, and it
stops Ray with `ray stop --force`, which ends every Ray on the machine. Here the head is a
`ray start --head --block` of this test's, and every process the fake nodes started is ended
by its own PID. (The node set-up the fake provider skips, docker and setup commands, is
checked through autoscaler v2's own code in test_cluster_yaml.py.)"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from raysys.config import load_config
from raysys.sweep.experiments import Experiment, grid
from raysys.sweep.runner import run_sweep
from raysys.train.connect import free_port

pytestmark = [pytest.mark.slow, pytest.mark.own_ray, pytest.mark.cluster]
CLUSTER = Path(__file__).resolve().parents[1] / "cluster" / "gpu.yaml"
IDLE_TIMEOUT_S = 15
WORKER_CPUS = 2  # a GPU node's stand-in: one trial (1 + 0.5 + 0.1 CPU) per node


def fake_config(gcs_address: str) -> dict:
    """gpu.yaml's node types and labels on the fake provider: CPUs for GPUs, seconds for
    minutes."""
    from ray.autoscaler._private.fake_multi_node.node_provider import FAKE_HEAD_NODE_TYPE

    real = yaml.safe_load(CLUSTER.read_text())
    types = real["available_node_types"]
    head, gpu = types[real["head_node_type"]], types["gpu_worker"]
    return {
        "cluster_name": "raysys-fake", "max_workers": 2, "upscaling_speed": 1.0,
        "idle_timeout_minutes": IDLE_TIMEOUT_S / 60,
        "provider": {"type": "external", "gcs_address": gcs_address,
                     "module": "ray.autoscaler._private.fake_multi_node.node_provider."
                               "FakeMultiNodeProvider"},
        "auth": {"ssh_user": "ray"},
        "available_node_types": {
            FAKE_HEAD_NODE_TYPE: {"resources": head["resources"], "labels": head["labels"],
                                  "node_config": {}, "max_workers": 0},
            "gpu_worker": {"resources": {"CPU": WORKER_CPUS}, "labels": gpu["labels"],
                           "node_config": {}, "min_workers": 0, "max_workers": 2}},
        "head_node_type": FAKE_HEAD_NODE_TYPE,
        **{k: [] for k in ("initialization_commands", "setup_commands", "head_setup_commands",
                           "worker_setup_commands", "head_start_ray_commands",
                           "worker_start_ray_commands", "cluster_synced_files",
                           "rsync_exclude", "rsync_filter")},
        "file_mounts": {}, "file_mounts_sync_continuously": False}


def end_processes_of(tmp: Path) -> None:
    """Every process whose command line or environment names this cluster's temp folder (the
    head's, and the fake nodes' that the autoscaler started), SIGKILLed by PID. The
    environment too: Ray renames some processes (`ray::DashboardAgent`), and one left alive
    holds the agent's default port, so the next cluster's head has no job agent."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="ignore")
            cmd += Path(f"/proc/{pid}/environ").read_bytes().decode(errors="ignore")
        except OSError:
            continue
        if str(tmp) in cmd and int(pid) != os.getpid():
            try:
                os.kill(int(pid), 9)
            except OSError:
                pass


@pytest.fixture
def autoscaling_cluster(monkeypatch):
    """A head with autoscaler v2 and no worker node; this process joins it as `raysys` does
    (RAY_ADDRESS, with the machine's token)."""
    import ray
    from ray.autoscaler._private.fake_multi_node.node_provider import (
        FAKE_HEAD_NODE_ID,
        FAKE_HEAD_NODE_TYPE,
    )

    from raysys.train.connect import init_ray

    ray.shutdown()
    monkeypatch.delenv("RAYSYS_TEST_RAY", raising=False)
    tmp = Path(tempfile.mkdtemp(prefix="rf", dir="/tmp"))  # short: Ray's socket paths
    port = free_port()
    address = f"{ray.util.get_node_ip_address()}:{port}"
    (tmp / "cluster.yaml").write_text(yaml.safe_dump(fake_config(address)))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {
        "RAY_TMPDIR": str(tmp), "RAY_FAKE_CLUSTER": "1", "RAY_enable_autoscaler_v2": "1",
        "RAY_CLOUD_INSTANCE_ID": FAKE_HEAD_NODE_ID, "RAY_NODE_TYPE_NAME": FAKE_HEAD_NODE_TYPE}
    head = subprocess.Popen(
        [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block",
         f"--port={port}", "--num-cpus=0", "--labels=raysys-role=head",
         f"--autoscaling-config={tmp / 'cluster.yaml'}", "--dashboard-host=127.0.0.1"],
        stdout=(tmp / "head.log").open("w"), stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.time() + 120
        while not (tmp / "ray" / "ray_current_cluster").exists():
            assert head.poll() is None and time.time() < deadline, \
                (tmp / "head.log").read_text()[-3000:]
            time.sleep(0.5)
        monkeypatch.setenv("RAY_ADDRESS", address)
        init_ray(1)
        yield ray
    finally:
        ray.shutdown()
        head.terminate()
        try:  # `ray start --block` lets its children end first: 30 s here, mostly waiting
            head.wait(timeout=5)
        except subprocess.TimeoutExpired:
            head.kill()
        end_processes_of(tmp)
        shutil.rmtree(tmp, ignore_errors=True)


def test_a_sweep_scales_from_zero_decodes_beside_its_workers_then_the_nodes_idle_out(
        autoscaling_cluster, demo_manifest, tmp_path, reliability_log):
    ray = autoscaling_cluster
    from ray.autoscaler.v2.sdk import get_cluster_status

    from raysys import storage

    head = ray.get_runtime_context().get_node_id()
    assert [n["NodeID"] for n in ray.nodes() if n["Alive"]] == [head]  # no worker node yet
    space, points = grid(optim__lr=[2e-3, 1e-3])
    base = load_config("micro", sets=[
        f"data.manifest={demo_manifest}", "optim.epochs=2", "sweep.max_nodes=2",
        "sweep.max_concurrent=2", "sweep.grace_period=2", "run.figures=false"])
    start = time.time()
    run_sweep(Experiment("two", "two trials", space, points), base, str(tmp_path / "sweep"))
    swept = time.time() - start
    logs = [storage.read_json(str(p)) for p in (tmp_path / "sweep" / "runs").glob(
        "*/training_log.json")]
    assert len(logs) == 2 and all([h["epoch"] for h in log] == [1, 2] for log in logs)
    workers = {n for log in logs for n in log[-1]["workers/nodes"]}
    assert head not in workers and len(workers) == 2  # side by side, on the nodes it started
    for log in logs:  # decoded on the node whose Train worker consumed the images
        for h in log:
            assert set(h["data/train_decoded_by_node"]) == set(h["workers/nodes"]), h
    # Ray Data's per-cluster actors live on the head, whatever node ran its first execution.
    data_actors = [a for a in ray._private.state.actors().values() if a["State"] != "DEAD"]
    assert data_actors and {a["Address"]["NodeID"] for a in data_actors} == {head}
    # The autoscaler ends the worker nodes once idle: no trial's leftovers keep one busy.
    deadline = time.time() + IDLE_TIMEOUT_S + 60
    while len([n for n in ray.nodes() if n["Alive"]]) > 1:
        status = get_cluster_status(ray.get_runtime_context().gcs_address)
        assert time.time() < deadline, [(n.node_id[-5:], n.node_activity)
                                         for n in status.idle_nodes + status.active_nodes]
        time.sleep(2)
    idle_out = time.time() - start - swept
    reliability_log.append({
        "id": "autoscaler", "fault": "a sweep on Ray's autoscaler v2 (fake provider, "
        "gpu.yaml's node types), from zero worker nodes", "tries": 1,
        "outcome": f"2 nodes started, 2 trials side by side in {swept:.0f} s, decoded on "
                   f"their own nodes; both nodes ended {idle_out:.0f} s after the sweep "
                   f"(idle timeout {IDLE_TIMEOUT_S} s)", "lost": "-"})
