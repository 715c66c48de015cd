"""ASHA against the full grid, side by side in one run, on the embedded demo data: the same
configs, the same seeds; the grid runs every config to max_t (ASHA with grace = max_t never
stops a trial). Reports whether both pick the same winner and the share of the grid's epochs
that ASHA spent (target <= 50%).

    python benchmarks/sweep_efficiency.py [--epochs 6] [--reduction-factor 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd
from raysys.train import ensure_manifest, init_ray

from raysys.config import load_config
from raysys.demo_data import generate
from raysys.tune import SweepSpec, grid, run_sweep


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--metric", default="val/top1")
    p.add_argument("--reduction-factor", type=float, default=3)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sweep_eff_"))
    manifest = ensure_manifest(generate(tmp / "demo", size=64, images=1200), tmp / "demo",
                               "group")
    # Six learning rates in a neutral order (not best-first): ASHA sees them one at a time.
    space, points = grid(optim__lr=[1e-3, 3e-5, 4e-3, 1e-4, 2e-3, 3e-4])
    spec = SweepSpec("lr_grid", "ASHA vs grid", space, points)
    base = load_config("micro", sets=[f"data.manifest={manifest}",
                                      f"optim.epochs={args.epochs}"])
    init_ray()
    results = {}
    for label, grace in (("full grid", args.epochs), ("ASHA", 1)):
        t = time.time()
        run_sweep(spec, base, tmp / label.replace(" ", "_"), grace_period=grace,
                  reduction_factor=args.reduction_factor, metric=args.metric)
        trials = pd.read_csv(tmp / label.replace(" ", "_") / "trials.csv")
        winner = trials.loc[trials[args.metric].idxmax()]
        results[label] = {"epochs": int(trials["epochs"].sum()), "minutes": (time.time() - t) / 60,
                          "winner": winner["param:optim.lr"], "best": winner[args.metric],
                          "stopped": int((trials["status"] == "stopped early (ASHA)").sum())}
    g, a = results["full grid"], results["ASHA"]
    print(f"\n{'':10s} {'epochs':>7s} {'minutes':>8s} {'stopped':>8s} {'winner lr':>10s} "
          f"{args.metric:>10s}")
    for label, r in results.items():
        print(f"{label:10s} {r['epochs']:7d} {r['minutes']:8.1f} {r['stopped']:8d} "
              f"{r['winner']:10.0e} {r['best']:10.4f}")
    print(f"same winner: {g['winner'] == a['winner']}; ASHA spent {a['epochs'] / g['epochs']:.0%}"
          f" of the grid's epochs (target <= 50%)")


if __name__ == "__main__":
    main()
