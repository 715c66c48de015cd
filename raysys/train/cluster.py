"""Joining Ray, and what a run asks of the cluster: the CPUs and GPUs one run holds at once,
whether they can be placed on the cluster's nodes, what the cluster can grow to, and whether
the run folder is visible from every node."""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import uuid
from urllib.parse import urlparse

import ray

from raysys import storage
from raysys.config import Config, ConfigError

# Set by Ray's job supervisor in a submitted job's driver: the job's runtime env, as JSON.
JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"
PROBE_TIMEOUT_S = 3.0

FORWARDED_ENV_PREFIXES = ("WANDB_", "RAYSYS_")
FORWARDED_ENV = ("AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION")


def forwarded_env() -> dict[str, str]:
    """What Train workers and Tune trials need from the driver's environment: W&B settings,
    raysys's own and the S3 endpoint. Ray forwards only its own variables."""
    return {k: v for k, v in os.environ.items()
            if k.startswith(FORWARDED_ENV_PREFIXES) or k in FORWARDED_ENV}


def runtime_env_vars() -> dict[str, str]:
    """forwarded_env, less what a submitted job already carries. The job supervisor puts the
    job's env vars into the driver's environment and every task's; a driver that sends the
    same keys again in ray.init is refused ("Failed to merge the Job's runtime env"), with
    both envs printed, secrets included."""
    env = forwarded_env()
    job = os.environ.get(JOB_CONFIG_ENV)
    if job:
        carried = (json.loads(job).get("runtime_env") or {}).get("env_vars") or {}
        env = {k: v for k, v in env.items() if k not in carried}
    return env


def in_job() -> bool:
    """This process is the driver of a `ray job submit` job."""
    return JOB_CONFIG_ENV in os.environ


def run_demand(cfg: Config) -> dict[str, float]:
    """What one run holds at once: its Train workers and one decode actor per worker at least.
    The stream's short helper tasks ask for no CPU (data/stream.py)."""
    cpu = cfg.run.workers * (cfg.run.cpus_per_worker + cfg.data.cpus_per_actor)
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


def init_ray(cfg: Config, verbose: bool = False, spare_cpus: float = 0.0) -> None:
    """Join RAY_ADDRESS, or the cluster running on this machine (`ray start`, `ray attach`,
    `ray up`); only when there is none, start a local Ray. Resources are never passed to an
    existing cluster; a local one gets extra logical CPUs only where this machine has fewer
    than one run needs (run_demand, plus `spare_cpus`: a sweep's trial function).

    The address is probed first: Ray's own join waits forever on an address file left by a Ray
    that died without `ray stop`. An explicit RAY_ADDRESS that does not answer fails in seconds;
    a stale address file is reported in one line, and a local Ray starts instead."""
    quiet_ray(verbose)
    if ray.is_initialized():
        return
    env = runtime_env_vars()
    common = {"log_to_driver": verbose, "logging_level": logging.INFO if verbose else
              logging.ERROR, "runtime_env": {"env_vars": env} if env else None}
    explicit = os.environ.get("RAY_ADDRESS", "")
    address = ray_address()
    if address and answers(address):
        try:
            ray.init(address=address, **common)
        except ValueError as e:  # never echo a runtime env: it holds the job's secrets
            if "runtime env" not in str(e):
                raise
            raise ConnectionError(f"joining the Ray at {address}: Ray could not merge the job's "
                                  f"runtime env with raysys's (keys {sorted(env)})") from None
        return
    if explicit:
        raise ConnectionError(
            f"RAY_ADDRESS={explicit}: nothing answers at {address or explicit} within "
            f"{PROBE_TIMEOUT_S:g} s. Point it at a running cluster's head (host:6379), or unset "
            "it to start a local Ray")
    if address:
        print(f"raysys: Ray's address file names a cluster at {address} that does not answer "
              "(a Ray that stopped without `ray stop`; `ray stop` clears it): starting a local "
              "Ray", flush=True)
    need = run_demand(cfg)["CPU"] + spare_cpus
    cores = os.cpu_count() or 1
    # One machine: no node can be drained or preempted, so Train's preemption watcher (an
    # extra process to start on every run) has nothing to watch; and the controller may poll
    # its workers every 0.5 s instead of 2 s (it notices the end of a run 1.5 s sooner).
    os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
    dashboard = {"include_dashboard": True, "dashboard_host": "127.0.0.1"} \
        if cfg.run.dashboard else {"include_dashboard": False}
    ray.init(address="local", num_cpus=max(cores, math.ceil(need)), **dashboard, **common)


