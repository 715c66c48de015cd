"""What a run asks of the cluster, without a cluster: placement refused before training with the
numbers, the shared-storage refusal on a cluster that can grow or inside a job's working
folder, and a job's own env vars never sent twice."""

import json

import pytest

from raysys.config import ConfigError, load_config
from raysys.train import cluster, connect

HEAD = ({"CPU": 0.0, "GPU": 0.0}, {"raysys-role": "head"})
FOUR = ({"CPU": 4.0, "GPU": 0.0}, {"raysys-role": "gpu-worker"})
P4D = ({"CPU": 96.0, "GPU": 8.0}, {"raysys-role": "gpu-worker"})


def cfg(*sets):
    return load_config("micro", sets=list(sets))


def test_workers_that_fill_their_nodes_are_placed():
    """3 of 4 CPUs per worker, one decode actor of 1 CPU beside each: a run of this shape hung
    (helper tasks that wanted a whole CPU); now it fits, one worker per node."""
    c = cfg("run.workers=2", "run.cpus_per_worker=3", "data.cpus_per_actor=1")
    assert cluster.plan_placement(c, [HEAD, FOUR, FOUR]) == "PACK"
    one_node = cfg("run.workers=2", "run.cpus_per_worker=1")
    assert cluster.plan_placement(one_node, [HEAD, FOUR]) == "STRICT_PACK"


def test_workers_that_fit_no_node_are_refused_with_the_numbers():
    with pytest.raises(ConfigError, match="2 Train workers of run.cpus_per_worker=5 CPU each do "
                                          "not fit this cluster's nodes .*4 CPU/0 GPU"):
        cluster.plan_placement(cfg("run.workers=2", "run.cpus_per_worker=5"), [HEAD, FOUR, FOUR])
    gpus = cfg("run.workers=16", "run.gpus=true", "data.batch_size=64")
    with pytest.raises(ConfigError, match=r"CPU \+ 1 GPU each"):
        cluster.plan_placement(gpus, [HEAD, P4D])
    assert cluster.plan_placement(gpus, [HEAD, P4D, P4D]) == "PACK"  # two 8-GPU nodes


def test_no_room_for_decode_actors_is_refused_with_the_fix():
    full = cfg("run.workers=2", "run.cpus_per_worker=4")
    with pytest.raises(ConfigError, match="have 0, 0 CPUs free, and the stream needs 2 decode "
                                          "actors of data.cpus_per_actor=0.5 CPU"):
        cluster.plan_placement(full, [HEAD, FOUR, FOUR])
    # A head's free CPUs do not count: the decode actors' label selector keeps them off it.
    roomy_head = ({"CPU": 8.0, "GPU": 0.0}, {"raysys-role": "head"})
    gpu_node = ({"CPU": 4.0, "GPU": 1.0}, {"raysys-role": "gpu-worker"})
    on_gpus = cfg("run.workers=2", "run.cpus_per_worker=4", "run.gpus=true")
    with pytest.raises(ConfigError, match="decode_selector=raysys-role=!head"):
        cluster.plan_placement(on_gpus, [roomy_head, gpu_node, gpu_node])
    allowed = cfg("run.workers=2", "run.cpus_per_worker=4", "run.gpus=true",
                  "data.decode_selector=raysys-role=head")
    assert cluster.plan_placement(allowed, [roomy_head, gpu_node, gpu_node]) == "PACK"


def test_selector_forms():
    assert cluster.selector_allows(("raysys-role=!head",), {"raysys-role": "gpu-worker"})
    assert cluster.selector_allows(("raysys-role=!head",), {})
    assert not cluster.selector_allows(("raysys-role=!head",), {"raysys-role": "head"})
    assert cluster.selector_allows(("zone=a", "raysys-role=!head"), {"zone": "a"})
    assert not cluster.selector_allows(("zone=a",), {"zone": "b"})


def _one_head(monkeypatch, types, fstype="ext4"):
    monkeypatch.setattr(cluster, "alive_nodes", lambda: [
        {"NodeID": "h", "NodeManagerAddress": "10.0.0.1", "Alive": True,
         "Resources": {"CPU": 0.0, "node:__internal_head__": 1.0}}])
    monkeypatch.setattr(cluster, "autoscaler_node_types", lambda: types)
    monkeypatch.setattr(cluster, "filesystem_type", lambda path: fstype)


