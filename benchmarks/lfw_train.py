"""Real faces: LFW's 20 largest first names, trained from scratch on the CPU and reported
(`raysys report`), with a per-image split or a person-disjoint one.

    python benchmarks/lfw_train.py --split image --out /tmp/lfw_image
    python benchmarks/lfw_train.py --split group --out /tmp/lfw_group [--preset lfw_small]
        [--set optim.epochs=40 ...] [--set data.test_fraction=0.2]   # with a test split

Prints the lines of summary.md a reader compares: top-1 and balanced accuracy against chance,
the pixel-linear floor and the metadata probe, and the identity-leakage split.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from raysys.config import load_config
from raysys.train.run import fit

LFW = Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw-names" / "index_files"
# LFW's own people where the US SSA data misleads or is silent (benchmarks/lfw_demographics.csv):
# names whose LFW bearers are mostly men while most living US bearers are women (jean: 75 of 78
# images are Jean Chretien, b. 1934, Jean Charest, Jean Todt; ariel: Ariel Sharon only, b. 1928;
# li: Li Peng, Li Zhaoxing; kim: 34 of 52 images are Korean men), and names the SSA lacks, each
# one person (Vajpayee, Jiang Zemin, Koizumi, Megawati, Erdogan, Roh Moo-hyun, Saddam Hussein).
# Birth years are those bearers'. Without it the gender control would call jean and ariel female,
# and a model telling them from jennifer by the faces' gender would pass for name signal. Being
# read off the people the study scores, the rows are circular: each has basis=data, which every
# report flags in its source line.
DEMOGRAPHICS = Path(__file__).resolve().parent / "lfw_demographics.csv"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split", choices=["image", "group"], required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--preset", default="lfw_small")
    p.add_argument("--top-k", type=int, default=20)
    p.add_argument("--set", action="append", default=[])
    a = p.parse_args()
    if not LFW.is_dir():
        raise SystemExit(f"{LFW} not present")
    cfg = load_config(a.preset, sets=[f"data.index_dir={LFW}", f"data.split_by={a.split}",
                                      f"data.top_k={a.top_k}", f"run.out={a.out}",
                                      f"data.demographics={DEMOGRAPHICS}", *a.set])
    t = time.time()
    r = fit(cfg)
    minutes = (time.time() - t) / 60
    summary = (Path(a.out) / "summary.md").read_text()
    keep = [line for line in summary.splitlines() if line.startswith(
        ("- best epoch", "- chance", "| chance", "| pixel-linear", "| metadata", "| **this",
         "| this model", "- val images", "- every val", "- gap", "Name signal", "Scored once",
         "**Primary endpoint", "- Power", "- **Any name signal", "- **Power",
         "- **Name signal beyond", "- Within-gender", "First names carry", "**Warning"))
        or "single train person" in line]
    print(f"\nLFW top-{a.top_k}, split by {a.split}, preset {a.preset}: {minutes:.1f} min, "
          f"best epoch {r['best_epoch']}")
    print("\n".join(keep))
    print(json.dumps({"minutes": minutes, "best": r["best"], "best_epoch": r["best_epoch"]}))


if __name__ == "__main__":
    main()
