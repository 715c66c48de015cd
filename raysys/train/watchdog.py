"""A run that makes no progress while Ray holds work it cannot place stops, with a message.

Ray waits for resources forever and says nothing: decode actors that fit no node's free CPUs
stayed pending for 10 minutes beside Train workers that waited for their first batch, and a
sweep's second trial waited 14 minutes in Ray Data's `from_arrow` for a CPU that a leaked
placement group held. The watchdog covers a run from `ray.init` to its report:

- **progress** is anything that moves: a step of the driver (marked here), a decode batch or an
  epoch line in the run's ledger, and nodes the autoscaler is starting;
- past `run.stall_timeout_s` without progress, while the cluster holds demand it cannot place
  (the GCS's autoscaling state: tasks, actors and placement groups by shape; and its actor
  table, for actors held to given nodes, which that state leaves out), the run stops
  with what waits (by name, where the state API answers), what it asks for, and which
  placement groups hold the cluster and whose they are.

The run's work runs in a thread of its own (`Watchdog.call`), so the waiting thread can end a
wait that Ray would never end; where the run's workers are up, the ledger stops them first.
"""

from __future__ import annotations

import threading
import time

import ray

from raysys.errors import StallError
from raysys.train import reservations

UNWIND_S = 30.0  # after a stop, how long the run's thread may take to end (console.log)


def stall_message(idle_s: float, wait: reservations.Waiting) -> str:
    names = reservations.pending_names()
    if names is None:  # Ray's state API does not answer from this node: the GCS's tables do
        # (wait.work may be those actors already: the check's own fallback)
        names = list(dict.fromkeys([*reservations.pending_actors(), *wait.groups, *wait.work]))
    what = "; ".join(names[:4] or [*wait.groups, *wait.work][:4])
    free, total = ray.available_resources(), ray.cluster_resources()
    have = ", ".join(f"{k} {free.get(k, 0.0):g} of {total[k]:g}" for k in ("CPU", "GPU")
                     if total.get(k))
    held = reservations.holders()
    return (f"no progress for {idle_s:.0f} s while Ray cannot place {what} (free now: {have}"
            + (f"; held by {'; '.join(held[:4])}" if held else "") + "). Free the "
            "cluster (a placement group of a dead actor is leaked), lower run.cpus_per_worker "
            "or data.cpus_per_actor so that decode actors fit beside the Train workers, or "
            "raise run.stall_timeout_s if nodes are still starting")


class Watchdog:
    """While a run lives: every few seconds, how long since its last progress; past the
    timeout with demand that cannot be placed, stop it (StallError from `call`)."""

    def __init__(self, timeout_s: float):
        self.timeout = timeout_s
        self.poll = max(0.5, min(2.0, timeout_s / 4))  # a few GCS reads: cheap
        self.last = time.time()
        self.ledger = None
        self.stalled: str | None = None
        self.workers_stopped = 0
        self.done = threading.Event()

    def progress(self) -> None:
        self.last = time.time()

    def attach(self, ledger) -> None:
        """The run's ledger: its progress counts, and a stop ends its workers."""
        self.ledger = ledger
        self.progress()

    def detach(self) -> None:
        self.ledger = None
        self.progress()

    def idle_s(self) -> float:
        last, ledger = self.last, self.ledger
        if ledger is not None:
            try:
                last = max(last, ray.get(ledger.progressed_at.remote(), timeout=30))
            except Exception:  # a ledger that does not answer shows no progress
                pass
        return time.time() - last

    def check(self) -> str | None:
        """One look: the stall message, or None. Work that waits while nodes start, or while a
        leaked placement group holds what it needs (removed here), is progress."""
        wait = reservations.waiting()
        if wait is None:  # the GCS does not answer: no verdict
            return None
        if wait.launching or (wait and reservations.remove_leaked_groups()):
            self.progress()
            return None
        idle = self.idle_s()
        if idle < self.timeout:
            return None
        if not wait:
            # Work held to given nodes (every decode actor): the GCS's demand leaves it out.
            held = reservations.pending_actors()
            if not held:
                return None
            wait = reservations.Waiting([], held, 0)
        return stall_message(idle, wait)

    def run(self) -> None:
        while not self.done.wait(self.poll):
            try:
                message = self.check()
            except Exception:  # the watchdog must never fail a run
                continue
            if message:
                self.stop(message, "stalled")
                return

    def stop(self, reason: str, kind: str) -> int:
        """Stop the run: its workers (through the ledger, so they refuse to restart) and the
        wait in `call`. Returns how many workers were stopped."""
        self.stalled = reason if kind == "stalled" else self.stalled
        ledger, workers = self.ledger, []
        if ledger is not None:
            try:
                workers = ray.get(ledger.stop.remote(reason, kind), timeout=30)
                for worker in workers:
                    ray.kill(worker, no_restart=True)
            except Exception:
                pass
        self.workers_stopped = len(workers)
        return len(workers)

    def raise_if_stopped(self) -> None:
        """Between steps of a run: a step that Ray kept waiting past a stall goes no further."""
        if self.stalled:
            raise StallError(self.stalled)

    def call(self, fn, *args, **kwargs):
        """fn(*args, **kwargs) in a thread of its own while this one waits: a stall ends the
        wait with StallError even where fn waits inside Ray, and Ctrl+C reaches this thread
        (the main one, in a command) rather than Ray Train's own handler, which exits 0."""
        out: dict = {}
        finished = threading.Event()  # not Thread.join: a join that Ctrl+C interrupted
        # leaves the thread looking finished (CPython 3.11), and the next join returns at once

        def body() -> None:
            try:
                out["value"] = fn(*args, **kwargs)
            except BaseException as e:  # handed to the waiting thread
                out["error"] = e
            finally:
                finished.set()

        threading.Thread(target=body, daemon=True, name="raysys-run").start()
        try:
            while not finished.wait(0.5) and not self.stalled:
                pass
        except KeyboardInterrupt:  # stop the workers, and let fn unwind (a second Ctrl+C: not)
            if self.stop("interrupted (Ctrl+C)", "interrupted"):
                finished.wait(UNWIND_S)
            raise
        if self.stalled:
            if self.workers_stopped:  # their end ends fit(); a wait inside Ray would not end
                finished.wait(UNWIND_S)
            raise StallError(self.stalled)
        if "error" in out:
            raise out["error"]
        return out.get("value")

    def __enter__(self) -> Watchdog:
        if self.timeout > 0:
            threading.Thread(target=self.run, daemon=True, name="raysys-watchdog").start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
