"""A run's fixed cost, phase by phase, beside the same work in a bare loop, in one run:

1. `raysys train` (micro preset, the demo data, 2 epochs) from a cold process: each phase
   from process start to the first batch, the epochs, and the teardown to the process's exit.
2. The bare loop: one process, no Ray, the same manifest, decode (raysys.data.decode.Crops),
   model, step and evaluation (raysys.model.step) for the same epochs.
3. `make demo`'s sweep (experiment 2.3: 3 trials x 6 epochs): each trial's phases, from the
   trial function's start to its last epoch, and its overhead beyond its epochs.

Every process of a run writes its phases (RAYSYS_PHASES, raysys/phases.py).

    python benchmarks/fixed_cost.py [--epochs 2] [--no-sweep] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO_INDEX = ROOT / "results" / "demo" / "index_files"
BARE = "bare loop"


def read_marks(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def timeline(marks: list[dict], t0: float, end: float) -> list[tuple[str, float]]:
    """(phase, seconds since the previous phase), in time order, the exit last."""
    rows, last = [], t0
    for m in sorted(marks, key=lambda m: m["t"]):
        rows.append((m["phase"], m["t"] - last))
        last = m["t"]
    rows.append(("process exit", end - last))
    return rows


def first_batch_s(marks: list[dict], t0: float) -> float:
    return min(m["t"] for m in marks if m["phase"].endswith("first batch")) - t0


def timed(cmd: list[str], marks: Path, log: Path) -> tuple[float, float]:
    """Run a cold process that writes its phases to `marks`; (start, exit) wall times."""
    t0 = time.time()
    with log.open("w") as f:
        subprocess.run(cmd, check=True, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                       env=dict(os.environ, RAYSYS_PHASES=str(marks), WANDB_MODE="disabled"))
    return t0, time.time()


# --- the bare loop (the child process) ----------------------------------------------------------

def bare_loop(manifest: str, epochs: int) -> None:
    """The run's work with nothing around it: decode every batch in this process, step, evaluate."""
    import numpy as np
    import torch

    from raysys.config import load_config, steps_per_epoch
    from raysys.data.decode import Crops
    from raysys.data.manifest import read_manifest
    from raysys.model.step import evaluate, make_trainee, train_one_epoch
    from raysys.phases import mark, on_first
    from raysys.train.shards import KeyedDraws

    mark("imports", BARE)
    cfg = load_config("micro", sets=[f"data.manifest={manifest}", f"optim.epochs={epochs}"])
    m = read_manifest(manifest)
    m["short"] = np.minimum(m["width"], m["height"])
    train, val = m[m.split == "train"], m[m.split == "val"]
    k = int(m["label"].max()) + 1
    counts = np.bincount(train["label"], minlength=k).astype(np.float64)
    batch, spe = cfg.global_batch, steps_per_epoch(len(train), cfg.global_batch)
    mark("manifest read", BARE)
    t = make_trainee(cfg, counts, torch.device("cpu"), wrap=lambda model: model,
                     steps_per_epoch=spe)
    mark("model built", BARE)

    def batches(rows, epoch: int, train_: bool):
        crops, collate = Crops(cfg.data, cfg.augment, 0, train_), KeyedDraws(0, train_)
        for i in range(0, len(rows) - (batch - 1 if train_ else 0), batch):
            part = rows.iloc[i:i + batch]
            images, _, _ = crops([None] * len(part), list(part["path"]), part["short"].to_numpy(),
                                 np.full(len(part), epoch), part["row"].to_numpy())
            yield collate({"image": images, "label": part["label"].to_numpy(),
                           "row": part["row"].to_numpy(), "epoch": np.full(len(part), epoch)})

    prior = torch.log(torch.tensor(counts / counts.sum(), dtype=torch.float32))
    for epoch in range(1, epochs + 1):
        order = train.sample(frac=1.0, random_state=epoch)
        train_one_epoch(t, on_first(batches(order, epoch, True), "first batch", BARE)
                        if epoch == 1 else batches(order, epoch, True), torch.device("cpu"))
        evaluate(t.raw, batches(val, 0, False), t.augment, prior, None, torch.device("cpu"))
        mark(f"epoch {epoch} reported", BARE)


# --- the measurements ----------------------------------------------------------------------------

def ensure_demo() -> Path:
    if not DEMO_INDEX.is_dir():
        from raysys.data.demo import generate

        generate(DEMO_INDEX.parent, size=64, images=1200)  # as `make demo` makes it
    return DEMO_INDEX


