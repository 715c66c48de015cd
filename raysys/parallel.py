"""One process-pool loop for the per-image work outside Ray: header reads (manifest), the
floors' pixel features and re-encoding (pack). PIL holds the GIL while it parses and decodes,
so threads do not scale; processes over chunks of a few hundred images do."""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from typing import Any, TypeVar

T = TypeVar("T")
CHUNK = 256  # images per task: large enough that pickling a task costs little beside it


def _apply(fn: Callable[..., T], args: tuple, items: Sequence) -> list[T]:
    return [fn(item, *args) for item in items]


def map_chunks(fn: Callable[..., T], items: Sequence, *args: Any, what: str,
               processes: int | None = None, chunk: int = CHUNK) -> Iterator[T]:
    """fn(item, *args) for every item, in order, over chunks in a process pool (all cores by
    default). A few chunks run in this process: a pool costs more to start than they take."""
    processes = processes or os.cpu_count() or 1
    chunks = [items[i:i + chunk] for i in range(0, len(items), chunk)]
    work = partial(_apply, fn, args)
    if len(chunks) <= 2 or processes == 1:
        for part in chunks:
            yield from work(part)
        return
    with ProcessPoolExecutor(processes) as pool:
        for part in progress(pool.map(work, chunks), len(chunks), what):
            yield from part


def progress(items: Iterable, total: int, what: str) -> Iterator:
    """A one-line progress bar on a terminal; silent in logs and CI."""
    show = sys.stderr.isatty() and total > 20
    for i, item in enumerate(items, 1):
        if show and (i == total or i % max(1, total // 50) == 0):
            bar = "#" * (30 * i // total)
            print(f"\r{what:8s} [{bar:30s}] {i}/{total}", end="", file=sys.stderr, flush=True)
        yield item
    if show:
        print(file=sys.stderr)


class BackgroundImport:
    """Modules imported in a daemon thread once `go` is set: the report's stack (matplotlib,
    scikit-learn, timm; ~5 s of CPU) while the driver only waits on a run that trains, not after
    it, and not while Ray starts the run's processes. After `cancel()` (training ended) it
    begins no further module: the caller imports what it needs itself, and a failed import is
    left for that import to raise."""

    def __init__(self, *modules: str):
        self.modules, self.go, self.cancelled = modules, threading.Event(), False
        self.thread = threading.Thread(target=self._work, name="background-import", daemon=True)
        self.thread.start()

    def _work(self) -> None:
        self.go.wait()
        for name in self.modules:
            if self.cancelled:
                return
            with contextlib.suppress(Exception):
                importlib.import_module(name)

    def cancel(self) -> None:
        """Stops before the next module and waits for the one under way (the caller would
        wait on its import lock anyway): no thread is left importing at interpreter exit."""
        self.cancelled = True
        self.go.set()
        self.thread.join(timeout=60)