def test_a_local_folder_on_a_cluster_that_can_grow_is_refused(monkeypatch, tmp_path):
    """`ray up` with min_workers 0: only the head is up when the sweep starts, so no second
    node can be asked whether it sees the folder. The autoscaler's config says more will come."""
    gpu_type = [{"resources": {"CPU": 96, "GPU": 8}, "labels": {}, "max_workers": 4}]
    _one_head(monkeypatch, gpu_type)
    with pytest.raises(ValueError, match=r"own disk \(ext4\), and the cluster can grow .*"
                                         r"autoscaler.*/mnt/efs/raysys/\.\.\., or an s3:// URI"):
        cluster.check_shared(str(tmp_path / "run"), cfg())
    cluster.check_shared("s3://bucket/runs/x", cfg())  # object storage: every node sees it
    _one_head(monkeypatch, gpu_type, fstype="nfs4")
    cluster.check_shared(str(tmp_path / "run"), cfg())  # EFS: shared
    _one_head(monkeypatch, [])  # a one-machine cluster that cannot grow: a local folder is fine
    cluster.check_shared(str(tmp_path / "run"), cfg())
    with pytest.raises(ValueError, match="sweep.max_nodes=2"):
        cluster.check_shared(str(tmp_path / "run"), cfg("sweep.max_nodes=2"))


def test_a_folder_inside_a_jobs_working_directory_is_refused(monkeypatch, tmp_path):
    """Under `ray job submit`, the default results/... lands in the job's temporary copy of the
    project: the report could not find rank 0's files, and Ray deletes it after the job."""
    _one_head(monkeypatch, [])
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(connect.JOB_CONFIG_ENV, json.dumps({"runtime_env": {}}))
    with pytest.raises(ValueError, match="inside this job's working directory"):
        cluster.check_shared(str(tmp_path / "results" / "run"), cfg())


def test_a_jobs_env_vars_are_not_sent_again(monkeypatch):
    """Sending the job's own keys again in ray.init fails the job, and Ray's message prints
    both runtime envs, the W&B key in clear."""
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    monkeypatch.setenv("WANDB_PROJECT", "p")
    monkeypatch.delenv(connect.JOB_CONFIG_ENV, raising=False)
    assert {"WANDB_API_KEY", "WANDB_PROJECT"} <= set(connect.runtime_env_vars())
    job = {"runtime_env": {"working_dir": "x", "env_vars": {"WANDB_API_KEY": "k" * 40}}}
    monkeypatch.setenv(connect.JOB_CONFIG_ENV, json.dumps(job))
    env = connect.runtime_env_vars()
    assert "WANDB_API_KEY" not in env and env["WANDB_PROJECT"] == "p"


def test_network_file_systems_count_as_shared():
    assert cluster.shared_filesystem("nfs4") and cluster.shared_filesystem("lustre")
    assert cluster.shared_filesystem("fuse.mountpoint-s3")
    assert not cluster.shared_filesystem("ext4") and not cluster.shared_filesystem("overlay")
    assert not cluster.shared_filesystem("fuse.fuse-overlayfs")
    assert cluster.filesystem_type("/proc/self") == "proc"  # the longest mounted prefix


def test_nothing_answers_on_a_closed_port():
    assert not connect.answers("127.0.0.1:9", timeout_s=0.5)
    assert not connect.answers("not-an-address")


def test_an_empty_cluster_without_the_launchers_config_names_max_nodes(monkeypatch):
    """A cluster not made by `ray up` (KubeRay) that starts with no worker node and has no
    ~/ray_bootstrap_config.yaml: nothing says what will join, so the run is refused, and the
    message names the setting that says it; with it, nothing is refused."""
    _one_head(monkeypatch, [])
    monkeypatch.setattr(cluster, "_autoscaler_totals", lambda: {})
    with pytest.raises(ConfigError, match=r"0 CPU/0 GPU.*--max-nodes \(sweep\.max_nodes\)"):
        cluster.check_placement(cfg())
    assert cluster.check_placement(cfg("sweep.max_nodes=2")) == "PACK"
