"""benchmarks/RELIABILITY.md from the JSON a test run writes (results/reliability.json): one row
per fault and bad input tried, how often, what the test observed, what was lost, and how long
recovery took. `make test` rebuilds it after every full run; by hand:

    python benchmarks/reliability_table.py [results/reliability.json] > benchmarks/RELIABILITY.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def render(rows: list[dict], src: str) -> str:
    lines = ["# Reliability: faults injected, bad input tried", "",
             f"Rebuilt by `make test-cluster` from `{src}`, which its tests and the "
             "`make test` just before it wrote (tests/test_reliability.py, test_one_machine.py, "
             "test_multinode.py, test_job.py, test_autoscaler.py, train/test_run.py): every "
             "row is what a test observed and asserted in those runs, and a fault test that "
             "fails or is deleted fails its tier instead of leaving its old row here.", "",
             "| fault or bad input | tries | outcome | lost | recovered in |",
             "|---|---|---|---|---|"]
    for r in rows:
        recover = f"{r['recover_s']:.0f} s" if "recover_s" in r else "-"
        lines.append(f"| {r['fault']} | {r['tries']} | {r['outcome']} | {r['lost']} | "
                     f"{recover} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    src = sys.argv[1] if len(sys.argv) > 1 else "results/reliability.json"
    print(render(json.loads(Path(src).read_text()), src), end="")


if __name__ == "__main__":
    main()
