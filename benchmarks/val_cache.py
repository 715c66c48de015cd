"""Val in the object store, decoded against encoded, side by side in one run (issue 17): the
bytes one trial holds for the whole run, and what an evaluation costs, on LFW at 224 px (the
production size), extrapolated to the production val set (20% of 434,528 images).

    python benchmarks/val_cache.py [--size 224] [--top-k 0]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import ray

from raysys.config import load_config
from raysys.data.ledger import create_ledger
from raysys.data.manifest import build_manifest, write_manifest
from raysys.data.source import load_source
from raysys.data.stream import held_val, val_dataset
from raysys.train.shards import KeyedDraws

LFW = Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw-names" / "index_files"
PRODUCTION_VAL = round(0.2 * 434_528)


def measure(manifest: Path, mode: str, size: int) -> dict:
    cfg = load_config("micro", sets=[f"data.manifest={manifest}", f"data.img_size={size}",
                                     "model.patch_size=16", f"data.val_cache={mode}",
                                     "data.actors_per_worker=2"])
    source = load_source(cfg.data)
    ledger = create_ledger(source, cfg.data)
    t = time.perf_counter()
    held = held_val(cfg, source, ledger)
    build = time.perf_counter() - t
    stored = held.size_bytes()
    ds = val_dataset(cfg, source, ledger)
    evals = []
    for _ in range(3):  # the first pays any start-up; the later ones are an epoch's cost
        t = time.perf_counter()
        n = sum(len(b["row"]) for b in ds.iter_torch_batches(
            batch_size=64, collate_fn=KeyedDraws(0, train=False)))
        evals.append(time.perf_counter() - t)
    return {"mode": mode, "images": n, "stored": stored, "per_image": stored / n,
            "build_s": build, "eval_s": min(evals[1:])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--top-k", type=int, default=0)
    a = p.parse_args()
    if not LFW.is_dir():
        print(f"skipped: {LFW} not present")
        return
    ray.init(address="local", num_cpus=4, object_store_memory=1024 * 2**20,
             log_to_driver=False)
    with tempfile.TemporaryDirectory() as d:
        cfg = load_config("micro", sets=[f"data.index_dir={LFW}", f"data.top_k={a.top_k}"])
        df, report = build_manifest(cfg.data)
        write_manifest(df, report, f"{d}/m.parquet")
        rows = [measure(Path(f"{d}/m.parquet"), mode, a.size) for mode in ("decoded",
                                                                            "encoded")]
    print(f"LFW val at {a.size} px, {rows[0]['images']} images; 2-core VM")
    print(f"{'val held as':12s} {'object store':>14s} {'per image':>10s} {'held in':>8s} "
          f"{'per eval':>9s} {'production val (est.)':>22s}")
    for r in rows:
        print(f"{r['mode']:12s} {r['stored'] / 2**20:11.1f} MB {r['per_image'] / 1024:7.1f} KB "
              f"{r['build_s']:7.1f}s {r['eval_s']:8.2f}s "
              f"{r['per_image'] * PRODUCTION_VAL / 2**30:17.2f} GiB")
    dec, enc = rows
    ratio = enc["eval_s"] / max(dec["eval_s"], 1e-9)
    print(f"encoded holds {dec['stored'] / enc['stored']:.1f}x fewer bytes; an evaluation costs "
          f"{enc['eval_s'] - dec['eval_s']:+.2f} s here ({ratio:.1f}x)")


if __name__ == "__main__":
    main()
