"""Per-trial fixed cost of a sweep: `make demo`'s sweep (experiment 2.3 on the embedded demo
data, micro ViT, 3 trials x 6 epochs) run from a cold process, then each trial's overhead read
from its own files:

    overhead = (last epoch's end - the trial's config.json written) - epochs x steady epoch

where the steady epoch is the median of epochs 2 onwards. It is what a trial pays beyond its
epochs before it ends: Train's controller and worker group, the train function's imports, the
stream's start and the first epoch's warm-up. The teardown after the last epoch is not in it
(no file marks it); the sweep's wall time is printed beside.

    python benchmarks/trial_overhead.py [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from raysys.report.history import read_history


def overheads(sweep_dir: Path) -> list[dict]:
    rows = []
    for run in sorted((sweep_dir / "runs").iterdir()):
        log = read_history(str(run))
        if not log:
            continue
        start = (run / "config.json").stat().st_mtime
        steady = float(np.median([h["time/epoch_s"] for h in log[1:]])) if len(log) > 1 \
            else log[0]["time/epoch_s"]
        wall = log[-1]["time/end"] - start
        rows.append({"trial": run.name, "epochs": len(log), "wall_s": wall,
                     "steady_epoch_s": steady, "overhead_s": wall - len(log) * steady})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=None, help="sweep folder (default: a temp dir)")
    a = p.parse_args()
    out = a.out or Path(tempfile.mkdtemp(prefix="trial_overhead_")) / "sweep"
    t = time.time()
    subprocess.run([sys.executable, "sweeps/label_smoothing.py", "--out", str(out)], check=True,
                   cwd=Path(__file__).resolve().parents[1],
                   env=dict(os.environ, WANDB_MODE="disabled"))
    wall = time.time() - t
    rows = overheads(out)
    print(f"\n{'trial':14s} {'epochs':>6s} {'wall s':>7s} {'steady epoch s':>15s} "
          f"{'overhead s':>11s}")
    for r in rows:
        print(f"{r['trial']:14s} {r['epochs']:6d} {r['wall_s']:7.1f} {r['steady_epoch_s']:15.1f} "
              f"{r['overhead_s']:11.1f}")
    print(f"mean overhead per trial: {np.mean([r['overhead_s'] for r in rows]):.1f} s (goal "
          f"<= 15 s); sweep wall time {wall:.0f} s from a cold process")


if __name__ == "__main__":
    main()
