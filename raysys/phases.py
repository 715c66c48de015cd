"""A run's start-up and teardown, timed. With RAYSYS_PHASES=FILE, every process of a run (the
command, Tune's trial actor, each Train worker) appends one JSON line as each phase ends, named
for what just finished; benchmarks/fixed_cost.py reads them. Unset, a mark costs one
environment lookup.

Ray's processes inherit the variable from the process that started Ray (a local Ray), or get
it through the run's runtime environment (train/connect.py forwards it)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator

ENV = "RAYSYS_PHASES"


def mark(phase: str, run: str = "") -> None:
    path = os.environ.get(ENV)
    if path:
        line = json.dumps({"phase": phase, "t": time.time(), "pid": os.getpid(), "run": run})
        try:  # one short append per line: whole lines from every process
            with open(path, "a") as f:
                f.write(line + "\n")
        except OSError:  # a timing aid never fails a run (a folder another node lacks)
            pass


def on_first(items: Iterable, phase: str, run: str = "") -> Iterator:
    """The same items, marking `phase` when the first one arrives."""
    it = iter(items)
    for item in it:
        mark(phase, run)
        yield item
        break
    yield from it
