"""Real faces: a small ViT trained from scratch on the 20 largest LFW first names, with a
person-disjoint split (no person on both sides), on the CPU within a bounded budget.

Prints val top-1, balanced accuracy and the chance baselines as a Markdown table for
benchmarks/RESULTS.md. Skips (exit 0) when ../shared/data/lfw-names is absent.

    python benchmarks/lfw_train.py [--epochs 20] [--out /tmp/lfw_run]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from raysys.train import fit

from raysys.config import load_config
from raysys.manifest import ManifestOptions, build_manifest, format_report, write_manifest

LFW = Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw-names" / "index_files"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--top-k", type=int, default=20)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    if not LFW.is_dir():
        print(f"skipped: {LFW} not present")
        sys.exit(0)
    out = Path(args.out or tempfile.mkdtemp(prefix="lfw_train_"))
    df, report = build_manifest(LFW, ManifestOptions(split_by="group", top_k=args.top_k))
    write_manifest(df, report, out / "data" / "manifest.parquet")
    print(format_report(report))
    # A ViT-Tiny-shaped model at 64 px (patch 8 -> 64 tokens + cls): what 2 cores can train.
    cfg = load_config("micro", sets=[
        f"data.manifest={out / 'data' / 'manifest.parquet'}", f"run.out={out / 'run'}",
        f"optim.epochs={args.epochs}", "optim.warmup_epochs=2", "data.img_size=64",
        "model.patch_size=8", "model.embed_dim=192", "model.depth=6", "model.num_heads=3",
        "model.drop_path_rate=0.1", "data.batch_size=64", "loss.class_weights=sqrt",
        "data.cpus_per_actor=0.5"])
    t = time.time()
    r = fit(cfg)
    best = max(r["history"], key=lambda h: h["val/top1"])
    minutes = (time.time() - t) / 60
    print(f"\n| LFW top-{args.top_k}, person-disjoint | value |\n|---|---|")
    for key in ("val/top1", "val/top5", "val/balanced_acc", "val/macro_f1", "val/pred_cv",
                "chance/uniform", "chance/majority", "chance/prior_match"):
        print(f"| {key} | {best[key]:.4f} |")
    print(f"| best epoch | {best['epoch']} of {args.epochs} |")
    print(f"| train images/s | {best['train/img_per_s']:.0f} |")
    print(f"| wall time | {minutes:.1f} min |")
    print(f"run folder: {r['run_dir']}")


if __name__ == "__main__":
    main()
