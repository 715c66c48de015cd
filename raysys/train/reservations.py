"""What Ray holds and what waits for it: placement groups with their owners, the work that
cannot be placed, and the groups a run leaves behind, removed.

Read from the GCS, which every node can reach with or without Ray's dashboard; only the names
of pending tasks come from the state API (served by the dashboard), where it answers.

**Leaked groups.** A placement group outlives the actor that created it until its job ends too
(Ray fate-shares a group with both its creator actor and its job). Train's worker group is
created by the run's TrainController; when a sweep's trial is stopped (ASHA) or dies, its
controller dies with it while the sweep's driver, the job, lives on, and the group keeps its
CPUs and GPUs: 8 GPUs held by nobody until the sweep ends. Ray Train's own cleaner removes such
a group, but it gives up for good on the first failed lookup (two Rays on one host did it). A
group of this job whose creator actor is dead and that is not detached is leaked by that
definition; raysys removes those after every run and while a sweep runs, and says so.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

import ray

GRACE_S = 5.0


@dataclass(frozen=True)
class Group:
    id: str
    state: str  # PENDING | PREPARED | CREATED | RESCHEDULING | REMOVED
    strategy: str
    bundles: tuple[tuple[tuple[str, float], ...], ...]
    job: str
    creator: str  # actor id, or "" where the job's driver created it
    creator_dead: bool
    detached: bool

    def leaked(self, job: str) -> bool:
        return (self.job == job and bool(self.creator) and self.creator_dead
                and not self.detached and self.state != "REMOVED")

    def shape(self) -> str:
        """'2 x {CPU: 1}' per distinct bundle, the logical resources only."""
        counts = Counter(self.bundles)
        return " + ".join(f"{n} x {{{', '.join(f'{k}: {v:g}' for k, v in b)}}}"
                          for b, n in counts.items())


def placement_groups() -> list[Group]:
    """Every placement group the GCS knows, removed ones included.

    Private API: the public tables (ray.util.placement_group_table, the state API's
    list_placement_groups) leave out the creator actor and whether it is dead, which is what
    tells a leaked group from a live one. A test fails if it goes away
    (tests/train/test_ray_private.py)."""
    from ray._private.state import state
    from ray.core.generated import gcs_pb2

    table = gcs_pb2.PlacementGroupTableData
    groups = []
    for raw in state._connect_and_get_accessor().get_placement_group_table():
        g = table.FromString(raw)
        creator = g.creator_actor_id.hex()
        groups.append(Group(
            id=g.placement_group_id.hex(), state=table.PlacementGroupState.Name(g.state),
            strategy=_strategy(g.strategy),
            bundles=tuple(tuple(sorted((k, float(v)) for k, v in b.unit_resources.items()
                                       if "_group_" not in k)) for b in g.bundles),
            job=g.creator_job_id.hex(),
            creator="" if set(creator) <= {"f"} else creator,  # nil: the driver's
            creator_dead=g.creator_actor_dead, detached=g.is_detached))
    return groups


def _strategy(value: int) -> str:
    from ray.core.generated.common_pb2 import PlacementStrategy

    return PlacementStrategy.Name(value)


def actor_info(actor_id: str) -> dict:
    """An actor's GCS record, alive or dead ({} when unknown): ActorClassName, EndTime (ms)."""
    try:
        return ray._private.state.actors(actor_id) or {}
    except Exception:
        return {}


def dead_for_s(g: Group) -> float:
    """Seconds since the group's creator actor died (0 when the GCS does not say)."""
    end = actor_info(g.creator).get("EndTime") or 0
    return max(0.0, time.time() - end / 1000) if end else 0.0


def owner(g: Group) -> str:
    if not g.creator:
        return f"the driver of job {g.job}"
    status = "dead" if g.creator_dead else "alive"
    name = (actor_info(g.creator).get("ActorClassName") or "actor").rsplit(".", 1)[-1]
    return f"{name} {g.creator[:8]} ({status}) of job {g.job}"


def remove_leaked_groups(wait_s: float = 0.0, say=print) -> list[Group]:
    """Remove this job's leaked placement groups (the module's note), one line each, once
    their creator has been dead GRACE_S; with `wait_s`, wait up to that long for the younger
    ones to be removed by Ray or to age. Returns the groups removed. Never raises: a cleanup
    must not fail the run it follows."""
    from ray.util.placement_group import PlacementGroup, remove_placement_group

    removed: list[Group] = []
    deadline = time.time() + wait_s
    try:
        job = ray.get_runtime_context().get_job_id()
        while True:
            young = False
            for g in placement_groups():
                if not g.leaked(job):
                    continue
                if dead_for_s(g) < GRACE_S:  # Ray's own cleaner may still take it
                    young = True
                    continue
                remove_placement_group(PlacementGroup(ray.PlacementGroupID(bytes.fromhex(g.id))))
                removed.append(g)
                say(f"raysys: removed placement group {g.id[:12]} ({g.strategy}, {g.shape()}) "
                    f"left by {owner(g)}")
            if not young or time.time() >= deadline:
                return removed
            time.sleep(1.0)
    except Exception as e:
        say(f"raysys: could not check for leaked placement groups: {type(e).__name__}: {e}")
        return removed


