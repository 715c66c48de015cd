"""What a run asks of the cluster: the CPUs and GPUs one run holds at once, whether they can be
placed on the cluster's nodes, what the cluster can grow to, and whether the run folder is
visible from every node. (Joining Ray: connect.py.)"""

from __future__ import annotations

import math
import os
import uuid

import ray

from raysys import storage
from raysys.config import Config, ConfigError
from raysys.train.connect import in_job


def run_demand(cfg: Config) -> dict[str, float]:
    """What one run holds at once: its Train workers and one decode actor per worker at least.
    The stream's short helper tasks ask for no CPU (data/stream.py)."""
    cpu = cfg.run.workers * (cfg.run.cpus_per_worker + cfg.data.cpus_per_actor)
    return {"CPU": cpu, "GPU": float(cfg.run.workers if cfg.run.gpus else 0)}


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
    try:
        return plan_placement(cfg, nodes)
    except ConfigError as e:
        if types:
            raise
        raise ConfigError(f"{e}. If an autoscaler will start nodes that are not up yet and "
                          "this cluster has no ~/ray_bootstrap_config.yaml on its head (KubeRay, "
                          "or a cluster not made by `ray up`), say how many worker nodes it "
                          "may grow to with --max-nodes (sweep.max_nodes)") from None


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
