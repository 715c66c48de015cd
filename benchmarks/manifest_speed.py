"""Manifest build speed on real LFW index files, side by side in one run:
- build_manifest in-process with 1 header-reading process against the pool (header reads
  dominate; target >= 3,000 images/s on this 2-core machine);
- the whole `raysys manifest` command as a user runs it (Python start, imports, headers, Parquet
  write; target >= 2,000 images/s), and which heavy modules it loaded (none of torch, timm, ray).

    python benchmarks/manifest_speed.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from raysys.config import DataConfig
from raysys.data.manifest import build_manifest

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
    command = whole_command(len(df), args.repeat)
    print(f"whole `raysys manifest` command: {command['rate']:,.0f} images/s (best of "
          f"{args.repeat}, {command['seconds']:.2f} s); heavy modules loaded: "
          f"{command['loaded'] or 'none'}; target >= 2,000 images/s: {command['rate'] >= 2000}")


def whole_command(images: int, repeat: int) -> dict:
    """`raysys manifest` in a fresh interpreter, timed from outside, as a user would."""
    code = ("import json, sys; from raysys.cli import main; rc = main(sys.argv[1:]); "
            "print(json.dumps(sorted(m for m in ('torch', 'timm', 'ray') if m in sys.modules)));"
            " sys.exit(rc)")
    best, loaded = float("inf"), []
    with tempfile.TemporaryDirectory() as d:
        for _ in range(repeat):
            t = time.perf_counter()
            r = subprocess.run([sys.executable, "-c", code, "manifest", "--index-dir", str(LFW),
                                "--out", f"{d}/m.parquet"], capture_output=True, text=True,
                               check=True)
            best = min(best, time.perf_counter() - t)
            loaded = json.loads(r.stdout.splitlines()[-1])
    return {"seconds": best, "rate": images / best, "loaded": loaded}


if __name__ == "__main__":
    main()
