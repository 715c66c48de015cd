"""One sweep runner for the four experiments: Ray Tune + Optuna (seeded TPE) + ASHA over
trials that each build and fit a TorchTrainer (Ray Train V2: a Tune function trial, metrics
forwarded by TuneReportCallback).

Every trial's outputs are written by its rank 0 as it trains (train/loop.py), because ASHA's
stop kills the trial actor before `fit()` returns; the sweep report is built from those files.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time

import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from raysys import storage
from raysys.config import Config
from raysys.data.stream import keep_ray_data_actors_here
from raysys.errors import Interrupted, StallError
from raysys.parallel import BackgroundImport
from raysys.report.history import run_status
from raysys.sweep.experiments import Experiment
from raysys.sweep.trial import run_trial
from raysys.train.cluster import check_placement, growth_capacity, run_demand
from raysys.train.reservations import remove_leaked_groups, withdraw_train_request
from raysys.train.tracking import wandb_callbacks
from raysys.train.watchdog import Watchdog

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

    # Set by the sweep's first result (a trial trains). On the class: Tune pickles callbacks.
    first_result = threading.Event()

    def __init__(self, epochs: int):
        self.epochs, self.started = epochs, {}

    def on_trial_start(self, iteration, trials, trial, **info):
        self.started[trial.trial_id] = time.time()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        EpochLines.first_result.set()
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


# --- what a sweep leaves behind, its stalls and Ctrl+C -----------------------------------------

class SweepGuard(tune.Callback):
    """On the driver, in Tune's loop:

    - every few seconds, removes the placement groups that stopped trials' controllers left,
      and withdraws their runs' resource requests once a trial ends (train/reservations.py):
      an ASHA stop kills a trial's controller, not its job;
    - the sweep's own stall: no trial running, trials waiting, and no progress for
      run.stall_timeout_s while the cluster cannot place what they need (a trial's own run is
      watched inside the trial);
    - Ctrl+C: noted, so the sweep ends with raysys's resume command. Tune stops the experiment
      and saves its state either way (for a stall, through its SIGUSR1 handler).

    Tune pickles its callbacks with the sweep and runs the unpickled copies when it is
    restored: `SweepGuard.active` is the instance Tune set up."""

    CLEAN_EVERY_S = 2.0
    active: SweepGuard | None = None

    def __init__(self, stall_timeout_s: float):
        self.timeout = stall_timeout_s

    def __getstate__(self) -> dict:
        return {"timeout": self.timeout}

    def setup(self, **info):
        SweepGuard.active = self
        self.dog = Watchdog(self.timeout)  # its check(), from Tune's loop: no thread
        self.cleaned, self.interrupted = 0.0, False
        if threading.current_thread() is not threading.main_thread():
            return
        tune_handler = signal.getsignal(signal.SIGINT)  # set by Tune just before setup()

        def noted(signum, frame):
            self.interrupted = True
            if callable(tune_handler):
                tune_handler(signum, frame)

        signal.signal(signal.SIGINT, noted)

    def on_step_end(self, iteration, trials, **info):
        now = time.time()
        if now - self.cleaned >= self.CLEAN_EVERY_S:
            self.cleaned = now
            remove_leaked_groups()
        if any(t.status == "RUNNING" for t in trials) or not any(
                t.status == "PENDING" for t in trials):
            self.dog.progress()
        elif self.timeout > 0 and self.dog.stalled is None:
            message = self.dog.check()
            if message:
                self.dog.stalled = message
                signal.raise_signal(signal.SIGUSR1)  # Tune: stop, save the state

    def on_trial_start(self, iteration, trials, trial, **info):
        self.dog.progress()

    def on_trial_complete(self, iteration, trials, trial, **info):
        run_id = (trial.last_result or {}).get("train/run_id")
        if run_id:
            withdraw_train_request(run_id)

    on_trial_error = on_trial_complete


def quiet_tune_restore_hint() -> None:
    """Tune's "Resume experiment with: Tuner.restore(path=..., trainable=...)" names an API the
    user does not call: raysys prints its own command (cli.py)."""
    log = logging.getLogger("ray.tune.tune")
    if not any(getattr(f, "raysys", False) for f in log.filters):
        hint = logging.Filter()
        hint.filter = lambda record: "Tuner.restore" not in record.getMessage()
        hint.raysys = True
        log.addFilter(hint)


# --- the sweep --------------------------------------------------------------------------------

def run_sweep(exp: Experiment, base: Config, sweep_dir: str, *, resume: bool = False,
              verbose: bool = False) -> str:
    """Run (or resume) the sweep; returns the path of its summary.md. Ctrl+C raises Interrupted,
    a stall StallError; either way Tune has saved the sweep, and `--resume` continues it."""
    sweep_dir = storage.absolute(sweep_dir)
    SweepGuard.active = None
    quiet_tune_restore_hint()
    check_placement(base)  # refused before any trial starts, not once per trial
    keep_ray_data_actors_here()  # on the head: trials' GPU nodes must be free to idle out
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
                callbacks=[EpochLines(base.optim.epochs), SweepGuard(base.run.stall_timeout_s),
                           *wandb_callbacks(base, exp.name, sweep_dir)],
                verbose=1 if verbose else 0),
        )
    # The reports' stack (matplotlib, scikit-learn, timm) loads once a trial trains.
    stack = BackgroundImport("raysys.sweep.report", "raysys.report.floors", "raysys.model.vit")
    EpochLines.first_result = stack.go
    try:
        results = tuner.fit()
    finally:
        stack.cancel()  # what it has not begun, this thread imports when it needs it
    from raysys.report.floors import compute_floors
    from raysys.sweep.report import write_report

    remove_leaked_groups(wait_s=10)  # the last trials': a stopped trial cannot clean up
    guard = SweepGuard.active
    if guard is not None and guard.interrupted:
        raise Interrupted(sweep_dir)
    if guard is not None and guard.dog.stalled:
        raise StallError(guard.dog.stalled)
    return write_report(exp, results, sweep_dir, metric=base.run.metric, max_t=base.optim.epochs,
                        floors=compute_floors(base.data, base.run.seed))
