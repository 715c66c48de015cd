"""One sweep runner for the four experiments: Ray Tune + Optuna (seeded TPE) + ASHA over trials
that each build and fit a TorchTrainer (Ray Train V2: a Tune function trial, metrics forwarded
by TuneReportCallback).

Every trial's outputs are written by its rank 0 as it trains (train.py), because ASHA's stop
kills the trial actor before `fit()` returns; the sweep report is built from those files.
"""

from __future__ import annotations

import argparse
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from raysys.config import Config, apply_overrides, load_config
from raysys.train import RESULTS_ROOT, build_trainer, ensure_manifest, init_ray

DEMO_DIR = Path("results/demo")


@dataclass
class SweepSpec:
    """What one experiment varies. `space` maps dotted config keys to Tune domains; `points` are
    evaluated first, each exactly once (the grid); Optuna's TPE fills any further samples."""

    name: str
    experiment: str
    space: dict[str, Any]
    points: list[dict[str, Any]]
    sets: list[str] = field(default_factory=list)  # fixed overrides for every trial


def grid(**values: list) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A categorical grid: the Tune space and every combination as a point."""
    keys = [k.replace("__", ".") for k in values]
    space = {k: tune.choice(v) for k, v in zip(keys, values.values(), strict=True)}
    points = [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values.values())]
    return space, points


def nest(params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{'loss.label_smoothing': 0.1} -> {'loss': {'label_smoothing': 0.1}}."""
    tree: dict[str, dict[str, Any]] = {}
    for key, value in params.items():
        section, _, name = key.partition(".")
        tree.setdefault(section, {})[name] = value
    return tree


# --- one trial --------------------------------------------------------------------------------

def run_trial(params: dict, base: dict, out_dir: str, storage: str | None) -> None:
    """A Tune function trial: build this trial's config and fit its TorchTrainer."""
    trial_id = tune.get_context().get_trial_id()
    run_dir = Path(out_dir) / "runs" / trial_id
    cfg = apply_overrides(Config.from_dict(base), nest(params) | {
        "run": {"name": trial_id, "out": str(run_dir)}})
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg.save(run_dir / "config.json")
    # A name fixed per trial: a restored trial finds its own Train snapshot and checkpoint.
    trainer = build_trainer(cfg, run_dir, callbacks=[TuneReportCallback()],
                            storage=f"{storage}/train" if storage else None,
                            ray_name=f"{Path(out_dir).name}-{trial_id}" if storage else
                            "checkpoints")
    trainer.fit()


def trial_cpus(cfg: Config) -> float:
    """CPUs one trial holds: its Train workers and both splits' preprocessing actor pools."""
    return (cfg.run.workers * cfg.run.cpus_per_worker
            + 2 * cfg.data.num_actors * cfg.data.cpus_per_actor + 0.1)


def safe_concurrency(cfg: Config, requested: int) -> int:
    """Trials that fit at once with one whole CPU left free: Ray Data's Parquet listing needs a
    whole free CPU, and without it every trial waits on the others forever."""
    res = ray.cluster_resources()
    fit_cpu = int((res.get("CPU", 1) - 1) // trial_cpus(cfg))
    fit_gpu = int(res.get("GPU", 0) // cfg.run.workers) if cfg.run.gpus else fit_cpu
    return max(1, min(requested, fit_cpu, fit_gpu))


# --- the sweep --------------------------------------------------------------------------------

def run_sweep(spec: SweepSpec, base: Config, out_dir: Path, *, samples: int | None = None,
              max_concurrent: int = 4, metric: str = "val/top1", grace_period: int = 1,
              reduction_factor: float = 2, storage: str | None = None, resume: bool = False,
              seed: int = 0) -> Path:
    """Run (or resume) the sweep; returns the path of its summary.md."""
    from raysys.sweep_report import write_report

    out_dir = out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    tune_storage = storage or str(out_dir.parent)
    experiment_path = f"{tune_storage.rstrip('/')}/{out_dir.name}"
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, base=base.to_dict(), out_dir=str(out_dir),
                             storage=storage),
        {"cpu": 0.1})  # the trial driver only waits; its Train workers reserve their own CPUs
    if resume and tune.Tuner.can_restore(experiment_path):
        print(f"resuming sweep at {experiment_path}", flush=True)
        tuner = tune.Tuner.restore(experiment_path, trainable, resume_unfinished=True,
                                   resume_errored=True)
    else:
        n = num_samples(spec, samples)
        concurrent = safe_concurrency(base, max_concurrent)
        print(f"sweep {spec.name}: {n} trials, {concurrent} at a time, ASHA on epoch "
              f"(grace {grace_period}, factor {reduction_factor}, max {base.optim.epochs})",
              flush=True)
        tuner = tune.Tuner(
            trainable,
            param_space=spec.space,
            tune_config=tune.TuneConfig(
                metric=metric, mode="max", num_samples=n, max_concurrent_trials=concurrent,
                search_alg=OptunaSearch(points_to_evaluate=spec.points, seed=seed),
                scheduler=ASHAScheduler(time_attr="epoch", max_t=base.optim.epochs,
                                        grace_period=min(grace_period, base.optim.epochs),
                                        reduction_factor=reduction_factor),
                trial_dirname_creator=lambda t: t.trial_id),
            run_config=tune.RunConfig(name=out_dir.name, storage_path=tune_storage,
                                      failure_config=tune.FailureConfig(max_failures=0),
                                      verbose=1),
        )
    grid_result = tuner.fit()
    return write_report(spec, grid_result, out_dir, metric=metric, max_t=base.optim.epochs)