def measure_run(work: Path, epochs: int) -> dict:
    marks = work / "run.phases"
    cmd = [sys.executable, "-m", "raysys.cli", "train", "--preset", "micro", "--index-dir",
           str(ensure_demo()),
           "--set", "data.split_by=group", "--epochs", str(epochs), "--out", str(work / "run")]
    t0, end = timed(cmd, marks, work / "run.log")
    got = read_marks(marks)
    return {"wall_s": end - t0, "first_batch_s": first_batch_s(got, t0),
            "phases": timeline(got, t0, end)}


def measure_bare(work: Path, epochs: int) -> dict:
    manifest = next((work / "run" / "data").glob("*/manifest.parquet"))
    marks = work / "bare.phases"
    t0, end = timed([sys.executable, __file__, "--bare", str(manifest), "--epochs",
                     str(epochs)], marks, work / "bare.log")
    got = read_marks(marks)
    return {"wall_s": end - t0, "first_batch_s": first_batch_s(got, t0),
            "phases": timeline(got, t0, end)}


def measure_sweep(work: Path) -> dict:
    marks = work / "sweep.phases"
    t0, end = timed([sys.executable, "sweeps/label_smoothing.py", "--out", str(work / "sweep")],
                    marks, work / "sweep.log")
    got = read_marks(marks)
    # A trial's marks: its trial function's start, from the same Tune actor (pid) as its run's
    # first marks, then its run folder's (the worker's too).
    starts = {m["pid"]: m["t"] for m in got if m["phase"] == "trial starts"}
    trials = []
    for run in sorted({m["run"] for m in got if m["run"]}):
        mine = sorted((m for m in got if m["run"] == run), key=lambda m: m["t"])
        start = starts.get(mine[0]["pid"], mine[0]["t"])
        ends = [m["t"] for m in mine if m["phase"].endswith("reported")]
        if not ends:  # a trial that never finished an epoch has no fixed cost to read
            continue
        history = json.loads((Path(run) / "training_log.json").read_text())
        steady = sorted(h["time/epoch_s"] for h in history[1:])[len(history[1:]) // 2] \
            if len(history) > 1 else history[0]["time/epoch_s"]
        trials.append({"trial": Path(run).name, "epochs": len(ends),
                       "first_batch_s": first_batch_s(mine, start),
                       "overhead_s": max(ends) - start - len(ends) * steady,
                       "phases": timeline([{"phase": "trial starts", "t": start}, *mine],
                                          start, max(m["t"] for m in mine))[:-1]})
    return {"wall_s": end - t0, "trials": trials}


def print_side_by_side(run: dict, bare: dict) -> None:
    print(f"\n{'raysys train (s)':42s} {'':>7s}   {'bare loop (s)':30s}")
    left, right = run["phases"], bare["phases"]
    for i in range(max(len(left), len(right))):
        a = f"{left[i][0]:42s} {left[i][1]:7.1f}" if i < len(left) else " " * 50
        b = f"{right[i][0]:30s} {right[i][1]:7.1f}" if i < len(right) else ""
        print(f"{a}   {b}")
    print(f"{'to the first batch':42s} {run['first_batch_s']:7.1f}   {'':30s} "
          f"{bare['first_batch_s']:7.1f}")
    print(f"{'whole process':42s} {run['wall_s']:7.1f}   {'':30s} {bare['wall_s']:7.1f}")


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--no-sweep", action="store_true", help="skip the demo sweep (~2.5 min)")
    p.add_argument("--work", type=Path, default=None, help="default: a temporary folder")
    p.add_argument("--bare", help=argparse.SUPPRESS)  # the bare loop's child process
    a = p.parse_args(argv)
    if a.bare:
        bare_loop(a.bare, a.epochs)
        return {}
    # absolute: the child processes run in the project folder, Tune's trials in their own
    work = (a.work or Path(tempfile.mkdtemp(prefix="fixed_cost_"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    out = {"run": measure_run(work, a.epochs)}
    out["bare"] = measure_bare(work, a.epochs)
    print_side_by_side(out["run"], out["bare"])
    if not a.no_sweep:
        out["sweep"] = measure_sweep(work)
        print(f"\n`make demo`'s sweep: {out['sweep']['wall_s']:.0f} s from a cold process")
        for t in out["sweep"]["trials"]:
            print(f"\ntrial {t['trial']}: {t['epochs']} epochs, first batch after "
                  f"{t['first_batch_s']:.1f} s, overhead beyond its epochs {t['overhead_s']:.1f} s")
            for name, s in t["phases"]:
                print(f"  {name:40s} {s:7.1f}")
    (work / "fixed_cost.json").write_text(json.dumps(out, indent=1))
    print(f"\njson: {work / 'fixed_cost.json'}")
    return out


if __name__ == "__main__":
    main()
