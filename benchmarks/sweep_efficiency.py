"""ASHA against the full grid, side by side in one run, on the embedded demo data: the same
configs and seeds, 2 trials at a time; the grid runs every config to max_t (ASHA with grace =
max_t never stops a trial). Reports whether ASHA finds the grid's best configuration and the
share of the grid's epochs it spent (target <= 50%).

    python benchmarks/sweep_efficiency.py [--epochs 27] [--grace-period 3] [--reduction-factor 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd
import ray

from raysys.config import DataConfig, load_config
from raysys.data.demo import generate
from raysys.sweep.experiments import Experiment, grid
from raysys.sweep.runner import run_sweep
from raysys.train.cluster import quiet_ray
from raysys.train.run import ensure_manifest

# Twelve configurations: learning rate x label smoothing, in a neutral order (not best-first).
LRS = [1e-3, 3e-5, 4e-3, 1e-4, 2e-3, 3e-4]
SMOOTHING = [0.0, 0.2]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--epochs", type=int, default=27)
    p.add_argument("--grace-period", type=int, default=3,
                   help="ASHA's first rung: epoch 1 ranks these configs poorly (the fastest "
                   "learning rates are still warming up)")
    p.add_argument("--reduction-factor", type=float, default=3)
    p.add_argument("--concurrent", type=int, default=2)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sweep_eff_"))
    index = generate(tmp / "demo", size=64, images=1200)
    manifest = ensure_manifest(DataConfig(index_dir=str(index), split_by="group"), str(tmp))
    space, points = grid(optim__lr=LRS, loss__label_smoothing=SMOOTHING)
    exp = Experiment("lr_ls_grid", "ASHA vs grid", space, points)
    quiet_ray(False)
    # Enough logical CPUs for 2 trials side by side (each: worker, decode actor, stream task).
    ray.init(num_cpus=6, log_to_driver=False)
    results, tables = {}, {}
    for label, grace in (("full grid", args.epochs), ("ASHA", args.grace_period)):
        cfg = load_config("micro", sets=[f"data.manifest={manifest}",
                                         f"optim.epochs={args.epochs}",
                                         f"sweep.max_concurrent={args.concurrent}",
                                         f"sweep.reduction_factor={args.reduction_factor}",
                                         f"sweep.grace_period={grace}"])
        t = time.time()
        run_sweep(exp, cfg, str(tmp / label.replace(" ", "_")))
        trials = pd.read_csv(tmp / label.replace(" ", "_") / "trials.csv")
        winner = trials.loc[trials["val/top1"].idxmax()]
        results[label] = {"epochs": int(trials["epochs"].sum()),
                          "minutes": (time.time() - t) / 60,
                          "winner": (winner["param:optim.lr"],
                                     winner["param:loss.label_smoothing"]),
                          "best": winner["val/top1"],
                          "stopped": int((trials["status"] == "stopped early").sum())}
        tables[label] = trials
    g, a = results["full grid"], results["ASHA"]
    print(f"\n{'':10s} {'epochs':>7s} {'minutes':>8s} {'stopped':>8s} {'winner (lr, ls)':>18s} "
          f"{'val/top1':>9s}")
    for label, r in results.items():
        print(f"{label:10s} {r['epochs']:7d} {r['minutes']:8.1f} {r['stopped']:8d} "
              f"{r['winner'][0]:9.0e}, {r['winner'][1]:4.1f} {r['best']:9.4f}")
    grid_rank = tables["full grid"].sort_values("val/top1", ascending=False)
    rank = [tuple(x) for x in grid_rank[["param:optim.lr", "param:loss.label_smoothing"]]
            .itertuples(index=False)].index(a["winner"]) + 1
    print(f"ASHA's winner is the grid's #{rank} of {len(grid_rank)} (same as the grid's best: "
          f"{g['winner'] == a['winner']}); ASHA spent {a['epochs'] / g['epochs']:.0%} of the "
          "grid's epochs (target <= 50%)")
    print(f"folders: {tmp}")


if __name__ == "__main__":
    main()