def withdraw_train_request(run_id: str) -> None:
    """Withdraw the resource request of a Train run whose controller was killed. Ray Train asks
    Ray's autoscaler (through Ray Data's autoscaling coordinator) to keep its workers'
    resources, for 180 s after each renewal, and withdraws it when its controller shuts down;
    a sweep trial that ASHA stops has its controller killed, and the request it leaves keeps
    the trial's node from idling out for 3 minutes. Never raises.

    Private API: the coordinator and Train's requester id ("train-<run id>") have no public
    handle. A test fails if they go away (tests/train/test_ray_private.py); the
    real-autoscaler test fails if a node stays up."""
    from ray.data._internal.cluster_autoscaler.default_autoscaling_coordinator import (
        get_or_create_autoscaling_coordinator,
    )

    try:
        get_or_create_autoscaling_coordinator().cancel_request.remote(
            requester_id=f"train-{run_id}")
    except Exception:
        pass


# --- what waits, and who holds -----------------------------------------------------------------

@dataclass
class Waiting:
    """What the cluster cannot place now, by shape; and whether nodes are starting."""
    groups: list[str]  # 'placement group <id> (STRICT_PACK, 1 x {CPU: 1})'
    work: list[str]  # '2 x {CPU: 1}': tasks and actors, by shape
    launching: int  # nodes the autoscaler is starting

    def __bool__(self) -> bool:
        return bool(self.groups or self.work)


def waiting() -> Waiting | None:
    """The cluster's unmet demand, from the GCS's autoscaling state (any node, no dashboard);
    None when the GCS does not answer."""
    from ray.autoscaler.v2.sdk import get_cluster_status

    try:
        status = get_cluster_status(ray.get_runtime_context().gcs_address, timeout=30)
    except Exception:
        return None
    d = status.resource_demands
    groups = [f"placement group {g.pg_id[:12] if g.pg_id else '?'} ({g.strategy}, "
              + " + ".join(f"{b.count} x {_shape(b.bundle)}" for b in g.bundles_by_count) + ")"
              for g in d.placement_group_demand]
    work = [f"{b.count} x {_shape(b.bundle)}" for w in d.ray_task_actor_demand
            for b in w.bundles_by_count]
    return Waiting(groups, work, len(status.pending_launches) + len(status.pending_nodes))


def _shape(bundle: dict) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in sorted(bundle.items())) + "}"


def pending_actors() -> list[str]:
    """Actors that wait to be created, with what they ask for, as 'N x class wanting
    {resources}', read from the GCS (any node). The GCS's demand leaves out work held to given
    nodes (a node-id label selector, as raysys's decode actors have); its actor table does not.

    Private API, as `placement_groups` (tests/train/test_ray_private.py)."""
    from ray._private.state import state
    from ray.core.generated import gcs_pb2

    wants: Counter = Counter()
    for raw in state._connect_and_get_accessor().get_actor_table(None, "PENDING_CREATION"):
        a = gcs_pb2.ActorTableData.FromString(raw)
        if a.required_resources:
            wants[f"{a.class_name} wanting {dict(a.required_resources)}"] += 1
    return [f"{n} x {what}" for what, n in wants.most_common()]


def pending_names() -> list[str] | None:
    """The actors and tasks that wait to be placed, as 'N x name wanting {resources}'; None
    when Ray's state API (the dashboard) does not answer from here."""
    try:
        from ray.util.state import list_actors, list_tasks

        # This cluster's address, given: by default the state API follows Ray's address file,
        # which may name another Ray, or one that died long ago.
        here = ray.get_runtime_context().gcs_address
        actors = list_actors(address=here, filters=[("state", "=", "PENDING_CREATION")],
                             detail=True, raise_on_missing_output=False, timeout=10)
        tasks = list_tasks(address=here, filters=[("state", "=", "PENDING_NODE_ASSIGNMENT")],
                           detail=True, raise_on_missing_output=False, timeout=10)
    except Exception:
        return None
    # An actor's own methods queue behind it, and tasks that want nothing wait on something
    # else: name the actors, and the tasks that want resources.
    classes = tuple(a.class_name for a in actors)
    tasks = [t for t in tasks if t.required_resources and not t.name.startswith(classes)]
    wants = Counter(f"{getattr(x, 'class_name', None) or x.name} wanting "
                    f"{dict(x.required_resources or {})}" for x in [*actors, *tasks])
    return [f"{n} x {what}" for what, n in wants.most_common()]


def holders() -> list[str]:
    """The placement groups that hold resources now, with their owners."""
    try:
        return [f"placement group {g.id[:12]} ({g.strategy}, {g.shape()}) of {owner(g)}"
                for g in placement_groups() if g.state == "CREATED"]
    except Exception:
        return []