def num_samples(spec: SweepSpec, samples: int | None) -> int:
    """All grid points, plus TPE samples if asked; a purely categorical space is never sampled
    past its grid, where TPE could only repeat a value."""
    n = max(samples or 0, len(spec.points))
    categorical = all(isinstance(d, tune.search.sample.Categorical) for d in spec.space.values())
    if categorical:
        size = math.prod(len(d.categories) for d in spec.space.values())
        n = min(n, size)
    return n


# --- the shared command line of sweeps/*.py ---------------------------------------------------

def build_parser(spec_name: str, doc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawTextHelpFormatter)
    g = p.add_argument_group("data (default: the embedded demo data with the micro preset)")
    src = g.add_mutually_exclusive_group()
    src.add_argument("--index-dir", help="folder of index_<name>.json files")
    src.add_argument("--manifest", help="Parquet manifest or packed folder")
    g.add_argument("--split-by", choices=["image", "group"], default="group",
                   help="manifest split when built from --index-dir (default group)")
    t = p.add_argument_group("training")
    t.add_argument("--preset", help="micro | vit_tiny | vit_small | vit_base | vit_large "
                   "(default micro on demo data, vit_base otherwise)")
    t.add_argument("--epochs", type=int, help="epochs per trial = ASHA max_t")
    t.add_argument("--workers", type=int, default=1, help="Train workers per trial")
    t.add_argument("--gpus", action="store_true", help="one GPU per worker")
    t.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="config override for every trial, repeatable")
    s = p.add_argument_group("sweep")
    s.add_argument("--samples", type=int, help="trials (default: the grid, each point once)")
    s.add_argument("--max-concurrent", type=int, default=4, help="trials at once (capped by "
                   "what the cluster fits)")
    s.add_argument("--metric", default="val/top1", help="e.g. val/top1, val/balanced_acc")
    s.add_argument("--grace-period", type=int, default=2, help="ASHA: epochs before a stop")
    s.add_argument("--reduction-factor", type=float, default=2, help="ASHA reduction factor")
    s.add_argument("--seed", type=int, default=0, help="TPE sampler seed")
    s.add_argument("--resume", action="store_true", help="continue an interrupted sweep")
    s.add_argument("--storage", help="Tune/Train storage URI for a cluster, e.g. s3://bucket/x")
    s.add_argument("--out", help=f"sweep folder (default "
                   f"{RESULTS_ROOT}/sweeps/{spec_name})")
    return p


def main(make_spec: Callable[[bool], SweepSpec], doc: str, argv: list[str] | None = None
         ) -> Path:
    """Entry point of each sweeps/*.py script. make_spec(demo) returns the experiment."""
    demo_spec = make_spec(True)
    args = build_parser(demo_spec.name, doc).parse_args(argv)
    demo = not (args.index_dir or args.manifest)
    spec = demo_spec if demo else make_spec(False)
    out_dir = Path(args.out or RESULTS_ROOT / "sweeps" / spec.name)
    sets = list(spec.sets) + list(args.set) + [f"run.workers={args.workers}"]
    if demo:
        from raysys.demo_data import generate

        if not (DEMO_DIR / "index_files").is_dir():
            generate(DEMO_DIR, size=64, images=1200)
        manifest = ensure_manifest(DEMO_DIR / "index_files", DEMO_DIR, "group")
        sets.append("optim.epochs=6")
    elif args.manifest:
        manifest = Path(args.manifest)
    else:
        manifest = ensure_manifest(Path(args.index_dir), out_dir / "data", args.split_by)
    # Absolute: trial workers may run in another working directory, or on another node.
    sets.append(f"data.manifest={manifest.resolve()}")
    if args.epochs:
        sets.append(f"optim.epochs={args.epochs}")
    if args.gpus:
        sets.append("run.gpus=true")
    base = load_config(args.preset or ("micro" if demo else "vit_base"), sets=sets)
    init_ray()
    report = run_sweep(spec, base, out_dir, samples=args.samples,
                       max_concurrent=args.max_concurrent, metric=args.metric,
                       grace_period=args.grace_period, reduction_factor=args.reduction_factor,
                       storage=args.storage, resume=args.resume, seed=args.seed)
    print(f"sweep report: {report}", flush=True)
    return report

