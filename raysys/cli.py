"""`raysys` console script: demo-data, manifest, pack, train, sweep, report.

Every config flag maps to one config key and is parsed with that field's type. One precedence
everywhere: preset < (an experiment's fixed settings) < --config YAML < flags < --set, and the
last --set of a key wins.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# flag -> (config key, help). Types come from the config fields.
SOURCE_FLAGS = {
    "--index-dir": ("data.index_dir", "folder of index_<name>.json files (builds the manifest)"),
    "--manifest": ("data.manifest", "Parquet manifest, or a `raysys pack` folder"),
}
MANIFEST_FLAGS = {
    "--split-by": ("data.split_by", "image | group: keep each identity on one side"),
    "--group-by": ("data.group_by", "parent (the image's folder is the identity) | none"),
    "--group-pattern": ("data.group_pattern", "regex on the path; group 1 is the identity"),
    "--val-fraction": ("data.val_fraction", "share of images (or identities) in val"),
    "--test-fraction": ("data.test_fraction", "share of images (or identities) held out for "
                                              "test, scored once"),
    "--top-k": ("data.top_k", "keep only the K largest names (0 = all)"),
    "--path-map": ("data.path_map", "OLD=NEW path prefix rewrite, repeatable"),
}
RUN_FLAGS = {
    "--epochs": ("optim.epochs", "epochs (a sweep's ASHA max_t)"),
    "--workers": ("run.workers", "Ray Train workers (per trial in a sweep)"),
    "--gpus": ("run.gpus", "one GPU per worker"),
    "--storage": ("run.storage", "results root: local, shared (/mnt/efs/...) or s3://..."),
    "--metric": ("run.metric", "val/top1 | val/balanced_acc: best model, ASHA, winner"),
    "--seed": ("run.seed", "run seed: shuffle, augmentation and initialisation"),
}
TRAIN_FLAGS = {
    "--out": ("run.out", "run folder (default <storage>/<name>); the same --out resumes"),
    "--name": ("run.name", "run name (default <arch>-<timestamp>)"),
}
SWEEP_FLAGS = {
    "--samples": ("sweep.samples", "trials (default: each grid point once)"),
    "--max-concurrent": ("sweep.max_concurrent", "trials at once, capped by what the cluster "
                         "can grow to"),
    "--max-nodes": ("sweep.max_nodes", "worker nodes the cluster may grow to, where no "
                    "autoscaler config says so"),
    "--grace-period": ("sweep.grace_period", "ASHA: epochs before a trial may be stopped"),
    "--reduction-factor": ("sweep.reduction_factor", "ASHA: keep the top 1/rf at each rung"),
}
DEMO_DIR = Path("results/demo")


def typed(hint, key: str):
    """argparse type: the config field's parser, its error as argparse's message."""
    from raysys.config import ConfigError, parse_value

    def parse(raw: str):
        try:
            return parse_value(raw, hint, key)
        except ConfigError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    parse.__name__ = key
    return parse


def add_flags(parser: argparse.ArgumentParser, title: str, table: dict) -> None:
    from raysys.config import field_type

    group = parser.add_argument_group(title)
    for flag, (key, help_) in table.items():
        hint = field_type(*key.split("."))
        common = {"dest": key.replace(".", "__"), "default": argparse.SUPPRESS,
                  "help": f"{help_} [{key}]"}
        if hint is bool:
            group.add_argument(flag, action="store_const", const=True, **common)
        elif "tuple" in str(hint):
            group.add_argument(flag, action="append", metavar="OLD=NEW", **common)
        else:
            group.add_argument(flag, type=typed(hint, key), metavar=key.split(".")[1].upper(),
                               **common)


def flag_tree(args: argparse.Namespace) -> dict:
    from raysys.config import nest

    return nest({k.replace("__", "."): tuple(v) if isinstance(v, list) else v
                 for k, v in vars(args).items() if "__" in k})


def add_config_args(p: argparse.ArgumentParser, default_preset: str = "vit_base") -> None:
    from raysys.config import PRESETS

    p.add_argument("--preset", default=None,
                   help=f"{' | '.join(PRESETS)} (default {default_preset})")
    p.add_argument("--config", help="YAML file of {section: {key: value}}")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="config override, repeatable, applied last, e.g. "
                   "--set loss.label_smoothing=0.2")
    p.add_argument("--verbose", action="store_true", help="show Ray's own logs and tables")


def config_from(a: argparse.Namespace, default_preset: str = "vit_base", defaults=None):
    from raysys.config import load_config

    return load_config(a.preset or default_preset, a.config, flag_tree(a), a.set, defaults)


# --- commands ---------------------------------------------------------------------------------

def cmd_demo_data(a: argparse.Namespace) -> int:
    from raysys.data.demo import PRODUCTION_TOTAL, generate

    images = a.images or (PRODUCTION_TOTAL if a.profile == "production" else 1200)
    names = 500 if a.profile == "production" else a.names
    index_dir = generate(Path(a.out), names=names, size=a.size, images=images, seed=a.seed,
                         profile=a.profile, cue=a.cue, people_per_name=a.people)
    print(f"demo data ({a.profile}): {images} images of {names} names at {a.size}px -> "
          f"{index_dir}")
    return 0


def cmd_manifest(a: argparse.Namespace) -> int:
    from raysys.data.manifest import build_manifest, format_report, write_manifest

    cfg = config_from(a)
    df, report = build_manifest(cfg.data)
    write_manifest(df, report, a.out)
    print(format_report(report))
    print(f"manifest     : {a.out} ({len(df)} rows)")
    return 0


def cmd_pack(a: argparse.Namespace) -> int:
    from raysys.data.pack import pack

    info = pack(a.manifest, a.out, size=a.size, shard_mb=a.shard_mb, seed=a.seed)
    print(json.dumps({k: v for k, v in info.items() if k != "shards"}, indent=1))
    return 0


def cmd_train(a: argparse.Namespace) -> int:
    from raysys.train.run import fit

    result = fit(config_from(a), verbose=a.verbose)
    print(json.dumps({k: result[k] for k in ("run_dir", "metric", "best", "best_epoch",
                                             "diverged")}, indent=1))
    return 0


def cmd_report(a: argparse.Namespace) -> int:
    from raysys import storage
    from raysys.report.build import build_report

    path = build_report(storage.absolute(a.run_dir), figures=True, demographics=a.demographics)
    print(f"report: {path}")
    return 0


def cmd_sweep(a: argparse.Namespace) -> int:
    from raysys import storage
    from raysys.data.source import read_names
    from raysys.sweep import experiments
    from raysys.sweep.runner import run_sweep, trial_demand
    from raysys.train.cluster import check_shared
    from raysys.train.connect import init_ray
    from raysys.train.run import ensure_manifest

    if a.list:
        for name, make in experiments.EXPERIMENTS.items():
            print(f"{name:16s} {make(500).title}")
        return 0
    if not a.name:
        raise ValueError("name a sweep (raysys sweep --list shows them)")
    probe = config_from(a)
    demo = not (probe.data.index_dir or probe.data.manifest)
    defaults: dict = {}
    if demo:  # the embedded demo data, micro ViT: the card's job in minutes on a laptop
        from raysys.data.demo import generate

        if not (DEMO_DIR / "index_files").is_dir():
            generate(DEMO_DIR, size=64, images=1200)
        defaults = {"data": {"index_dir": str(DEMO_DIR.resolve() / "index_files"),
                             "split_by": "group"}}
    cfg = config_from(a, "micro" if demo else "vit_base", defaults)
    sweep_dir = storage.absolute(a.out or storage.join(cfg.run.storage, "sweeps", a.name))
    init_ray(trial_demand(cfg)["CPU"], a.verbose)
    check_shared(sweep_dir, cfg)
    if not cfg.data.manifest:  # built once, shared by every trial
        manifest = ensure_manifest(cfg.data, storage.join(sweep_dir, "data"))
        defaults.setdefault("data", {})["manifest"] = manifest
    manifest = defaults.get("data", {}).get("manifest") or cfg.data.manifest
    exp = experiments.get(a.name, len(read_names(manifest)))
    cfg = config_from(a, "micro" if demo else "vit_base", merge(exp.fixed, defaults))
    report = run_sweep(exp, cfg, sweep_dir, resume=a.resume, verbose=a.verbose)
    print(f"sweep report: {report}", flush=True)
    return 0


def merge(a: dict, b: dict) -> dict:
    out = {k: dict(v) for k, v in a.items()}
    for section, values in b.items():
        out.setdefault(section, {}).update(values)
    return out


# --- the parser -------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    from raysys.sweep.experiments import EXPERIMENTS

    p = argparse.ArgumentParser(prog="raysys", description="ViTs from scratch on face -> "
                                "first-name data, with Ray Data, Ray Train and Ray Tune.")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo-data", help="generate the embedded, learnable demo data set")
    d.add_argument("--out", required=True, help="output folder (index_files/ and images/)")
    d.add_argument("--names", type=int, default=12, help="number of first names (default 12)")
    d.add_argument("--size", type=int, default=512, help="image side in px (default 512)")
    d.add_argument("--images", type=int, default=0,
                   help="total images (default 1200; production: 434,528)")
    d.add_argument("--profile", choices=["power-law", "production"], default="power-law",
                   help="production: the production set's 500 names and shape (top ten as in "
                        "the data card, 153 names > 1,000 images), scaled to --images")
    d.add_argument("--seed", type=int, default=0, help="same seed, byte-identical output")
    d.add_argument("--people", type=int, default=5,
                   help="people per name (default 5; the production profile sets its own)")
    d.add_argument("--cue", choices=["name", "gender"], default="name",
                   help="gender: faces carry their name's gender and nothing else (the names "
                        "alternate male, female), to check that a report finds no name signal "
                        "beyond gender")
    d.set_defaults(func=cmd_demo_data)

    m = sub.add_parser("manifest", help="index_<name>.json files -> Parquet manifest + report")
    m.add_argument("--out", required=True, help="manifest path, e.g. data/manifest.parquet")
    add_flags(m, "data", {"--index-dir": SOURCE_FLAGS["--index-dir"], **MANIFEST_FLAGS})
    add_config_args(m)
    m.set_defaults(func=cmd_manifest)

    k = sub.add_parser("pack", help="re-encode images into ~128 MB shuffled Parquet shards")
    k.add_argument("--manifest", required=True, help="manifest from `raysys manifest`")
    k.add_argument("--out", required=True, help="output folder (train/ and val/ shards)")
    k.add_argument("--size", type=int, default=256, help="shorter side in px (default 256)")
    k.add_argument("--shard-mb", type=int, default=128, help="shard size (default 128 MB)")
    k.add_argument("--seed", type=int, default=0, help="row shuffle seed")
    k.set_defaults(func=cmd_pack)

    t = sub.add_parser("train", help="train a ViT with Ray Train (joins a running cluster)")
    add_flags(t, "data", {**SOURCE_FLAGS, **MANIFEST_FLAGS})
    add_flags(t, "run", {**RUN_FLAGS, **TRAIN_FLAGS})
    add_config_args(t)
    t.set_defaults(func=cmd_train)

    r = sub.add_parser("report", help="(re)build a run's summary.md, plots and attention maps")
    r.add_argument("run_dir", help="a run folder (local path or s3://...)")
    r.add_argument("--demographics", default=None, metavar="CSV",
                   help="name,p_female,birth_year: overrides the run's data.demographics")
    r.set_defaults(func=cmd_report)

    s = sub.add_parser("sweep", help="run one of the experiments with Ray Tune + Optuna + ASHA",
                       description="With no data flags: the embedded demo data, micro preset.")
    s.add_argument("name", nargs="?", choices=list(EXPERIMENTS), help="the experiment")
    s.add_argument("--list", action="store_true", help="list the experiments")
    s.add_argument("--out", help="sweep folder (default <storage>/sweeps/<name>)")
    s.add_argument("--resume", action="store_true", help="continue an interrupted sweep; "
                   "finished trials are not rerun")
    add_flags(s, "data", {**SOURCE_FLAGS, **MANIFEST_FLAGS})
    add_flags(s, "run (every trial)", RUN_FLAGS)
    add_flags(s, "sweep", SWEEP_FLAGS)
    add_config_args(s)
    s.set_defaults(func=cmd_sweep)
    return p


def resume_command(command: str, argv: list[str], folder: str) -> str:
    """The command line that continues an interrupted run or sweep: the same one with the run
    folder given (`--out`, replacing --name and --storage, which only chose it) or, for a
    sweep, with `--resume`."""
    import shlex

    if command == "sweep":
        words = list(argv)
        if not any(w.split("=", 1)[0] == "--out" for w in words):
            words += ["--out", folder]
        words += [] if "--resume" in words else ["--resume"]
    else:
        words, skip = [], False
        for word in argv:
            if skip:
                skip = False
                continue
            flag = word.split("=", 1)[0]
            if flag in ("--out", "--name", "--storage"):
                skip = "=" not in word
                continue
            words.append(word)
        words += ["--out", folder]
    prog = sys.argv[0]
    head = ["python", prog] if prog.endswith(".py") and "sweeps" in prog else ["raysys"]
    if head[0] == "python":  # sweeps/<name>.py passes "sweep <name>" itself
        words = words[2:]
    return shlex.join(head + words)


def main(argv: list[str] | None = None) -> int:
    from raysys.config import ConfigError
    from raysys.data.manifest import ManifestError
    from raysys.errors import BadDataError, Interrupted, StallError
    from raysys.phases import mark

    mark("command imported")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ManifestError, ConfigError, BadDataError, StallError, FileNotFoundError,
            ValueError, ConnectionError) as e:
        print(f"raysys {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # Ctrl+C: 128 + SIGINT, as a shell reports it
        folder = e.folder if isinstance(e, Interrupted) else ""
        print(f"raysys {args.command}: interrupted" + (
            f"; resume with: {resume_command(args.command, argv, folder)}" if folder else ""),
            file=sys.stderr, flush=True)
        return 130
    finally:
        mark("command returns")


if __name__ == "__main__":
    sys.exit(main())
