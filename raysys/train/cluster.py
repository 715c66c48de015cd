"""Joining Ray, and what a run asks of the cluster: the CPUs and GPUs one run holds at once,
what the cluster can grow to, and whether the run folder is visible from every node."""

from __future__ import annotations

import logging
import os
import uuid

import ray

from raysys import storage
from raysys.config import Config

FORWARDED_ENV_PREFIXES = ("WANDB_", "RAYSYS_")
FORWARDED_ENV = ("AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION")


def forwarded_env() -> dict[str, str]:
    """What Train workers and Tune trials need from the driver's environment: W&B settings and
    the test hooks. Ray forwards only its own variables."""
    return {k: v for k, v in os.environ.items()
            if k.startswith(FORWARDED_ENV_PREFIXES) or k in FORWARDED_ENV}


def run_demand(cfg: Config) -> dict[str, float]:
    """What one run holds at once: its Train workers, one decode actor per worker at least,
    and one whole CPU for the data stream's short per-epoch tasks (Ray Data's Parquet listing
    and the epoch expansion need a whole free CPU: without it, the read never starts)."""
    cpu = cfg.run.workers * (cfg.run.cpus_per_worker + cfg.data.cpus_per_actor) + 1
    return {"CPU": cpu, "GPU": float(cfg.run.workers if cfg.run.gpus else 0)}


def quiet_ray(verbose: bool) -> None:
    """Ray's tables, execution plans and internal log lines are one flag away (--verbose);
    by default the console shows our lines only. Set before Ray and Tune print anything."""
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = verbose
    ctx.print_on_execution_start = verbose
    if not verbose:
        from ray.util.debug import log_once

        log_once("ray_data_progress_manager_disabled")  # "Progress bars disabled": we know
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the legacy engine honours verbose=0
        os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        logging.getLogger("ray.tune").setLevel(logging.WARNING)
        logging.getLogger("ray.train").setLevel(logging.WARNING)


def init_ray(cfg: Config, verbose: bool = False) -> None:
    """Join RAY_ADDRESS, or the cluster running on this machine (`ray start`, `ray attach`,
    `ray up`); only when there is none, start a local Ray. Resources are never passed to an
    existing cluster; a local one gets extra logical CPUs only where this machine has fewer
    than one run needs (run_demand)."""
    quiet_ray(verbose)
    if ray.is_initialized():
        return
    common = {"log_to_driver": verbose, "logging_level": logging.INFO if verbose else
              logging.ERROR, "runtime_env": {"env_vars": forwarded_env()}}
    try:
        ray.init(address=os.environ.get("RAY_ADDRESS") or "auto", **common)
        return
    except ConnectionError:
        if os.environ.get("RAY_ADDRESS"):
            raise
    need = run_demand(cfg)["CPU"]
    cores = os.cpu_count() or 1
    # One machine: no node can be drained or preempted, so Train's preemption watcher (an
    # extra process to start on every run) has nothing to watch; and the controller may poll
    # its workers every 0.5 s instead of 2 s (it notices the end of a run 1.5 s sooner).
    os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
    ray.init(address="local", num_cpus=max(cores, int(need + 0.999)),
             dashboard_host="127.0.0.1", **common)


def growth_capacity() -> tuple[dict[str, float], str] | None:
    """The resources the cluster can grow to, where an autoscaler says so: Ray's reported
    cluster config, or the `ray up` bootstrap config on the head node.

    Private API: Ray 2.60 has no public read of the autoscaler's limits (ray.autoscaler.sdk
    only requests resources; ray.cluster_resources() shows what is up now, 0 GPUs on a cluster
    that starts empty). A test fails if it goes away (tests/train/test_ray_private.py)."""
    from ray._private.state import state

    try:
        res = state.get_max_resources_from_cluster_config()
        if res:
            return dict(res), "autoscaler cluster config"
    except Exception:
        pass
    try:
        read = ray.remote(num_cpus=0, resources={"node:__internal_head__": 0.001})(
            _bootstrap_capacity)
        res = ray.get(read.remote(), timeout=60)
    except Exception:
        res = None
    return (res, "~/ray_bootstrap_config.yaml") if res else None


def _bootstrap_capacity() -> dict[str, float] | None:
    import yaml

    path = os.path.expanduser("~/ray_bootstrap_config.yaml")
    if not os.path.exists(path):
        return None
    c = yaml.safe_load(open(path))
    total: dict[str, float] = {}
    for name, node in c.get("available_node_types", {}).items():
        count = 1 if name == c.get("head_node_type") else node.get("max_workers", 0)
        for key, value in node.get("resources", {}).items():
            total[key] = total.get(key, 0.0) + count * value
    return total


def alive_nodes() -> list[dict]:
    return [n for n in ray.nodes() if n["Alive"]]


def check_shared(path: str) -> None:
    """With several nodes, rank 0 may write the run folder from any of them: a local --out that
    another node cannot see is refused before training, with what to pass instead."""
    nodes = alive_nodes()
    if storage.is_uri(path) or len(nodes) < 2:
        return
    marker = storage.join(path, f".raysys-shared-{uuid.uuid4().hex}")
    storage.write_text(marker, "visible from every node?")
    try:
        blind = [n["NodeManagerAddress"] for n in nodes if not node_sees(n["NodeID"], marker)]
    finally:
        os.unlink(marker)
    if blind:
        raise ValueError(
            f"{path} is not visible from {len(blind)} node(s) ({', '.join(blind[:4])}): rank 0 "
            "writes the run folder from whichever node it lands on. Pass --out (or --storage) "
            "on storage every node mounts, e.g. /mnt/efs/raysys/..., or an s3:// URI")


def node_sees(node_id: str, path: str) -> bool:
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(num_cpus=0)(os.path.exists).options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False))
    return ray.get(probe.remote(path), timeout=120)
