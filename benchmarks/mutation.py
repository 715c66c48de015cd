"""Mutation check of the pure core (no Ray): mutmut mutates keyed_random, losses, metrics,
analysis and the decode/crop code (pyproject's [tool.mutmut]) and runs their fast unit tests
against each mutant. Prints the score and every survivor with its diff; the explanations of
survivors live in benchmarks/MUTATION.md. A benchmark, not CI (it takes many minutes).

    python benchmarks/mutation.py [--max-children 2]
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MUTMUT = [sys.executable, "-m", "mutmut"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-children", type=int, default=2)
    ap.add_argument("--keep", action="store_true", help="reuse mutants/ from an earlier run")
    a = ap.parse_args()
    if not a.keep:
        shutil.rmtree(ROOT / "mutants", ignore_errors=True)
    subprocess.run([*MUTMUT, "run", "--max-children", str(a.max_children)], cwd=ROOT,
                   check=False, stdout=subprocess.DEVNULL)
    listing = subprocess.run([*MUTMUT, "results", "--all", "true"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout
    status = dict(line.strip().rsplit(": ", 1) for line in listing.splitlines() if ": " in line)
    counts = collections.Counter(status.values())
    judged = counts["killed"] + counts["survived"]
    print(f"mutants: {len(status)}  " + "  ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if judged:
        print(f"score: {counts['killed']}/{judged} = {counts['killed'] / judged:.1%} killed")
    for name, st in sorted(status.items()):
        if st == "survived":
            diff = subprocess.run([*MUTMUT, "show", name], cwd=ROOT, capture_output=True,
                                  text=True).stdout
            print(f"\n### {name}\n```diff\n{diff.strip()}\n```")


if __name__ == "__main__":
    main()
