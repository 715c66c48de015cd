"""One training run from the driver's side: resolve the run folder and manifest, build the
data streams, the ledger and the TorchTrainer, fit it, and read the results back from storage.

`fit` is `raysys train`. `fit_trainer` is the part a sweep's trial function (sweep/runner.py)
shares with it: there it runs inside the Tune trial actor, not the user's process.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from contextlib import contextmanager, nullcontext

import ray
import ray.train
import ray.train.torch

from raysys import storage
from raysys.config import Config, DataConfig, apply_overrides, steps_per_epoch, validate
from raysys.data.ledger import create_ledger
from raysys.data.manifest import build_manifest, format_report, write_manifest
from raysys.data.source import Source, load_source
from raysys.data.stream import SplitConfig, train_stream, val_dataset
from raysys.errors import BadDataError, Interrupted, StallError
from raysys.parallel import BackgroundImport
from raysys.phases import mark
from raysys.report.demographics import stratum_codes
from raysys.report.history import best_entry, read_history
from raysys.train.cluster import check_placement, check_shared, run_demand
from raysys.train.connect import forwarded_env, init_ray
from raysys.train.console import EchoLedger
from raysys.train.reservations import remove_leaked_groups
from raysys.train.watchdog import Watchdog

# What the report imports (matplotlib, scikit-learn, timm for the attention maps): loaded while
# the epochs run.
REPORT_STACK = ("raysys.report.build", "raysys.model.vit")
MANIFEST_KEYS = ("index_dir", "split_by", "group_by", "group_pattern", "val_fraction",
                 "test_fraction", "path_map", "max_pixels")


# --- run folder and manifest ------------------------------------------------------------------

def resolve_run(cfg: Config) -> Config:
    """Fill in the run name, the run folder (absolute, or a URI) and the manifest, building
    the manifest from data.index_dir when none is given."""
    run = cfg.run
    name = run.name or (storage.basename(run.out) if run.out else
                        f"{cfg.model.arch}-{time.strftime('%Y%m%d-%H%M%S')}")
    out = storage.absolute(run.out or storage.join(run.storage, name))
    manifest = cfg.data.manifest
    if not manifest:
        if not cfg.data.index_dir:
            raise ValueError("no data: pass --manifest M.parquet or --index-dir DIR")
        manifest = ensure_manifest(cfg.data, storage.join(out, "data"))
    return apply_overrides(cfg, {"run": {"name": name, "out": out},
                                 "data": {"manifest": storage.absolute(manifest)}})


def ensure_manifest(data: DataConfig, folder: str) -> str:
    """Build the manifest once per set of manifest settings (a folder per digest of them), so a
    changed split never silently reuses a stale manifest."""
    settings = {k: getattr(data, k) for k in MANIFEST_KEYS}
    digest = hashlib.blake2b(json.dumps(settings, sort_keys=True).encode(),
                             digest_size=6).hexdigest()
    out = storage.join(folder, digest, "manifest.parquet")
    if not storage.exists(out):
        df, report = build_manifest(data)
        write_manifest(df, report, out)
        print(format_report(report), flush=True)
    return out


# --- the trainer ----------------------------------------------------------------------------

def train_loop_per_worker(loop_config: dict) -> None:
    """Ray Train's entry point on each worker. The loop's model stack (timm, torchvision,
    scikit-learn) is imported here, in the worker: the driver and a sweep's trial actor only
    hand this function on, and importing that stack cost each of them ~5 s of CPU per run."""
    mark("Train controller and worker group up", loop_config["config"]["run"]["out"])
    from raysys.train.loop import run_worker

    run_worker(loop_config)


def load_checked_source(cfg: Config) -> Source:
    source = load_source(cfg.data)
    if source.images["train"] < cfg.global_batch:
        raise ValueError(f"{source.images['train']} train images are fewer than one global "
                         f"batch ({cfg.global_batch}); lower data.batch_size or "
                         "data.worker_batch")
    if source.images["val"] == 0:
        raise ValueError("the val split is empty: set data.val_fraction > 0 and rebuild the "
                         "manifest")
    return source


def build_trainer(cfg: Config, source: Source, ledger, callbacks: list | None = None,
                  placement: str = "PACK") -> ray.train.torch.TorchTrainer:
    """The TorchTrainer for one run; a sweep's trial function builds the same one."""
    fs, path = storage.filesystem(cfg.run.out)
    resources = {"CPU": cfg.run.cpus_per_worker} | ({"GPU": 1} if cfg.run.gpus else {})
    return ray.train.torch.TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "config": cfg.to_dict(), "names": source.names,
            "train_counts": source.train_counts.tolist(), "ledger": ledger,
            "steps_per_epoch": steps_per_epoch(source.images["train"], cfg.global_batch),
            "test": source.images["test"] > 0,
            # Each name's gender and gender x generation, read here: data.demographics may be
            # a file on this machine only.
            "strata": {by: c.tolist() for by, c in stratum_codes(
                source.names, cfg.data.demographics).items()},
            "wandb_dir": None if storage.is_uri(cfg.run.out) else cfg.run.out},
        scaling_config=ray.train.ScalingConfig(num_workers=cfg.run.workers, use_gpu=cfg.run.gpus,
                                               resources_per_worker=resources,
                                               placement_strategy=placement),
        datasets={"train": train_stream(cfg, source, ledger),
                  **{split: val_dataset(cfg, source, ledger, split) for split in ("val", "test")
                     if source.images[split]}},
        dataset_config=SplitConfig(in_process=cfg.run.workers == 1 and not cfg.run.gpus),
        run_config=ray.train.RunConfig(
            # A fixed name under the run folder: running the same --out again finds the
            # controller's snapshot and resumes from the latest checkpoint.
            name="checkpoints", storage_path=path,
            storage_filesystem=fs if storage.is_uri(cfg.run.out) else None,
            checkpoint_config=ray.train.CheckpointConfig(
                num_to_keep=1, checkpoint_score_attribute=cfg.run.metric,
                checkpoint_score_order="max"),
            failure_config=ray.train.FailureConfig(max_failures=cfg.run.max_failures),
            worker_runtime_env={"env_vars": forwarded_env()},
            callbacks=callbacks or []),
    )


