"""What runs on the driver: resolve the run folder and manifest, join Ray, build the
TorchTrainer, print the workers' epoch lines, and read the results back from storage.

The driver is the `raysys train` process, or a Tune trial function (raysys/tune.py) in a sweep.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
import uuid
from contextlib import contextmanager, nullcontext

import ray
import ray.train
import ray.train.torch

from raysys import storage
from raysys.config import Config, DataConfig, apply_overrides, steps_per_epoch, validate
from raysys.data import (
    BadDataError,
    Source,
    SplitConfig,
    create_ledger,
    load_source,
    shuffle_buffer,
    train_stream,
    val_dataset,
)
from raysys.manifest import build_manifest, format_report, write_manifest
from raysys.report import best_entry, read_history
from raysys.worker import FAULT_ENV, train_loop_per_worker

MANIFEST_KEYS = ("index_dir", "split_by", "group_by", "group_pattern", "val_fraction",
                 "path_map", "max_pixels")
FORWARDED_ENV_PREFIXES = ("WANDB_", "RAYSYS_")
FORWARDED_ENV = ("AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION")


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


# --- joining Ray --------------------------------------------------------------------------------

def forwarded_env() -> dict[str, str]:
    """What Train workers and Tune trials need from the driver's environment: W&B settings and
    the test hooks. Ray forwards only its own variables."""
    return {k: v for k, v in os.environ.items()
            if k.startswith(FORWARDED_ENV_PREFIXES) or k in FORWARDED_ENV}


def quiet_ray(verbose: bool) -> None:
    """Ray's tables, execution plans and internal log lines are one flag away (--verbose);
    by default the console shows our lines only. Set before Ray and Tune print anything."""
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = verbose
    ctx.print_on_execution_start = verbose
    if not verbose:
        from ray.util.debug import log_once

        log_once("ray_data_progress_manager_disabled")  # "Progress bars disabled": we know
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the legacy engine honours verbose=0
        os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        logging.getLogger("ray.tune").setLevel(logging.WARNING)
        logging.getLogger("ray.train").setLevel(logging.WARNING)


def init_ray(cfg: Config, verbose: bool = False) -> None:
    """Join RAY_ADDRESS, or the cluster running on this machine (`ray start`, `ray attach`,
    `ray up`); only when there is none, start a local Ray. Resources are never passed to an
    existing cluster; a local one gets extra logical CPUs only where this machine has fewer
    than one run needs (Train workers, a decode actor each, and one CPU for the data stream's
    short tasks)."""
    quiet_ray(verbose)
    if ray.is_initialized():
        return
    common = {"log_to_driver": verbose, "logging_level": logging.INFO if verbose else
              logging.ERROR, "runtime_env": {"env_vars": forwarded_env()}}
    try:
        ray.init(address=os.environ.get("RAY_ADDRESS") or "auto", **common)
        return
    except ConnectionError:
        if os.environ.get("RAY_ADDRESS"):
            raise
    need = cfg.run.workers * (cfg.run.cpus_per_worker + cfg.data.cpus_per_actor) + 1
    cores = os.cpu_count() or 1
    # One machine: no node can be drained or preempted, so Train's preemption watcher (an
    # extra process to start on every run) has nothing to watch; and the controller may poll
    # its workers every 0.5 s instead of 2 s (it notices the end of a run 1.5 s sooner).
    os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
    ray.init(address="local", num_cpus=max(cores, int(need + 0.999)),
             dashboard_host="127.0.0.1", **common)


def alive_nodes() -> list[dict]:
    return [n for n in ray.nodes() if n["Alive"]]


def check_shared(path: str) -> None:
    """With several nodes, rank 0 may write the run folder from any of them: a local --out that
    another node cannot see is refused before training, with what to pass instead."""
    nodes = alive_nodes()
    if storage.is_uri(path) or len(nodes) < 2:
        return
    marker = storage.join(path, f".raysys-shared-{uuid.uuid4().hex}")
    storage.write_text(marker, "visible from every node?")
    try:
        blind = [n["NodeManagerAddress"] for n in nodes if not node_sees(n["NodeID"], marker)]
    finally:
        os.unlink(marker)
    if blind:
        raise ValueError(
            f"{path} is not visible from {len(blind)} node(s) ({', '.join(blind[:4])}): rank 0 "
            "writes the run folder from whichever node it lands on. Pass --out (or --storage) "
            "on storage every node mounts, e.g. /mnt/efs/raysys/..., or an s3:// URI")


def node_sees(node_id: str, path: str) -> bool:
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(num_cpus=0)(os.path.exists).options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False))
    return ray.get(probe.remote(path), timeout=120)


# --- the trainer ----------------------------------------------------------------------------

def load_checked_source(cfg: Config) -> Source:
    source = load_source(cfg.data)
    if source.images["train"] < cfg.data.batch_size:
        raise ValueError(f"{source.images['train']} train images are fewer than one global "
                         f"batch (data.batch_size={cfg.data.batch_size}); lower the batch size")
    if source.images["val"] == 0:
        raise ValueError("the val split is empty: set data.val_fraction > 0 and rebuild the "
                         "manifest")
    return source


def build_trainer(cfg: Config, source: Source, ledger, callbacks: list | None = None
                  ) -> ray.train.torch.TorchTrainer:
    """The TorchTrainer for one run; a sweep's trial function builds the same one."""
    fs, path = storage.filesystem(cfg.run.out)
    resources = {"CPU": cfg.run.cpus_per_worker} | ({"GPU": 1} if cfg.run.gpus else {})
    return ray.train.torch.TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "config": cfg.to_dict(), "names": source.names,
            "train_counts": source.train_counts.tolist(), "run_dir": cfg.run.out,
            "run_name": cfg.run.name, "ledger": ledger,
            "steps_per_epoch": steps_per_epoch(source.images["train"], cfg.data.batch_size),
            "shuffle_buffer": shuffle_buffer(cfg, source),
            "wandb_dir": None if storage.is_uri(cfg.run.out) else cfg.run.out},
        scaling_config=ray.train.ScalingConfig(num_workers=cfg.run.workers, use_gpu=cfg.run.gpus,
                                               resources_per_worker=resources),
        datasets={"train": train_stream(cfg, source, ledger),
                  "val": val_dataset(cfg, source, ledger)},
        dataset_config=SplitConfig(),
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


