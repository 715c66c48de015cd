"""The run's console, both ends: rank 0 says one line per epoch (Console), the ledger holds it,
and the driver prints it and keeps it in the run folder's console.log (EchoLedger). Ray's own
worker logs stay out of the user's terminal unless --verbose."""

from __future__ import annotations

import threading

import ray

from raysys import storage


class Console:
    """Rank 0's lines: printed (worker log) and sent to the ledger. Other ranks say nothing."""

    def __init__(self, rank: int, ledger, run_name: str):
        self.on, self.ledger, self.run_name = rank == 0, ledger, run_name

    def __call__(self, line: str) -> None:
        if self.on:
            print(line, flush=True)
            self.ledger.log.remote(f"[{self.run_name}] {line}")


class EchoLedger:
    """While fit() blocks, print the lines rank 0 sends to the ledger (the driver's console),
    and keep them, with where Ray's own logs are, in the run folder's console.log."""

    def __init__(self, ledger, run_dir: str, first_line: threading.Event | None = None,
                 interval_s: float = 0.5):
        self.ledger, self.run_dir, self.interval = ledger, run_dir, interval_s
        self.first_line = first_line or threading.Event()  # set once a line has come
        self.lines = [f"Ray's logs: {ray_logs_dir()} (--verbose prints them)"]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            self.flush()
            self.stop.wait(self.interval)

    def flush(self) -> None:
        try:
            for line in ray.get(self.ledger.drain.remote(), timeout=30):
                print(line, flush=True)
                self.lines.append(line)
                self.first_line.set()
        except Exception:  # the console must never fail a run
            pass

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()  # its last drain ends within ray.get's timeout
        self.flush()
        path = storage.join(self.run_dir, "console.log")
        try:  # a resumed run adds its lines to the earlier attempts'
            earlier = storage.read_text(path) if storage.exists(path) else ""
            storage.write_text(path, earlier + "\n".join(self.lines) + "\n")
        except Exception as e:  # a missing console copy is not worth losing the run's result
            print(f"raysys: could not write console.log in {self.run_dir}: {e}", flush=True)


def ray_logs_dir() -> str:
    """The driver node's Ray log folder. Private API: Ray has no public call for it
    (ray.init's RayContext.address_info names the session only when this process started
    Ray, not when it joined; ray.get_runtime_context() has no log path). A test fails if the
    private attribute goes away (tests/train/test_ray_private.py)."""
    try:
        return ray._private.worker._global_node.get_logs_dir_path()
    except Exception:  # the console must never fail a run
        return "unknown"