STOPS = {"bad_data": BadDataError, "stalled": StallError, "interrupted": Interrupted}


@contextmanager
def stops_as_errors(ledger):
    """A run the ledger stopped (too many undecodable images, a stall, Ctrl+C) surfaces as that
    error with the ledger's message (what happened and the fix), not as the Ray error that
    carried it."""
    try:
        yield
    except Exception as e:
        state = ray.get(ledger.state.remote())
        if state["fatal"]:
            raise STOPS[state["kind"]](state["fatal"]) from None
        raise e


def fit_trainer(cfg: Config, dog: Watchdog, callbacks: list | None = None, echo: bool = True,
                first_line: threading.Event | None = None) -> ray.train.Result:
    """Build this run's data, ledger and TorchTrainer, and fit it: the part `fit` and a sweep's
    trial function share (a sweep prints from Tune's side instead: echo=False). The run leaves
    nothing behind in Ray: its ledger ends with it, and a placement group a dead controller
    left is removed."""
    placement = check_placement(cfg)
    storage.write_text(storage.join(cfg.run.out, "config.json"), cfg.to_json())
    source = load_checked_source(cfg)
    ledger = create_ledger(source, cfg.data)
    dog.attach(ledger)
    mark("placement checked, manifest read, ledger up", cfg.run.out)
    try:
        with EchoLedger(ledger, cfg.run.out, first_line) if echo else nullcontext(), \
                stops_as_errors(ledger):
            trainer = build_trainer(cfg, source, ledger, callbacks, placement)
            dog.raise_if_stopped()
            mark("val held, trainer built", cfg.run.out)
            return trainer.fit()
    finally:
        mark("Train shut down", cfg.run.out)
        dog.detach()
        ray.kill(ledger)
        remove_leaked_groups()
        mark("ledger and groups cleaned up", cfg.run.out)


def fit(cfg: Config, verbose: bool = False) -> dict:
    """Train one run; returns its folder and best epoch, read back from the run's storage.
    Watched from `ray.init` to the report (train/watchdog.py); Ctrl+C raises Interrupted with
    the run folder that the same command, given `--out`, resumes from."""
    cfg = resolve_run(validate(cfg))
    mark("run folder and manifest", cfg.run.out)
    init_ray(run_demand(cfg)["CPU"], verbose)
    mark("ray.init", cfg.run.out)
    try:
        with Watchdog(cfg.run.stall_timeout_s) as dog:
            return dog.call(train_and_report, cfg, dog)
    except KeyboardInterrupt:
        raise Interrupted(cfg.run.out) from None


def train_and_report(cfg: Config, dog: Watchdog) -> dict:
    check_shared(cfg.run.out, cfg)
    print(f"raysys train {cfg.run.name}: {cfg.batch_line()}", flush=True)
    stack = BackgroundImport(*REPORT_STACK)  # goes once rank 0 prints its first line
    try:
        result = fit_trainer(cfg, dog, first_line=stack.go)
    finally:
        stack.cancel()  # what it has not begun, this thread imports when it needs it
    dog.progress()
    from raysys.report.build import build_report

    build_report(cfg.run.out)  # reads back what training wrote
    mark("report built", cfg.run.out)
    history = read_history(cfg.run.out)
    metric = cfg.run.metric
    # The best checkpoint Ray Train kept by run.metric; none if the run diverged in epoch 1.
    kept = [m for _, m in result.best_checkpoints]
    best = max(kept, key=lambda m: m[metric]) if kept else best_entry(history, metric)
    return {"run_dir": cfg.run.out, "metric": metric, "best": best[metric],
            "best_val_top1": best["val/top1"], "best_epoch": best["epoch"],
            "checkpoint": result.checkpoint.path if result.checkpoint else None,
            "diverged": bool(history[-1]["diverged"]), "history": history}
