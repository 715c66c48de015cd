"""Mutation check (no Ray): mutmut mutates the pure core (keyed_random, losses, metrics,
analysis, decode) and the code behind the report's verdicts, the split and the config
(intervals, controls, manifest, config; pyproject's [tool.mutmut]), and runs their fast unit
tests against each mutant. Prints the score with and without timeouts, and every survivor with
its diff; the explanations of survivors live in benchmarks/MUTATION.md. A benchmark, not CI
(it takes many minutes). Needs `pip install -e '.[mutation]'`.

    python benchmarks/mutation.py [--max-children 2] [--only raysys.config raysys.data.manifest]
"""

from __future__ import annotations

import argparse
import collections
import os
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
    ap.add_argument("--only", nargs="*", default=[], metavar="MODULE",
                    help="mutate only these modules (dotted, e.g. raysys.report.intervals)")
    a = ap.parse_args()
    if not a.keep:
        shutil.rmtree(ROOT / "mutants", ignore_errors=True)
    patterns = [f"{m}.*" for m in a.only]
    # mutmut forks a child per mutant from a process whose tests ran torch: with an OpenMP
    # thread pool started before the fork, the child's first torch op can hang for ever (and
    # reads as a timeout). One thread starts no pool.
    one_thread = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    subprocess.run([*MUTMUT, "run", "--max-children", str(a.max_children), *patterns], cwd=ROOT,
                   check=False, stdout=subprocess.DEVNULL, env=one_thread)
    listing = subprocess.run([*MUTMUT, "results", "--all", "true"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout
    status = {name: st for name, st in (line.strip().rsplit(": ", 1) for line in
                                        listing.splitlines() if ": " in line)
              if not a.only or any(name.startswith(f"{m}.") for m in a.only)}
    counts = collections.Counter(status.values())
    print(f"mutants: {len(status)}  " + "  ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    # mutmut counts a timeout as detected (the mutant made the tests hang); both scores shown
    for label, killed in (("killed", counts["killed"]),
                          ("killed or timed out", counts["killed"] + counts["timeout"])):
        judged = killed + counts["survived"]
        if judged:
            print(f"score ({label} / judged): {killed}/{judged} = {killed / judged:.1%}")
    for name, st in sorted(status.items()):
        if st == "survived":
            diff = subprocess.run([*MUTMUT, "show", name], cwd=ROOT, capture_output=True,
                                  text=True).stdout
            print(f"\n### {name}\n```diff\n{diff.strip()}\n```")


if __name__ == "__main__":
    main()
