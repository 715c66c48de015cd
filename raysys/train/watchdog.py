"""A run that makes no progress while Ray holds work it cannot place stops, with a message.

Ray waits for resources forever and says nothing: decode actors that fit no node's free CPUs
stayed pending for 10 minutes beside Train workers that waited for their first batch. The
driver (a `raysys train` process, or a sweep's trial actor) watches the ledger: once the
workers have started, a stream and a rank 0 that show no sign of life for run.stall_timeout_s
while actors or tasks are pending end the run. The clock starts with the workers, so a trial
that waits for the autoscaler's nodes is not a stall.
"""

from __future__ import annotations

import threading
from collections import Counter

import ray


def pending_work() -> list[str] | None:
    """What Ray cannot place now, as 'N x name wanting {resources}'; None when Ray's state API
    does not answer (then nothing is stopped on a guess)."""
    try:
        from ray.util.state import list_actors, list_tasks

        # This cluster's address, given: by default the state API follows Ray's address file,
        # which may name a Ray that died long ago.
        here = ray.get_runtime_context().gcs_address
        actors = list_actors(address=here, filters=[("state", "=", "PENDING_CREATION")],
                             detail=True, raise_on_missing_output=False)
        tasks = list_tasks(address=here, filters=[("state", "=", "PENDING_NODE_ASSIGNMENT")],
                           detail=True, raise_on_missing_output=False)
    except Exception:
        return None
    # An actor's own methods queue behind it, and tasks that want nothing wait on something
    # else: name the actors, and the tasks that want resources.
    classes = tuple(a.class_name for a in actors)
    tasks = [t for t in tasks if t.required_resources and not t.name.startswith(classes)]
    wants = Counter(f"{getattr(x, 'class_name', None) or x.name} wanting "
                    f"{dict(x.required_resources or {})}" for x in [*actors, *tasks])
    return [f"{n} x {what}" for what, n in wants.most_common()]


def stall_message(idle_s: float, pending: list[str]) -> str:
    free = ray.available_resources()
    total = ray.cluster_resources()
    have = ", ".join(f"{k} {free.get(k, 0.0):g} of {total[k]:g}" for k in ("CPU", "GPU")
                     if total.get(k))
    return (f"no training progress for {idle_s:.0f} s while Ray cannot place "
            f"{'; '.join(pending[:4])} (free now: {have}). Lower run.cpus_per_worker or "
            "data.cpus_per_actor so that decode actors fit beside the Train workers, free the "
            "cluster, or raise run.stall_timeout_s if nodes are still starting")


class Watchdog:
    """While a run fits: every few seconds, ask the ledger how long the run has been idle;
    past the timeout, with work pending, mark the run stalled in the ledger and end its
    workers. The workers then refuse to restart, and fit() raises StallError."""

    def __init__(self, ledger, timeout_s: float):
        self.ledger, self.timeout = ledger, timeout_s
        self.poll = max(1.0, min(10.0, timeout_s / 4))
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.done.wait(self.poll):
            try:
                idle = ray.get(self.ledger.idle_s.remote(), timeout=30)
            except Exception:  # the watchdog must never fail a run
                continue
            if idle is None or idle < self.timeout:
                continue
            pending = pending_work()
            if pending:
                workers = ray.get(self.ledger.stop.remote(stall_message(idle, pending)))
                for worker in workers:
                    ray.kill(worker, no_restart=True)
                return

    def __enter__(self):
        if self.timeout > 0:
            self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
