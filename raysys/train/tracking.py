"""W&B for runs and sweeps, in one mode rule: off with run.wandb=false or WANDB_MODE=disabled,
WANDB_MODE when set, online when a key is configured, offline otherwise. Logging never costs a
training run: any failure to start it turns it off with one line."""

from __future__ import annotations

import os

from raysys.config import Config


def wandb_mode(cfg: Config) -> str:
    """disabled | offline | online."""
    if not cfg.run.wandb:
        return "disabled"
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    return "online" if has_wandb_key() else "offline"


def has_wandb_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = os.path.expanduser("~/.netrc")
    return os.path.exists(netrc) and "api.wandb.ai" in open(netrc, errors="ignore").read()


class NoWandb:
    """Stand-in for a run that does not log, so the loop never checks."""

    def log(self, *args, **kwargs) -> None:
        pass

    def finish(self) -> None:
        pass


def start_wandb(cfg: Config, run_name: str, run_dir: str | None, rank: int):
    """Rank 0 of a single run logs to W&B. Sweeps log from the Tune driver instead
    (wandb_callbacks), so their trials pass run.wandb=false."""
    mode = wandb_mode(cfg)
    if rank != 0 or mode == "disabled":
        return NoWandb()
    try:
        import wandb

        return wandb.init(project=cfg.run.wandb_project, name=run_name, dir=run_dir,
                          config=cfg.to_dict(), mode=mode)
    except Exception as e:
        print(f"W&B disabled for this run: {type(e).__name__}", flush=True)
        return NoWandb()


def wandb_callbacks(cfg: Config, group: str, folder: str) -> list:
    """Ray's WandbLoggerCallback on the Tune side: it finishes every trial's W&B run, including
    the ones ASHA stops. Its files (offline runs above all) go under `folder`, the sweep's
    folder on shared storage, not the head's own disk that `ray down` deletes; for an s3://
    sweep they stay in W&B's default folder on the head."""
    mode = wandb_mode(cfg)
    if mode == "disabled":
        return []
    from ray.air.integrations.wandb import WandbLoggerCallback

    os.environ["WANDB_MODE"] = mode  # the callback reads the environment, not its mode argument
    where = {} if "://" in folder else {"dir": folder}  # passed on to wandb.init in its actor
    try:
        return [WandbLoggerCallback(project=cfg.run.wandb_project, group=group, mode=mode,
                                    **where)]
    except Exception as e:
        print(f"W&B disabled for this sweep: {type(e).__name__}", flush=True)
        return []
