"""Manifest build speed on real LFW index files (header reads dominate): 1 process against the
process pool, side by side in one run. Target: >= 3,000 images/s on this 2-core machine.

    python benchmarks/manifest_speed.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from raysys.config import DataConfig
from raysys.manifest import build_manifest

LFW = Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw-names" / "index_files"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    if not LFW.is_dir():
        print(f"skipped: {LFW} not present")
        return
    cores = os.cpu_count() or 1
    rates = {}
    for workers in (1, cores):
        best = 0.0
        for _ in range(args.repeat):
            t = time.perf_counter()
            df, _ = build_manifest(DataConfig(index_dir=str(LFW)), processes=workers)
            best = max(best, len(df) / (time.perf_counter() - t))
        rates[workers] = best
        print(f"{len(df)} images, {workers} header-reading process(es): {best:,.0f} images/s "
              f"(best of {args.repeat})")
    print(f"pool speed-up: {rates[cores] / rates[1]:.2f}x; target >= 3,000 images/s: "
          f"{rates[cores] >= 3000}")


if __name__ == "__main__":
    main()
