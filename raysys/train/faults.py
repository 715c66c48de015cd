"""The test-only fault hook: the reliability tests kill a Train worker partway through an
epoch with RAYSYS_FAULT set. Does nothing unless it is set."""

from __future__ import annotations

import os
import threading
import time

FAULT_ENV = "RAYSYS_FAULT"  # "rank=R,epoch=E,after_s=S" -> os._exit(1) once per run folder


def fault_point(rank: int, epoch: int, run_dir: str) -> None:
    """Kill this worker process `after_s` seconds into `epoch` on `rank`, once per run folder
    (a marker file there says it fired), so the restarted run goes on."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    want = dict(p.split("=") for p in spec.split(","))
    marker = os.path.join(run_dir, ".fault-fired")
    if int(want["rank"]) != rank or int(want["epoch"]) != epoch or os.path.exists(marker):
        return

    def die():
        time.sleep(float(want.get("after_s", 1)))
        open(marker, "w").close()
        os._exit(1)

    threading.Thread(target=die, daemon=True).start()