class EchoLedger:
    """While fit() blocks, print the lines rank 0 sends to the ledger (the driver's console),
    and keep them, with where Ray's own logs are, in the run folder's console.log."""

    def __init__(self, ledger, run_dir: str, interval_s: float = 0.5):
        self.ledger, self.run_dir, self.interval = ledger, run_dir, interval_s
        self.lines = [f"Ray's logs: {ray_logs_dir()} (--verbose prints them)"]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            self.flush()
            self.stop.wait(self.interval)

    def flush(self) -> None:
        try:
            for line in ray.get(self.ledger.drain.remote(), timeout=30):
                print(line, flush=True)
                self.lines.append(line)
        except Exception:  # the console must never fail a run
            pass

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()  # its last drain ends within ray.get's timeout
        self.flush()
        path = storage.join(self.run_dir, "console.log")
        try:  # a resumed run adds its lines to the earlier attempts'
            earlier = storage.read_text(path) if storage.exists(path) else ""
            storage.write_text(path, earlier + "\n".join(self.lines) + "\n")
        except Exception as e:  # a missing console copy is not worth losing the run's result
            print(f"raysys: could not write console.log in {self.run_dir}: {e}", flush=True)


def ray_logs_dir() -> str:
    try:
        return ray._private.worker._global_node.get_logs_dir_path()  # the driver's node
    except Exception:  # private API: the console must never fail a run
        return "unknown"


@contextmanager
def bad_data_as_error(ledger):
    """A stop for too many undecodable images surfaces as BadDataError with the ledger's
    message (examples and the fix), not as the Ray task error that carried it."""
    try:
        yield
    except Exception as e:
        fatal = ray.get(ledger.state.remote())["fatal"]
        if fatal:
            raise BadDataError(fatal) from None
        raise e


def train(cfg: Config, callbacks: list | None = None, echo: bool = True) -> ray.train.Result:
    """Build this run's data, ledger and TorchTrainer, and fit it: the part a `raysys train`
    driver and a sweep's trial function share (a sweep prints from Tune's side instead)."""
    source = load_checked_source(cfg)
    ledger = create_ledger(source, cfg.data)
    with EchoLedger(ledger, cfg.run.out) if echo else nullcontext(), bad_data_as_error(ledger):
        return build_trainer(cfg, source, ledger, callbacks).fit()


def fit(cfg: Config, verbose: bool = False) -> dict:
    """Train one run; returns its folder and best epoch, read back from the run's storage."""
    cfg = resolve_run(validate(cfg))
    init_ray(cfg, verbose)
    check_shared(cfg.run.out)
    storage.write_text(storage.join(cfg.run.out, "config.json"), cfg.to_json())
    if os.environ.get(FAULT_ENV):
        print(f"test fault injection armed: {os.environ[FAULT_ENV]}", flush=True)
    result = train(cfg)
    from raysys.run_report import build_report  # the report reads back what training wrote

    build_report(cfg.run.out)
    history = read_history(cfg.run.out)
    metric = cfg.run.metric
    # The best checkpoint Ray Train kept by run.metric; none if the run diverged in epoch 1.
    kept = [m for _, m in result.best_checkpoints]
    best = max(kept, key=lambda m: m[metric]) if kept else best_entry(history, metric)
    return {"run_dir": cfg.run.out, "metric": metric, "best": best[metric],
            "best_val_top1": best["val/top1"], "best_epoch": best["epoch"],
            "checkpoint": result.checkpoint.path if result.checkpoint else None,
            "diverged": bool(history[-1]["diverged"]), "history": history}
