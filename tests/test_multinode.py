"""A real multi-node Ray on this machine (`ray.cluster_utils.Cluster`): a head labelled like
the cluster YAML's, worker nodes added as a cluster would add them, one removed as a lost
node would be, and a local S3 server (moto) for s3:// storage.

Every simulated node shares this machine's IP, so placement is checked with node ids, and
sizes make it unambiguous: a Train worker takes 3 of a worker node's 4 CPUs, so two never
share a node, and the head has too few CPUs for one."""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.fs as pafs
import pytest

from raysys import storage
from raysys.config import load_config
from raysys.sweep.experiments import Experiment, grid
from raysys.sweep.runner import run_sweep
from raysys.train.connect import free_port

pytestmark = [pytest.mark.slow, pytest.mark.own_ray, pytest.mark.cluster]
ROOT = Path(__file__).resolve().parents[1]
BUCKET = "raysys-test"
FAKE_KEYS = {"AWS_ACCESS_KEY_ID": "AKIAFAKEFAKEFAKE1234", "AWS_SECRET_ACCESS_KEY":
             "fake/secret/never/in/a/file/0123456789", "AWS_DEFAULT_REGION": "us-east-1"}
WORKER_NODE = {"num_cpus": 4, "object_store_memory": 200 * 2**20,
               "labels": {"raysys-role": "gpu-worker"}}