def ray_address() -> str | None:
    """Where ray.init(address="auto") would go: RAY_ADDRESS, else the cluster this machine
    started last (Ray's address file), else None.

    Private API: Ray has no public call that resolves the address without connecting (and
    connecting to a dead address waits forever). A test fails if it goes away
    (tests/train/test_ray_private.py)."""
    from ray._private.services import canonicalize_bootstrap_address

    explicit = os.environ.get("RAY_ADDRESS", "")
    if explicit.startswith(("ray://", "http://", "https://")):
        return explicit  # Ray Client, or a dashboard URL: probed as given
    try:
        return canonicalize_bootstrap_address(None)
    except (ConnectionError, ValueError):
        return explicit or None


def answers(address: str, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """Something accepts a TCP connection at host:port."""
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    try:
        socket.create_connection((parsed.hostname, parsed.port), timeout=timeout_s).close()
        return True
    except (OSError, ValueError, TypeError):
        return False


# --- what the cluster has, and can grow to ---------------------------------------------------

def alive_nodes() -> list[dict]:
    return [n for n in ray.nodes() if n["Alive"]]


def is_head(node: dict) -> bool:
    return "node:__internal_head__" in node["Resources"]


def autoscaler_node_types() -> list[dict]:
    """The worker node types a `ray up` cluster may start, from the launcher's config on the
    head (~/ray_bootstrap_config.yaml): [{resources, labels, max_workers}], [] elsewhere.
    Read in this process when it runs on the head (`ray attach`, a submitted job), else by a
    small task there."""
    here = ray.get_runtime_context().get_node_id()
    if any(is_head(n) and n["NodeID"] == here for n in alive_nodes()):
        return _bootstrap_node_types()
    try:
        read = ray.remote(num_cpus=0, resources={"node:__internal_head__": 0.001})(
            _bootstrap_node_types)
        return ray.get(read.remote(), timeout=60)
    except Exception:
        return []


def _bootstrap_node_types() -> list[dict]:
    import yaml

    path = os.path.expanduser("~/ray_bootstrap_config.yaml")
    if not os.path.exists(path):
        return []
    c = yaml.safe_load(open(path))
    return [{"resources": node.get("resources", {}), "labels": node.get("labels", {}),
             "max_workers": node.get("max_workers", 0)}
            for name, node in c.get("available_node_types", {}).items()
            if name != c.get("head_node_type")]


def growth_capacity() -> tuple[dict[str, float], str] | None:
    """The resources the cluster can grow to, where an autoscaler says so: Ray's reported
    cluster config, or the `ray up` launcher config on the head node."""
    res = _autoscaler_totals()
    if res:
        return res, "autoscaler cluster config"
    types = autoscaler_node_types()
    if not types:
        return None
    total: dict[str, float] = {}
    for node in [*(n["Resources"] for n in alive_nodes() if is_head(n))]:
        for key in ("CPU", "GPU"):
            total[key] = total.get(key, 0.0) + node.get(key, 0.0)
    for t in types:
        for key, value in t["resources"].items():
            total[key] = total.get(key, 0.0) + t["max_workers"] * value
    return total, "~/ray_bootstrap_config.yaml"


def _autoscaler_totals() -> dict[str, float]:
    """What Ray reports the autoscaler may grow to, in total ({} on a `ray up` cluster in 2.60,
    whose launcher config autoscaler_node_types reads instead).

    Private API: Ray 2.60 has no public read of the autoscaler's limits (ray.autoscaler.sdk
    only requests resources; ray.cluster_resources() shows what is up now, 0 GPUs on a cluster
    that starts empty). A test fails if it goes away (tests/train/test_ray_private.py)."""
    from ray._private.state import state

    try:
        return dict(state.get_max_resources_from_cluster_config() or {})
    except Exception:
        return {}


def can_grow(cfg: Config) -> str | None:
    """Why more nodes may join than are up now (an autoscaler, or sweep.max_nodes), or None."""
    if any(t["max_workers"] > 0 for t in autoscaler_node_types()):
        return "the autoscaler's node types (~/ray_bootstrap_config.yaml)"
    workers = [n for n in alive_nodes() if not is_head(n)]
    if cfg.sweep.max_nodes > len(workers):
        return f"sweep.max_nodes={cfg.sweep.max_nodes}"
    return None


# --- can the run be placed? ------------------------------------------------------------------

def selector_allows(selector: tuple[str, ...], labels: dict[str, str]) -> bool:
    """A node's labels against `key=value` / `key=!value` entries (data.decode_selector)."""
    for entry in selector:
        key, _, value = entry.partition("=")
        if value.startswith("!") and labels.get(key) == value[1:]:
            return False
        if not value.startswith("!") and labels.get(key) != value:
            return False
    return True


def check_placement(cfg: Config) -> str:
    """plan_placement over the nodes this cluster has, and those its autoscaler can start
    (at most as many of a type as there are workers). Where nodes will join whose shapes
    nothing here describes (sweep.max_nodes, or an autoscaler known only by its totals),
    nothing is refused."""
    types = autoscaler_node_types()
    workers = [n for n in alive_nodes() if not is_head(n)]
    if not types and (cfg.sweep.max_nodes > len(workers) or _autoscaler_totals()):
        return "PACK"
    nodes = [(n["Resources"], n.get("Labels", {})) for n in alive_nodes()]
    for t in types:
        nodes += [(t["resources"], t["labels"])] * min(t["max_workers"], cfg.run.workers)
    return plan_placement(cfg, nodes)


def plan_placement(cfg: Config, nodes: list[tuple[dict, dict]]) -> str:
    """Refuse, before anything starts, a run whose Train workers, or the decode actors the
    stream needs beside them (one per worker, data.cpus_per_actor each, on nodes that
    data.decode_selector allows), fit no set of these (resources, labels) nodes. Ray would
    otherwise wait for them forever, without a message.

    Returns Train's placement strategy: STRICT_PACK when every worker fits one node (NCCL then
    never crosses nodes over TCP), else PACK."""
    if not nodes:
        return "PACK"
    need = {"CPU": cfg.run.cpus_per_worker, "GPU": 1.0 if cfg.run.gpus else 0.0}
    free = sorted(({k: res.get(k, 0.0) for k in need} | {"labels": labels}
                   for res, labels in nodes), key=lambda f: (f["GPU"], f["CPU"]),
                  reverse=True)
    shapes = ", ".join(sorted({f"{f['CPU']:g} CPU/{f['GPU']:g} GPU" for f in free}))
    one_node = any(all(f[k] >= cfg.run.workers * v for k, v in need.items()) for f in free)
    for _ in range(cfg.run.workers):
        node = next((f for f in free if all(f[k] >= v for k, v in need.items())), None)
        if node is None:
            raise ConfigError(
                f"{cfg.run.workers} Train workers of run.cpus_per_worker="
                f"{cfg.run.cpus_per_worker:g} CPU{' + 1 GPU' if cfg.run.gpus else ''} each do "
                f"not fit this cluster's nodes ({shapes}). Lower run.workers or "
                "run.cpus_per_worker, or add nodes")
        for k, v in need.items():
            node[k] -= v
    actors = min(math.ceil(cfg.run.workers * cfg.data.actors_per_worker), cfg.run.workers)
    allowed = [f for f in free if selector_allows(cfg.data.decode_selector, f["labels"])]
    slots = sum(math.floor(f["CPU"] / cfg.data.cpus_per_actor + 1e-9) for f in allowed)
    if slots < actors:
        left = ", ".join(f"{f['CPU']:g}" for f in allowed) or "none"
        raise ConfigError(
            f"after {cfg.run.workers} Train workers of {cfg.run.cpus_per_worker:g} CPUs, the "
            f"nodes the decode actors may use (data.decode_selector="
            f"{','.join(cfg.data.decode_selector) or 'any'}) have {left} CPUs free, and the "
            f"stream needs {actors} decode actors of data.cpus_per_actor="
            f"{cfg.data.cpus_per_actor:g} CPU. Lower run.cpus_per_worker so that each node "
            "keeps CPUs for decoding, or lower data.cpus_per_actor")
    return "STRICT_PACK" if one_node else "PACK"


# --- is the run folder where every node sees it? ---------------------------------------------

NETWORK_FS = ("nfs", "nfs4", "efs", "lustre", "cifs", "smb3", "smbfs", "ceph", "glusterfs",
              "gpfs", "beegfs", "wekafs")


def filesystem_type(path: str) -> str:
    """The file system type of the mount that holds path (/proc/mounts), or "unknown". The
    path need not exist yet: its longest mounted prefix decides."""
    target = os.path.realpath(path)
    best, kind = "", "unknown"
    try:
        for line in open("/proc/mounts"):
            _, mount, fstype = line.split()[:3]
            inside = target == mount or target.startswith(mount.rstrip("/") + "/")
            if inside and len(mount) > len(best):
                best, kind = mount, fstype
    except OSError:
        pass
    return kind


def shared_filesystem(fstype: str) -> bool:
    return fstype in NETWORK_FS or (fstype.startswith("fuse.") and "overlay" not in fstype)


def check_shared(path: str, cfg: Config) -> None:
    """Rank 0 may write the run folder from any node, and the report reads it from the
    driver: a local path another node cannot see, now or once the cluster grows, is refused
    before training, with what to pass instead."""
    if storage.is_uri(path):
        return
    fix = ("Pass --out (or --storage) on storage every node mounts, e.g. "
           "/mnt/efs/raysys/..., or an s3:// URI")
    if in_job() and os.path.realpath(path).startswith(os.path.realpath(os.getcwd()) + os.sep):
        raise ValueError(
            f"{path} is inside this job's working directory, a temporary copy that other "
            f"nodes cannot see and that Ray deletes when the job ends. {fix}")
    nodes = alive_nodes()
    if len(nodes) >= 2:
        marker = storage.join(path, f".raysys-shared-{uuid.uuid4().hex}")
        storage.write_text(marker, "visible from every node?")
        try:
            blind = [n["NodeManagerAddress"] for n in nodes
                     if not node_sees(n["NodeID"], marker)]
        finally:
            os.unlink(marker)
        if blind:
            raise ValueError(
                f"{path} is not visible from {len(blind)} node(s) ({', '.join(blind[:4])}): "
                f"rank 0 writes the run folder from whichever node it lands on. {fix}")
    fstype = filesystem_type(path)
    why = None if shared_filesystem(fstype) else can_grow(cfg)
    if why:
        raise ValueError(
            f"{path} is on this node's own disk ({fstype}), and the cluster can grow to more "
            f"nodes ({why}), whose rank 0 would write where the report cannot read. {fix}")


def node_sees(node_id: str, path: str) -> bool:
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(num_cpus=0)(os.path.exists).options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False))
    return ray.get(probe.remote(path), timeout=120)
