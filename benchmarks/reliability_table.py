"""benchmarks/RELIABILITY.md from the JSON the test run writes (results/reliability.json):
one row per fault and bad input tried, how often, the outcome, and what was lost.

    make test            # writes results/reliability.json
    python benchmarks/reliability_table.py [results/reliability.json] > benchmarks/RELIABILITY.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> None:
    src = Path(sys.argv[1] if len(sys.argv) > 1 else "results/reliability.json")
    rows = json.loads(src.read_text())
    print("# Reliability: faults injected, bad input tried\n")
    print(f"Built by `python benchmarks/reliability_table.py {src}` from the JSON that `make "
          "test` writes (tests/test_reliability.py, test_multinode.py, test_sweep.py): every "
          "number below is what a test observed and asserted, not prose.\n")
    print("| fault or bad input | tries | outcome | lost |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['fault']} | {r['tries']} | {r['outcome']} | {r['lost']} |")


if __name__ == "__main__":
    main()
