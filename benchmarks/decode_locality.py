"""Where a run's images are decoded, against where its Train worker consumes them: the share of
decoded train bytes that cross nodes, with Ray Data's default placement (SPREAD) and with
raysys's (every task and actor of the stream held to the Train workers' nodes,
data/stream.py:on_nodes), side by side in one run on a simulated multi-node cluster.

The cluster is shaped like cluster/gpu.yaml's, CPUs standing in for GPUs: a 0-CPU head labelled
raysys-role=head and two 4-CPU worker nodes. Each run has one Train worker (1 CPU) and up to
3 decode actors (0.5 CPU each), so its actors fit beside its worker or can be spread.

    python benchmarks/decode_locality.py [--epochs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import ray
from ray.cluster_utils import Cluster

import raysys.train.run as run_module
from raysys.config import DataConfig, load_config
from raysys.data.demo import generate
from raysys.data.manifest import build_manifest, write_manifest
from raysys.data.stream import SplitConfig
from raysys.train.run import fit


class RayDataDefaults(SplitConfig):
    """raysys's split without its placement: Ray Data places the stream's actors as it does
    by default. Defined here, so that Ray ships it by value to Train's DatasetManager."""

    def place(self, ds, worker_node_ids) -> None:
        pass


def crossing_share(run_dir: Path, img_size: int) -> dict:
    """Train rows decoded on a node that ran no Train worker of the run, over all epochs."""
    log = json.loads((run_dir / "training_log.json").read_text())
    rows = crossed = 0
    nodes = set()
    for h in log:
        for node, n in h["data/train_decoded_by_node"].items():
            rows += n
            nodes.add(node)
            crossed += n if node not in h["workers/nodes"] else 0
    return {"rows": rows, "crossed": crossed, "share": crossed / max(rows, 1),
            "gb_crossed": crossed * 3 * img_size ** 2 / 1e9, "decode_nodes": len(nodes)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=2)
    a = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="locality-"))
    index = generate(tmp / "demo", names=12, size=64, images=1200, seed=0)
    df, report = build_manifest(DataConfig(index_dir=str(index), split_by="group"))
    manifest = tmp / "manifest.parquet"
    write_manifest(df, report, str(manifest))
    os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    os.environ.setdefault("RAY_TRAIN_METRICS_ENABLED", "0")
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "labels": {"raysys-role": "head"}})
    for _ in range(2):
        cluster.add_node(num_cpus=4, labels={"raysys-role": "gpu-worker"})
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    results = {}
    try:
        for name, split in (("Ray Data's default (SPREAD)", RayDataDefaults),
                            ("raysys: on the Train worker's node", SplitConfig)):
            run_module.SplitConfig = split
            out = tmp / name.split(":")[0].replace(" ", "_").replace("'", "")
            cfg = load_config("micro", sets=[
                f"data.manifest={manifest}", f"run.out={out}", f"optim.epochs={a.epochs}",
                "data.actors_per_worker=3", "run.figures=false"])
            fit(cfg)
            results[name] = crossing_share(out, cfg.data.img_size)
    finally:
        run_module.SplitConfig = SplitConfig
        ray.shutdown()
        cluster.shutdown()
    print("| placement | train rows decoded | rows decoded on another node | share | "
          "uint8 GB across nodes | nodes that decoded |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['rows']:,} | {r['crossed']:,} | {r['share']:.0%} | "
              f"{r['gb_crossed']:.3f} | {r['decode_nodes']} |")


if __name__ == "__main__":
    main()