@pytest.fixture(scope="module")
def s3():
    """A moto S3 server on localhost with one bucket; its endpoint and fake keys in the
    environment before the cluster starts, so every Ray process inherits them."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = FAKE_KEYS | {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"]).create_bucket(Bucket=BUCKET)
    yield env["AWS_ENDPOINT_URL"]
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def cluster(s3):
    """A head (2 CPUs, labelled raysys-role=head) and no worker node yet."""
    import ray
    from ray.cluster_utils import Cluster

    ray.shutdown()
    os.environ.pop("RAYSYS_TEST_RAY", None)
    # Token authentication, as `ray start --head` has by default: the nodes started here and a
    # driver in another process (the `ray attach` case) must agree on it.
    from ray._private.authentication.authentication_token_setup import (
        enable_token_auth_by_default,
        ensure_token_if_auth_enabled,
    )

    enable_token_auth_by_default()
    ensure_token_if_auth_enabled(None, create_token_if_missing=True)
    # A lost node is seen in ~3 s, not Ray's default ~15 s (3 s x 5 missed health checks): the
    # tests wait for it twice; recovery itself is what they check.
    c = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 2, "object_store_memory": 300 * 2**20, "labels": {"raysys-role": "head"},
        "_system_config": {"health_check_period_ms": 1000, "health_check_failure_threshold": 3}})
    ray.init(address=c.address, log_to_driver=False)
    yield c
    ray.shutdown()
    c.shutdown()


class Holder:
    """Holds CPUs on a node while a test needs them taken."""

    def ready(self) -> bool:
        return True


def _s3_files(folder: str, name: str) -> list[str]:
    fs, root = storage.filesystem(folder)
    return [i.path for i in fs.get_file_info(pafs.FileSelector(root, recursive=True,
                                                               allow_not_found=True))
            if i.path.endswith(name)]


def _worker_nodes(c) -> dict[str, object]:
    return {n.node_id: n for n in c.worker_nodes}


def _grow(c, n: int) -> None:
    """Worker nodes added until n are alive, so a test holds whichever tests ran before it."""
    while len(c.worker_nodes) < n:
        c.add_node(**WORKER_NODE)
    c.wait_for_nodes()


def _death(c, node_id: str) -> str:
    """How Ray recorded a node's end: 'Unexpected termination: health check failed ...' for a
    SIGKILL (a spot reclaim), 'Expected termination: received SIGTERM' for a graceful stop."""
    from ray.util.state import list_nodes

    deadline = time.time() + 120
    while True:
        node = next(n for n in list_nodes(address=c.address, detail=True)
                    if n.node_id == node_id)
        if node.state == "DEAD" or time.time() > deadline:
            return f"{node.state}: {node.state_message}"
        time.sleep(1)


def test_sweep_waits_for_nodes_then_runs_trials_at_once_into_s3(cluster, demo_manifest, capfd,
                                                               reliability_log):
    """The cluster has no worker node when the sweep starts (an autoscaler starting from zero):
    concurrency comes from the target (--max-nodes), trials wait in PENDING, then run side by
    side on two nodes, and every output lands in the bucket."""
    space, points = grid(optim__lr=[2e-3, 1e-3])
    exp = Experiment("two", "two trials", space, points)
    base = load_config("micro", sets=[
        f"data.manifest={demo_manifest}", "optim.epochs=2", "run.cpus_per_worker=3",
        "sweep.max_concurrent=2", "sweep.max_nodes=2", "sweep.grace_period=2",
        "run.figures=false"])
    sweep_dir = f"s3://{BUCKET}/exp/sweeps/two"
    out: dict = {}
    sweep = threading.Thread(target=lambda: out.update(report=run_sweep(exp, base, sweep_dir)))
    sweep.start()
    # Tune runs both trial functions (0.1 CPU each) on the head at once; what each run needs
    # (decode work for the worker nodes, Train workers of 3 CPUs) waits, pending, for nodes.
    from ray.util.state import list_actors, list_placement_groups, list_tasks

    def states() -> tuple[int, int]:
        alive = list_actors(address=cluster.address, filters=[("state", "=", "ALIVE")])
        # Tune's function trainable; Ray reports it as "ImplicitFunc" or by its qualified name
        # "wrap_function.<locals>.ImplicitFunc" depending on when it is read.
        trials = sum(a.class_name.rsplit(".", 1)[-1] == "ImplicitFunc" for a in alive)
        pending = (len(list_tasks(address=cluster.address,
                                  filters=[("state", "=", "PENDING_NODE_ASSIGNMENT")]))
                   + len(list_actors(address=cluster.address,
                                     filters=[("state", "=", "PENDING_CREATION")]))
                   + len(list_placement_groups(address=cluster.address,
                                               filters=[("state", "=", "PENDING")])))
        return trials, pending

    def actors() -> list[tuple[str, str, str]]:  # what Ray holds, for a failure's message
        return sorted((a.class_name, a.state, (a.death_cause or {}).get(
            "actor_died_error_context", {}).get("error_message", "")[:200])
            for a in list_actors(address=cluster.address, detail=True))

    try:
        deadline = time.time() + 300  # a loaded 2-core CI machine starts actors slowly
        while (seen := states())[0] < 2 or seen[1] < 1:
            assert sweep.is_alive() and time.time() < deadline, \
                f"trials alive, work pending: {seen}; actors: {actors()}"
            time.sleep(0.5)
        assert not _s3_files(sweep_dir, "training_log.json")  # no run has trained an epoch
    finally:  # the nodes come either way, so a failure here leaves no sweep hanging
        for _ in range(2):  # from the main thread (Ray installs signal handlers)
            cluster.add_node(**WORKER_NODE)
    sweep.join(timeout=600)
    assert not sweep.is_alive() and "report" in out, "the sweep did not finish"
    report = out["report"]
    fs, root = storage.filesystem(sweep_dir)
    files = {i.path[len(root) + 1:] for i in fs.get_file_info(pafs.FileSelector(root,
                                                                              recursive=True))}
    assert report == f"{sweep_dir}/summary.md" and {"summary.md", "trials.csv",
                                                    "curves.png"} <= files
    trials = [p.split("/")[1] for p in files if p.startswith("runs/") and p.count("/") == 2
              and p.endswith("training_log.json")]
    assert len(trials) == 2
    logs = {}
    for t in trials:
        for name in ("best_model.pth", "predictions.npy", "results.csv", "summary.md",
                     "config.json"):
            assert f"runs/{t}/{name}" in files
        assert any(p.startswith(f"runs/{t}/checkpoints/checkpoint_") for p in files)
        logs[t] = storage.read_json(f"{sweep_dir}/runs/{t}/training_log.json")
        assert [h["epoch"] for h in logs[t]] == [1, 2]
    a, b = logs.values()
    # Side by side: each trial's first epoch ended before the other's last one.
    assert a[0]["time/end"] < b[-1]["time/end"] and b[0]["time/end"] < a[-1]["time/end"]
    assert set(a[0]["workers/nodes"]).isdisjoint(b[0]["workers/nodes"])  # different nodes
    head = cluster.head_node.node_id
    for log in logs.values():
        decoded = log[-1]["data/train_decoded_by_node"]
        assert decoded and set(decoded) <= set(log[-1]["workers/nodes"])  # next to the worker
        assert head not in log[-1]["data/val_decoded_by_node"]
        assert head not in log[0]["workers/nodes"]
    # The fake AWS keys this cluster runs with are in no object of the bucket, nor on the
    # console.
    console = capfd.readouterr()
    bucket_files = [i.path for i in fs.get_file_info(pafs.FileSelector(BUCKET, recursive=True))
                    if i.type == pafs.FileType.File]
    for secret in (FAKE_KEYS["AWS_ACCESS_KEY_ID"], FAKE_KEYS["AWS_SECRET_ACCESS_KEY"]):
        assert secret not in console.out + console.err
        for p in bucket_files:
            with fs.open_input_stream(p) as f:
                assert secret.encode() not in f.read(), p
    reliability_log.append({
        "id": "s3-keys",
        "fault": "fake AWS keys in the environment of an s3:// sweep", "tries": len(bucket_files),
        "outcome": f"in none of the bucket's {len(bucket_files)} objects, nor on the console",
        "lost": "-"})


def test_a_folder_some_node_cannot_see_is_refused(cluster, tmp_path, monkeypatch):
    """Rank 0 may write from any node: with several nodes, a local --out that one of them
    cannot see is refused before training, saying what to pass instead. (Every simulated node
    shares this machine's disk, so one node's view is stubbed to 'not there'.)"""
    from raysys.train import cluster as driver

    cfg = load_config("micro")
    driver.check_shared(str(tmp_path), cfg)  # every node really sees it
    _grow(cluster, 1)
    nodes = [n["NodeID"] for n in driver.alive_nodes()]
    assert len(nodes) >= 2
    real = driver.node_sees
    monkeypatch.setattr(driver, "node_sees",
                        lambda node, path: False if node == nodes[-1] else real(node, path))
    with pytest.raises(ValueError, match="is not visible from 1 node.*s3://"):
        driver.check_shared(str(tmp_path), cfg)


def _read_log(out: Path) -> list:
    try:
        return json.loads((out / "training_log.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return []


def test_train_joins_fills_its_nodes_and_survives_a_node_killed_mid_epoch(
        cluster, demo_manifest, tmp_path, reliability_log):
    """The `ray attach` case: no RAY_ADDRESS, a cluster running on this machine. `raysys train`
    joins it (no second Ray), one worker per node, the workers and their decode actors filling
    their nodes (3 + 1 of 4 CPUs: a shape that hung while the stream's helper tasks wanted a
    whole CPU). Partway through epoch 2, rank 1's node is SIGKILLed, as a spot reclaim: the
    run restarts from epoch 1's checkpoint on the nodes left, says so, keeps epoch 1's log
    entry as it was, and logs every epoch once with every val image scored once."""
    from raysys.data.manifest import read_manifest

    def gcs_servers() -> int:
        return int(subprocess.run(["pgrep", "-c", "gcs_server"], capture_output=True,
                                  text=True).stdout.strip() or 0)

    _grow(cluster, 3)  # three worker nodes: two remain after the loss
    before_gcs = gcs_servers()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    out = tmp_path / "run"
    console = tmp_path / "console.txt"
    with console.open("w") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "raysys.cli", "train", "--manifest", str(demo_manifest),
             "--preset", "micro", "--epochs", "2", "--workers", "2",
             "--set", "run.cpus_per_worker=3", "--set", "data.cpus_per_actor=1",
             "--set", "data.batch_size=32", "--set", "run.max_failures=2",
             "--set", "run.figures=false", "--out", str(out),
             "--name", "2024-06-01"],  # a name YAML would turn into a date
            env=env, stdout=f, stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.time() + 300
            snap = out / "checkpoints" / "checkpoint_manager_snapshot.json"
            while not ((first := _read_log(out)) and snap.exists()
                       and "checkpoint_" in snap.read_text()):
                assert proc.poll() is None, console.read_text()[-3000:]
                assert time.time() < deadline, "no epoch finished in time"
                time.sleep(0.2)
            time.sleep(1.0)  # into epoch 2
            victim = first[0]["workers/nodes"][1]
            cluster.remove_node(_worker_nodes(cluster)[victim], allow_graceful=False)
            killed_at = time.time()
            assert proc.wait(timeout=400) == 0, console.read_text()[-3000:]
        finally:
            proc.kill()
    text = console.read_text()
    death = _death(cluster, victim)
    assert death.startswith("DEAD: Unexpected termination"), death  # a kill, not a SIGTERM
    assert gcs_servers() == before_gcs  # joined; started nothing
    history = json.loads((out / "training_log.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[0] == first[0]  # epoch 1 came from the checkpoint, not trained again
    assert "[2024-06-01] resumed at epoch 2" in text, text[-3000:]
    assert "[2024-06-01] epoch 2/2" in text  # the driver printed rank 0's lines
    nodes = history[0]["workers/nodes"]
    assert len(set(nodes)) == 2 and set(nodes) <= set(_worker_nodes(cluster)) | {victim}
    assert victim not in history[-1]["workers/nodes"] and not history[-1]["diverged"]
    df = read_manifest(str(demo_manifest))
    val_rows = int((df.split == "val").sum())
    assert val_rows % 2 == 1  # odd, so two workers cannot each score the same half
    assert all(h["val/images"] == val_rows for h in history)
    # test, scored by both ranks' shares at the best epoch: every test row once
    assert np.load(out / "test_rows.npy").tolist() == sorted(df.loc[df.split == "test", "row"])
    assert all(len(set(h["rng/fingerprint"])) == 2 for h in history)  # the ranks draw apart
    assert json.loads((out / "config.json").read_text())["run"]["name"] == "2024-06-01"
    reliability_log.append({
        "id": "node-sigkill", "epochs_before": len(first), "epochs_after": len(history),
        "recover_s": history[len(first)]["time/end"] - killed_at,  # to the next epoch's end
        "fault": "worker node SIGKILLed mid-epoch (2 workers filling 2 of 3 nodes)", "tries": 1,
        "outcome": f"Ray recorded '{death.split(': ')[1]}'; restarted from the last "
                   "checkpoint on the nodes left and said so; epoch 1 kept as logged, epochs "
                   "1-2 each logged once, every val and test image scored once",
        "lost": "the interrupted epoch's progress only"})


def test_a_sweep_trials_driver_node_lost_resumes_through_tune(cluster, demo_manifest, tmp_path,
                                                              reliability_log):
    """In a sweep the run's driver is the Tune trial actor, on a worker node, with the Train
    controller and the ledger beside it. That node is SIGKILLed (a spot reclaim) after the
    trial's first epoch: Tune restarts the trial, which resumes from its own checkpoint; the
    epochs before the loss are kept, not rerun."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    from ray.util.state import list_actors

    _grow(cluster, 4)
    # The head's CPUs held, so the trial actor lands on a worker node, as on a real cluster.
    hold = ray.remote(num_cpus=2)(Holder).options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(cluster.head_node.node_id,
                                                           soft=False)).remote()
    ray.get(hold.ready.remote())
    space, points = grid(optim__lr=[2e-3])
    exp = Experiment("lost", "one trial", space, points)
    base = load_config("micro", sets=[
        f"data.manifest={demo_manifest}", "optim.epochs=2", "run.cpus_per_worker=3",
        "sweep.grace_period=2", "run.max_failures=2", "run.figures=false"])
    sweep_dir = tmp_path / "lost"
    out: dict = {}
    sweep = threading.Thread(target=lambda: out.update(report=run_sweep(exp, base,
                                                                        str(sweep_dir))))
    sweep.start()
    deadline = time.time() + 400
    while True:
        assert time.time() < deadline and sweep.is_alive(), "no epoch finished in time"
        logs = list(sweep_dir.glob("runs/*/training_log.json"))
        snaps = list(sweep_dir.glob("runs/*/checkpoints/checkpoint_manager_snapshot.json"))
        if logs and snaps and "checkpoint_" in snaps[0].read_text():
            before = json.loads(logs[0].read_text())
            if before:
                break
        time.sleep(0.3)
    # Train V2 pins its controller to the node of the process that called fit(): here the
    # Tune trial actor. That node is the trial's driver node.
    alive = list_actors(address=cluster.address, filters=[("state", "=", "ALIVE")])
    controllers = [a for a in alive if a.class_name == "TrainController"]
    assert len(controllers) == 1, sorted({a.class_name for a in alive})
    nodes = _worker_nodes(cluster)
    assert controllers[0].node_id in nodes, (controllers[0].node_id, list(nodes))
    victim = nodes[controllers[0].node_id]
    cluster.remove_node(victim, allow_graceful=False)  # SIGKILL, as a spot reclaim
    killed_at = time.time()
    sweep.join(timeout=600)
    ray.kill(hold)
    assert not sweep.is_alive() and "report" in out, "the sweep did not finish"
    death = _death(cluster, victim.node_id)
    assert death.startswith("DEAD: Unexpected termination"), death
    after = json.loads(logs[0].read_text())
    assert victim.node_id not in after[-1]["workers/nodes"]
    assert [h["epoch"] for h in after] == [1, 2]
    assert after[:len(before)] == before  # the epochs before the loss, kept as they were
    trials = pd.read_csv(sweep_dir / "trials.csv")
    assert trials["status"].tolist() == ["finished"]
    reliability_log.append({
        "id": "trial-node-sigkill", "epochs_before": len(before), "epochs_after": len(after),
        "recover_s": after[len(before)]["time/end"] - killed_at,
        "fault": "node of a sweep trial's driver (trial actor, controller, ledger) SIGKILLed",
        "tries": 1, "outcome": f"Ray recorded '{death.split(': ')[1]}'; Tune restarted the "
                               f"trial; it resumed at epoch {len(before) + 1} from its "
                               "checkpoint; epochs 1-2 each once",
        "lost": "the interrupted epoch's progress only"})
