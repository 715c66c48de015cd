"""One sweep runner for the four experiments: Ray Tune + Optuna (seeded TPE) + ASHA over
trials that each build and fit a TorchTrainer (Ray Train V2: a Tune function trial, metrics
forwarded by TuneReportCallback).

Every trial's outputs are written by its rank 0 as it trains (train/loop.py), because ASHA's
stop kills the trial actor before `fit()` returns; the sweep report is built from those files.
"""

from __future__ import annotations

import math
import time

import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from raysys import storage
from raysys.config import Config
from raysys.report.floors import compute_floors
from raysys.report.history import run_status
from raysys.sweep.experiments import Experiment
from raysys.sweep.report import write_report
from raysys.sweep.trial import run_trial
from raysys.train.cluster import check_placement, growth_capacity, run_demand
from raysys.train.tracking import wandb_callbacks

# --- how many trials at once ------------------------------------------------------------------

TRIAL_CPUS = 0.1  # the trial function only waits on its TorchTrainer; Tune refuses 0


def trial_demand(cfg: Config) -> dict[str, float]:
    """One run's demand plus the trial function's own CPU share."""
    run = run_demand(cfg)
    return run | {"CPU": run["CPU"] + TRIAL_CPUS}


def concurrency(cfg: Config) -> tuple[int, str]:
    """max_concurrent_trials from the user's cap and from what the cluster can *grow to*, not
    from what it holds at launch (0 GPUs on an autoscaling cluster that starts empty): trials
    beyond the current size wait in PENDING while nodes start."""
    want = cfg.sweep.max_concurrent
    demand = trial_demand(cfg)
    grown = growth_capacity()
    if grown is None and cfg.sweep.max_nodes:
        return want, f"up to {cfg.sweep.max_nodes} worker nodes (sweep.max_nodes)"
    res, where = grown or (ray.cluster_resources(), "current cluster")
    fits = min(math.floor(res.get(k, 0.0) / v) for k, v in demand.items() if v > 0)
    return max(1, min(want, fits)), f"{where}: {res.get('CPU', 0):g} CPUs, " \
                                    f"{res.get('GPU', 0):g} GPUs"


# --- the console: one line per trial per epoch ------------------------------------------------

class EpochLines(tune.Callback):
    """On the driver: one line per trial per epoch, and one when a trial ends."""

    def __init__(self, epochs: int):
        self.epochs, self.started = epochs, {}

    def on_trial_start(self, iteration, trials, trial, **info):
        self.started[trial.trial_id] = time.time()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        e = result.get("epoch", 0)
        per_epoch = (time.time() - self.started.get(trial.trial_id, time.time())) / max(e, 1)
        print(f"[{trial.trial_id}] epoch {e}/{self.epochs}  loss {result['train/loss']:.4f}  "
              f"val top-1 {result['val/top1']:.4f}  bal {result['val/balanced_acc']:.4f}  "
              f"{result['train/img_per_s']:.0f} img/s  ETA {per_epoch * (self.epochs - e):.0f} s",
              flush=True)

    def on_trial_complete(self, iteration, trials, trial, **info):
        last = trial.last_result or {}
        how = run_status([last], self.epochs) if "epoch" in last else "error"
        print(f"[{trial.trial_id}] {how} at epoch {last.get('epoch', 0)}", flush=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        print(f"[{trial.trial_id}] failed: {str(trial.error_file or '')}", flush=True)


# --- the sweep --------------------------------------------------------------------------------

def run_sweep(exp: Experiment, base: Config, sweep_dir: str, *, resume: bool = False,
              verbose: bool = False) -> str:
    """Run (or resume) the sweep; returns the path of its summary.md."""
    sweep_dir = storage.absolute(sweep_dir)
    check_placement(base)  # refused before any trial starts, not once per trial
    storage.makedirs(sweep_dir)
    fs, path = storage.filesystem(sweep_dir)
    uri_fs = fs if storage.is_uri(sweep_dir) else None
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, base=base.to_dict(), sweep_dir=sweep_dir),
        {"cpu": TRIAL_CPUS})  # Train workers reserve their own resources
    if resume and tune.Tuner.can_restore(path, storage_filesystem=uri_fs):
        print(f"resuming sweep at {sweep_dir}", flush=True)
        tuner = tune.Tuner.restore(path, trainable, resume_unfinished=True,
                                   resume_errored=True, storage_filesystem=uri_fs)
    else:
        n = exp.num_samples(base.sweep.samples)
        at_once, why = concurrency(base)
        s = base.sweep
        print(f"sweep {exp.name}: {n} trials, {at_once} at a time ({why}); ASHA on epoch "
              f"(grace {s.grace_period}, factor {s.reduction_factor:g}, max "
              f"{base.optim.epochs}); metric {base.run.metric}; each trial: "
              f"{base.batch_line()}", flush=True)
        tuner = tune.Tuner(
            trainable,
            param_space=exp.space,
            tune_config=tune.TuneConfig(
                metric=base.run.metric, mode="max", num_samples=n,
                max_concurrent_trials=at_once,
                search_alg=OptunaSearch(points_to_evaluate=exp.points, seed=s.seed),
                scheduler=ASHAScheduler(time_attr="epoch", max_t=base.optim.epochs,
                                        grace_period=min(s.grace_period, base.optim.epochs),
                                        reduction_factor=s.reduction_factor),
                trial_dirname_creator=lambda t: t.trial_id),
            run_config=tune.RunConfig(
                name=storage.basename(sweep_dir), storage_path=storage.parent(path),
                storage_filesystem=uri_fs,
                failure_config=tune.FailureConfig(max_failures=base.run.max_failures),
                callbacks=[EpochLines(base.optim.epochs),
                           *wandb_callbacks(base, exp.name, sweep_dir)],
                verbose=1 if verbose else 0),
        )
    results = tuner.fit()
    return write_report(exp, results, sweep_dir, metric=base.run.metric, max_t=base.optim.epochs,
                        floors=compute_floors(base.data, base.run.seed))
