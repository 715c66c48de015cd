"""The run ledger: one small actor per run that the decode actors, the workers and the driver
share.

- The decode actors report the rows they dropped; an epoch over data.max_bad_fraction stops
  the run with a message naming examples.
- Rank 0 sets the epoch a (re)started train stream begins at; every rank registers itself, so
  the driver's watchdog can stop a run that makes no progress, or one the user interrupts
  (train/watchdog.py).
- Rank 0 sends its one-line epoch summaries, which the driver prints (train/console.py).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict

import ray

from raysys.config import DataConfig
from raysys.data.source import Source

EXAMPLES = 5  # undecodable images named per epoch in the ledger's message


@ray.remote(num_cpus=0)
class RunLedger:
    """Pinned to the driver's node (create_ledger), so a lost worker node does not take the
    run's accounting with it."""

    def __init__(self, rows_per_epoch: dict[str, int], max_bad_fraction: float):
        self.rows, self.max_bad = rows_per_epoch, max_bad_fraction
        self.start = 1
        self.seen: dict = defaultdict(int)
        # Per (split, epoch): a count and the first EXAMPLES messages, not every message: a
        # 100-epoch run at 1% bad of 347k train images would otherwise hold ~350k strings.
        self.bad: dict = defaultdict(int)
        self.examples: dict = defaultdict(list)
        self.val_bad: set[str] = set()  # val is decoded at every evaluation: count a row once
        self.decoded: dict = defaultdict(Counter)  # (split, epoch) -> {node: rows decoded}
        self.fatal: str | None = None
        self.fatal_kind = ""  # "bad_data" | "stalled" | "interrupted"
        self.lines: list[str] = []
        self.workers: dict[int, object] = {}  # rank -> its Train worker actor
        self.progressed = 0.0  # the stream's or rank 0's last sign of life

    def set_start(self, epoch: int) -> None:
        """A (re)started train stream begins here; counts of epochs it replays start over."""
        self.start = epoch
        self.progressed = time.time()
        for key in [k for k in self.seen if k[0] == "train" and k[1] >= epoch]:
            self.seen.pop(key)
            self.bad.pop(key, None)
            self.examples.pop(key, None)

    def register(self, rank: int, worker) -> str | None:
        """A worker (re)starting; returns the reason the run was stopped, if it was."""
        self.workers[rank] = worker
        return self.fatal

    def progressed_at(self) -> float:
        """When the stream or rank 0 last showed progress (0: not yet)."""
        return self.progressed

    def stop(self, reason: str, kind: str) -> list:
        """Mark the run stopped ("stalled", "interrupted"); returns the worker actors to end."""
        if self.fatal is None:
            self.fatal, self.fatal_kind = reason, kind
        return list(self.workers.values())

    def start_epoch(self) -> int:
        return self.start

    def record(self, split: str, epoch: int, seen: int, bad: list[str], node: str) -> str | None:
        """Add one decode batch; returns the error message once the epoch is over the limit."""
        key = (split, epoch)
        self.progressed = time.time()
        self.seen[key] += seen
        if split != "train":  # val kept encoded is decoded at every evaluation: count a row once
            bad = [b for b in bad if b not in self.val_bad]
            self.val_bad.update(bad)
        self.bad[key] += len(bad)
        self.examples[key] += bad[:EXAMPLES - len(self.examples[key])]
        self.decoded[key][node] += seen
        limit = self.max_bad * self.rows[split]
        if self.bad[key] > limit and self.fatal is None:
            self.fatal_kind = "bad_data"
            self.fatal = (
                f"{self.bad[key]} of {self.rows[split]} {split} images in epoch {epoch} could "
                f"not be decoded, more than data.max_bad_fraction={self.max_bad:g}. Examples: "
                + "; ".join(self.examples[key]) + ". Fix or remove them and rebuild the "
                "manifest (`raysys manifest`), or raise data.max_bad_fraction")
        return self.fatal

    def bad_count(self, split: str, epoch: int) -> int:
        return self.bad.get((split, epoch), 0)

    def bad_examples(self, split: str, epoch: int) -> list[str]:
        return list(self.examples.get((split, epoch), []))

    def state(self) -> dict:
        return {"fatal": self.fatal, "kind": self.fatal_kind}

    def decoded_by_node(self, split: str, epoch: int) -> dict[str, int]:
        """Rows decoded per node, in a train epoch or in val's decodes so far (epoch 0): where
        decoded images came from, against where the Train workers ran (a row decoded on a
        node without a worker crossed the network as uint8)."""
        return dict(self.decoded[(split, epoch)])

    def log(self, line: str) -> None:
        self.progressed = time.time()
        self.lines.append(line)

    def drain(self) -> list[str]:
        lines, self.lines = self.lines, []
        return lines


def create_ledger(source: Source, data: DataConfig):
    """Pinned to the driver's node: the Train controller lives there too."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = ray.get_runtime_context().get_node_id()
    return RunLedger.options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False)
    ).remote(source.images, data.max_bad_fraction)
