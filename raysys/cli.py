"""`raysys` console script: demo-data, manifest, pack, train."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def cmd_demo_data(a: argparse.Namespace) -> int:
    from raysys.demo_data import generate

    index_dir = generate(Path(a.out), names=a.names, size=a.size, images=a.images, seed=a.seed)
    print(f"demo data: {a.images} images of {a.names} names at {a.size}px -> {index_dir}")
    return 0


def add_manifest_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("manifest")
    g.add_argument("--val-fraction", type=float, default=0.2, help="share of images (or groups) "
                   "in val (default 0.2)")
    g.add_argument("--split-by", choices=["image", "group"], default="image",
                   help="split per image, or keep each identity group on one side")
    g.add_argument("--group-by", choices=["parent", "none"], default="parent",
                   help="identity group = the image's folder (parent), or none")
    g.add_argument("--group-pattern", help="regex on the path relative to the index folder; "
                   "group 1 (or the whole match) is the identity key")
    g.add_argument("--top-k", type=int, default=0, help="keep only the K largest names")
    g.add_argument("--path-map", action="append", default=[], metavar="OLD=NEW",
                   help="rewrite a path prefix (repeatable), for index files from another machine")
    g.add_argument("--workers", type=int, default=None, help="header-reading processes")


def manifest_options(a: argparse.Namespace):
    from raysys.manifest import ManifestOptions, parse_path_map

    return ManifestOptions(val_fraction=a.val_fraction, split_by=a.split_by, group_by=a.group_by,
                           group_pattern=a.group_pattern, top_k=a.top_k or None,
                           path_map=parse_path_map(a.path_map), workers=a.workers)


def cmd_manifest(a: argparse.Namespace) -> int:
    from raysys.manifest import build_manifest, format_report, write_manifest

    df, report = build_manifest(Path(a.index_dir), manifest_options(a))
    write_manifest(df, report, Path(a.out))
    print(format_report(report))
    print(f"manifest     : {a.out} ({len(df)} rows)")
    return 0


def cmd_pack(a: argparse.Namespace) -> int:
    from raysys.pack import pack

    info = pack(Path(a.manifest), Path(a.out), size=a.size, shard_mb=a.shard_mb)
    print(json.dumps(info, indent=1))
    return 0


def cmd_train(a: argparse.Namespace) -> int:
    from raysys.config import load_config
    from raysys.train import fit

    sets = list(a.set)
    for flag, key in ((a.manifest, "data.manifest"), (a.index_dir, "data.index_dir"),
                      (a.epochs, "optim.epochs"), (a.workers, "run.workers"),
                      (a.out, "run.out"), (a.name, "run.name")):
        if flag is not None:
            sets.append(f"{key}={flag}")
    if a.gpus:
        sets.append("run.gpus=true")
    cfg = load_config(a.preset, a.config, sets)
    result = fit(cfg)
    print(json.dumps({k: result[k] for k in ("run_dir", "best_val_top1", "best_epoch",
                                             "diverged")}, indent=1))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="raysys", description="ViTs from scratch on face -> "
                                "first-name data, with Ray Data, Ray Train and Ray Tune.")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo-data", help="generate the embedded, learnable demo data set")
    d.add_argument("--out", required=True, help="output folder (index_files/ and images/)")
    d.add_argument("--names", type=int, default=12, help="number of first names (default 12)")
    d.add_argument("--size", type=int, default=512, help="image side in px (default 512)")
    d.add_argument("--images", type=int, default=1200, help="total images (default 1200)")
    d.add_argument("--seed", type=int, default=0, help="same seed, byte-identical output")
    d.set_defaults(func=cmd_demo_data)

    m = sub.add_parser("manifest", help="index_<name>.json files -> Parquet manifest + report")
    m.add_argument("--index-dir", required=True, help="folder of index_<name>.json files")
    m.add_argument("--out", required=True, help="manifest path, e.g. data/manifest.parquet")
    add_manifest_args(m)
    m.set_defaults(func=cmd_manifest)

    k = sub.add_parser("pack", help="re-encode images into ~128 MB Parquet shards of JPEG bytes")
    k.add_argument("--manifest", required=True, help="manifest from `raysys manifest`")
    k.add_argument("--out", required=True, help="output folder of shards")
    k.add_argument("--size", type=int, default=256, help="shorter side in px (default 256)")
    k.add_argument("--shard-mb", type=int, default=128, help="shard size (default 128 MB)")
    k.set_defaults(func=cmd_pack)

    t = sub.add_parser("train", help="train a ViT with Ray Train (local, or RAY_ADDRESS cluster)")
    src = t.add_mutually_exclusive_group()
    src.add_argument("--manifest", help="Parquet manifest or packed folder")
    src.add_argument("--index-dir", help="index folder: builds the manifest first")
    t.add_argument("--preset", default="vit_base", help="micro | vit_tiny | vit_small | vit_base "
                   "| vit_large (default vit_base)")
    t.add_argument("--config", help="YAML file of {section: {key: value}} overrides")
    t.add_argument("--epochs", type=int, help="optim.epochs")
    t.add_argument("--workers", type=int, help="Ray Train workers (run.workers)")
    t.add_argument("--gpus", action="store_true", help="one GPU per worker")
    t.add_argument("--out", help="run folder (default results/track2_vit_scratch/<name>); the "
                   "same --out resumes from its latest checkpoint")
    t.add_argument("--name", help="run name")
    t.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="config override, repeatable, e.g. --set loss.label_smoothing=0.2")
    t.set_defaults(func=cmd_train)
    return p


def main(argv: list[str] | None = None) -> int:
    from raysys.config import ConfigError
    from raysys.manifest import ManifestError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ManifestError, ConfigError, FileNotFoundError, ValueError) as e:
        print(f"raysys {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
