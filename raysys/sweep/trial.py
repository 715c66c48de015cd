"""One sweep trial: a Tune function trial that fits one run (Ray Train V2: metrics forwarded to
Tune by TuneReportCallback). Tune imports this module in every trial actor, so it stays light:
the report and its plotting stack stay in the sweep's driver (runner.py)."""

from __future__ import annotations

import ray.train
from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback

from raysys import storage
from raysys.config import Config, apply_overrides, nest, validate
from raysys.phases import mark
from raysys.train.run import fit_trainer
from raysys.train.watchdog import Watchdog


class RunIdToTune(ray.train.UserCallback):
    """Each result Tune gets names the trial's Train run, whose resource request the sweep's
    driver withdraws once the trial ends (train/reservations.py: a stopped trial's controller
    is killed before it can). Listed before TuneReportCallback, which forwards metrics[0]."""

    def after_report(self, run_context, metrics, checkpoint):
        metrics[0]["train/run_id"] = run_context.run_id


def run_trial(params: dict, base: dict, sweep_dir: str) -> None:
    """This trial's config, ledger and TorchTrainer, watched for stalls. The run folder and the
    Train run name are fixed per trial, so a restored trial resumes from its own latest
    checkpoint instead of epoch 1."""
    mark("trial starts")
    trial_id = tune.get_context().get_trial_id()
    cfg = validate(apply_overrides(Config.from_dict(base), nest(params) | {"run": {
        "name": trial_id, "out": storage.join(sweep_dir, "runs", trial_id),
        "wandb": False}}))  # W&B logs from the Tune driver (WandbLoggerCallback)
    callbacks = [RunIdToTune(), TuneReportCallback()]  # made here: it reads the Tune session
    with Watchdog(cfg.run.stall_timeout_s) as dog:
        dog.call(fit_trainer, cfg, dog, callbacks=callbacks, echo=False)
