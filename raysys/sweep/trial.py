"""One sweep trial: a Tune function trial that fits one run (Ray Train V2: metrics forwarded to
Tune by TuneReportCallback). Tune imports this module in every trial actor, so it stays light:
the report and its plotting stack stay in the sweep's driver (runner.py)."""

from __future__ import annotations

from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback

from raysys import storage
from raysys.config import Config, apply_overrides, nest, validate
from raysys.train.run import fit_trainer
from raysys.train.watchdog import Watchdog


def run_trial(params: dict, base: dict, sweep_dir: str) -> None:
    """This trial's config, ledger and TorchTrainer, watched for stalls. The run folder and the
    Train run name are fixed per trial, so a restored trial resumes from its own latest
    checkpoint instead of epoch 1."""
    trial_id = tune.get_context().get_trial_id()
    cfg = validate(apply_overrides(Config.from_dict(base), nest(params) | {"run": {
        "name": trial_id, "out": storage.join(sweep_dir, "runs", trial_id),
        "wandb": False}}))  # W&B logs from the Tune driver (WandbLoggerCallback)
    callbacks = [TuneReportCallback()]  # made here: it reads the trial's Tune session
    with Watchdog(cfg.run.stall_timeout_s) as dog:
        dog.call(fit_trainer, cfg, dog, callbacks=callbacks, echo=False)
