"""A single run against timm's `train.py` on the same task, side by side, both from a cold
start: LFW's 10 largest first names, person-disjoint split, the micro ViT at 64 px (patch 8,
dim 128, depth 4, 4 heads), 10 epochs, batch 64, CPU. timm reads an ImageFolder of symlinks
to exactly raysys's split; both use AdamW at lr 5e-4, wd 0.05, 1 warmup epoch + cosine,
label smoothing 0.1, RandomResizedCrop(0.8-1), flip, jitter 0.2, erasing 0.25.

timm's train.py is not in the pip package: take it from the timm repository
(huggingface/pytorch-image-models) and pass its path; without it only raysys runs.

    python benchmarks/vs_timm.py --timm-train /path/to/pytorch-image-models/train.py
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from raysys.config import DataConfig
from raysys.data.manifest import build_manifest, write_manifest
from raysys.report.history import read_history

LFW = Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw-names" / "index_files"
MODEL = {"patch_size": 8, "embed_dim": 128, "depth": 4, "num_heads": 4}


def image_folder(df, root: Path) -> None:
    """root/{train,validation}/<name>/<row>.jpg -> the manifest's files (symlinks)."""
    for row in df.itertuples():
        split = "train" if row.split == "train" else "validation"
        link = root / split / row.name / f"{row.row}{Path(row.path).suffix}"
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(row.path)


def timed(cmd: list[str], log: Path) -> float:
    t = time.perf_counter()
    with open(log, "w") as fh:
        subprocess.run(cmd, check=True, stdout=fh, stderr=subprocess.STDOUT,
                       env=dict(os.environ, WANDB_MODE="disabled"))
    return time.perf_counter() - t


def profile(start: float, end: float, log: list[dict], summary: Path) -> dict[str, float]:
    """Where a run's wall time went, from its own records: the epochs' start and end times
    (training_log.json) and the report's file time."""
    first = log[0]["time/end"] - log[0]["time/epoch_s"]
    report_end = summary.stat().st_mtime
    return {"start-up (Python, Ray, Train workers, stream) to epoch 1": first - start,
            "epoch 1": log[0]["time/epoch_s"],
            f"epochs 2-{len(log)}": log[-1]["time/end"] - log[0]["time/end"],
            "teardown and report": report_end - log[-1]["time/end"],
            "shutdown": end - report_end}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--timm-train", help="path to timm's train.py (skipped when absent)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--top-k", type=int, default=10)
    a = p.parse_args()
    if not LFW.is_dir():
        raise SystemExit(f"{LFW} not present")
    work = Path(tempfile.mkdtemp(prefix="vs_timm_"))
    df, report = build_manifest(DataConfig(index_dir=str(LFW), split_by="group",
                                           top_k=a.top_k))
    write_manifest(df, report, str(work / "manifest.parquet"))
    image_folder(df, work / "imagefolder")
    # Per-data-set caches, built before either run is timed like the manifest and the image
    # folder: the report's floors are computed once per manifest and split.
    from raysys.report.floors import compute_floors

    compute_floors(DataConfig(manifest=str(work / "manifest.parquet")))
    print(f"LFW top-{a.top_k}, person-disjoint: train {(df.split == 'train').sum()}, val "
          f"{(df.split == 'val').sum()} images; {a.epochs} epochs, batch 64, CPU "
          f"({os.cpu_count()} cores)")

    raysys = [sys.executable, "-m", "raysys.cli", "train", "--manifest",
              str(work / "manifest.parquet"), "--preset", "micro", "--epochs", str(a.epochs),
              "--out", str(work / "raysys"), "--set", "data.img_size=64",
              "--set", "data.batch_size=64", "--set", "data.actor_batch_size=128",
              # both get the whole machine: timm's main process and loader workers; here the
              # Train worker's torch threads and the decode actor
              "--set", f"run.cpus_per_worker={os.cpu_count()}",
              *[x for k, v in MODEL.items() for x in ("--set", f"model.{k}={v}")]]
    start = time.time()
    results = {"raysys": {"seconds": timed(raysys, work / "raysys.log")}}
    log = read_history(str(work / "raysys"))
    results["raysys"]["val_top1"] = max(h["val/top1"] for h in log)
    results["raysys"]["profile"] = profile(start, start + results["raysys"]["seconds"], log,
                                           work / "raysys" / "summary.md")

    if a.timm_train and Path(a.timm_train).exists():
        timm = [sys.executable, a.timm_train, str(work / "imagefolder"),
                "--model", "vit_tiny_patch16_224", "--model-kwargs",
                *[f"{k}={v}" for k, v in MODEL.items()], "img_size=64", "--img-size", "64",
                "--num-classes", str(a.top_k), "--epochs", str(a.epochs), "--batch-size", "64",
                "--device", "cpu", "--workers", str(os.cpu_count()), "--opt", "adamw",
                "--lr", "5e-4", "--weight-decay", "0.05", "--sched", "cosine",
                "--warmup-epochs", "1", "--smoothing", "0.1", "--scale", "0.8", "1.0",
                "--color-jitter", "0.2", "--reprob", "0.25", "--drop-path", "0",
                "--train-split", "train", "--val-split", "validation",
                "--output", str(work / "timm"), "--checkpoint-hist", "1",
                "--log-interval", "1000", "--no-prefetcher"]
        results["timm"] = {"seconds": timed(timm, work / "timm.log")}
        summary = next((work / "timm").rglob("summary.csv"))
        rows = list(csv.DictReader(open(summary)))
        results["timm"]["val_top1"] = max(float(r["eval_top1"]) for r in rows) / 100
    else:
        print("timm peer skipped: pass --timm-train /path/to/train.py")

    print(f"\n{'':8s} {'wall s':>8s} {'best val top-1':>15s}")
    for name, r in results.items():
        print(f"{name:8s} {r['seconds']:8.1f} {r['val_top1']:15.4f}")
    if "timm" in results:
        ratio = results["raysys"]["seconds"] / results["timm"]["seconds"]
        print(f"raysys / timm wall time: {ratio:.2f}x (goal <= 1.0x)")
    print("raysys's wall time, by phase (s): " + ", ".join(
        f"{k} {v:.1f}" for k, v in results["raysys"]["profile"].items()))
    print(f"logs: {work}")


if __name__ == "__main__":
    main()
