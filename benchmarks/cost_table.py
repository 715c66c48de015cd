"""The cost table of cluster/README.md, computed, not typed: one batch rule (256 images per GPU,
8 GPUs per trial), the production data set's shape, the measured decode rate per core of
raysys's own crop path on packed 256 px JPEGs (measured here, now), and the ViT-B/16 training
rate per GPU from benchmarks/gpu_check.py's JSON (results/gpu_check/gpu_check.json, the
recorded ones in benchmarks/gpu/, or --gpu-json) where it measured the node's GPU model, or
else a stated assumption.

    python benchmarks/cost_table.py            # prints the table
    python benchmarks/cost_table.py --write    # and writes it into cluster/README.md
"""

from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from raysys.config import load_config
from raysys.data.decode import Crops
from raysys.data.demo import production_counts

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "cluster" / "README.md"
BEGIN, END = "<!-- cost table: benchmarks/cost_table.py -->", "<!-- end of cost table -->"

# p4d.24xlarge: 8x A100 40 GB, 96 vCPUs; m6i.4xlarge head. On-demand list prices, us-west-2.
NODE = {"name": "p4d.24xlarge", "gpu": "A100", "gpus": 8, "vcpus": 96, "usd_per_h": 32.77}
HEAD_USD_PER_H = 0.77
# Without a gpu_check.json from an A100: ViT-B/16, bf16, batch 256, training img/s per A100,
# an assumption (timm's published A100 training benchmarks for vit_base_patch16_224 sit
# near 1,000-1,300 img/s with AMP); the table says so in its source line.
ASSUMED_A100_IMG_S = 1300.0
EVAL_SPEEDUP = 3.0  # forward only: ~1/3 of a training step's work
# What each GPU node costs around its trials, in minutes, not measured (no AWS account here):
# EC2's launch of a p4d to SSH (AWS's own figure for large GPU instances: a few minutes), the
# pull of Ray's GPU image (~9 GB compressed at a few hundred MB/s from Docker Hub), the setup
# commands (torch 2.14.1's CUDA wheels, ~2.5 GB with their NVIDIA libraries, then raysys), and
# the idle minutes after its last trial (gpu.yaml's idle_timeout_minutes, read below). A
# baked image (cluster/Dockerfile) pulls ~3 GB more and skips the installs.
NODE_START_MIN = {"boot": 4.0, "image pull": 3.0, "setup (pip installs)": 5.0}
BAKED_START_MIN = {"boot": 4.0, "image pull": 4.0, "setup (pip installs)": 0.5}
EPOCHS, VAL_FRACTION = 100, 0.2
EXPERIMENTS = (  # name, trials, names kept, the share of trials ASHA stops early (mid-run)
    ("2.1 baseline", 1, 500, 0.0),
    ("2.2 mixup / cutmix", 4, 500, 0.25),
    ("2.3 label smoothing", 3, 500, 0.33),
    ("2.4 subsets (30, 100, all)", 3, None, 0.0),
)


def decode_rate_per_core(n: int = 400) -> float:
    """img/s of one core through Crops (train: decode + RandomResizedCrop + flip to 224) on
    256 px JPEGs, the size `raysys pack` writes."""
    rng = np.random.default_rng(0)
    jpegs = []
    for _ in range(16):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (256, 256, 3), np.uint8)).save(buf, "JPEG",
                                                                            quality=95)
        jpegs.append(buf.getvalue())
    cfg = load_config("vit_base")
    crops = Crops(cfg.data, cfg.augment, seed=0, train=True)
    data = [jpegs[i % 16] for i in range(n)]
    args = (["x"] * n, np.full(n, 256), np.ones(n, np.int64), np.arange(n))
    crops(data[:16], *(a[:16] for a in args))  # warm-up
    t = time.perf_counter()
    _, ok, _ = crops(data, *args)
    assert ok.all()
    return n / (time.perf_counter() - t)


def gpu_rate(paths: list[Path]) -> tuple[float, str]:
    """The best ViT-B/16 training rate gpu_check.py measured on the node's own GPU model. A
    rate measured on another GPU (an H200 is ~3x an A100's bf16 peak) is cited, not used."""
    measured = []
    for path in paths:
        if path.exists():
            report = json.loads(path.read_text())
            rates = [s["img_per_s"] for s in report["synthetic"]]
            if report.get("full_path"):
                rates.append(report["full_path"]["img_per_s"])
            measured.append((max(rates), report["device"]))
    on_node = [m for m in measured if NODE["gpu"] in m[1]]
    if on_node:
        rate, device = max(on_node)
        return rate, f"measured by benchmarks/gpu_check.py on {device}"
    best = {device: max(r for r, d in measured if d == device) for _, device in measured}
    elsewhere = "; ".join(f"gpu_check.py measured up to {rate:,.0f} img/s on an {device}, not "
                          "this node's GPU" for device, rate in sorted(best.items()))
    return ASSUMED_A100_IMG_S, (f"**assumed, not measured** on the {NODE['gpu']}"
                                + (f": {elsewhere}" if elsewhere else
                                   ": no GPU has run benchmarks/gpu_check.py for it yet"))


def cluster_yaml() -> dict:
    return yaml.safe_load((ROOT / "cluster" / "gpu.yaml").read_text())


def node_overhead_min(start: dict[str, float]) -> float:
    """Minutes a GPU node bills beyond its trials: start-up, then the idle timeout."""
    return sum(start.values()) + cluster_yaml()["idle_timeout_minutes"]


def table(gpu_img_s: float, gpu_source: str, decode_img_s: float) -> str:
    counts = np.array(production_counts())
    max_nodes = cluster_yaml()["available_node_types"]["gpu_worker"]["max_workers"]
    per_node, baked = node_overhead_min(NODE_START_MIN), node_overhead_min(BAKED_START_MIN)
    decode_cores = NODE["vcpus"] - NODE["gpus"] * 2  # two cores per GPU worker for its loop
    feed = decode_cores * decode_img_s
    train_rate = min(NODE["gpus"] * gpu_img_s, feed)
    lines = [
        f"Sources: GPU rate {gpu_img_s:,.0f} img/s per GPU ({gpu_source}); decode "
        f"{decode_img_s:,.0f} img/s per core (raysys's crop path on 256 px JPEGs, measured by "
        f"this script on the 2-core development VM), so {decode_cores} decode cores feed "
        f"{feed:,.0f} img/s against {NODE['gpus'] * gpu_img_s:,.0f} the GPUs take: the node "
        f"trains at {train_rate:,.0f} img/s. Data: {counts.sum():,} images, 500 names, "
        f"{EPOCHS} epochs, 20% val. Prices: {NODE['name']} ${NODE['usd_per_h']}/h, head "
        f"${HEAD_USD_PER_H}/h (on-demand list prices, us-west-2).",
        "",
        "Each GPU node also bills before and after its trials (minutes, assumed: no AWS run "
        "here): " + ", ".join(f"{k} {v:g}" for k, v in NODE_START_MIN.items())
        + f", then gpu.yaml's idle timeout {cluster_yaml()['idle_timeout_minutes']:g}: "
        f"{per_node:g} min, ${per_node / 60 * NODE['usd_per_h']:.2f} per node per experiment "
        f"({baked:g} min, ${baked / 60 * NODE['usd_per_h']:.2f}, with the baked image of "
        "cluster/Dockerfile). An experiment starts one node per trial it runs at once, up to "
        f"max_workers ({max_nodes}).",
        "",
        "| experiment | trials x epochs | images per epoch (train + val) | hours per trial | "
        "GPU node-hours (training + start/idle) | cost |",
        "|---|---|---|---|---|---|"]
    for name, trials, k, asha in EXPERIMENTS:
        shares = [counts[:30].sum(), counts[:100].sum(), counts.sum()] if k is None else \
            [counts[:k].sum()] * trials
        hours = []
        for images in shares:
            train, val = images * (1 - VAL_FRACTION), images * VAL_FRACTION
            epoch_s = train / train_rate + val / (NODE["gpus"] * gpu_img_s * EVAL_SPEEDUP)
            hours.append(EPOCHS * epoch_s / 3600)
        node_hours = sum(hours) * (1 - asha / 2)  # a stopped trial runs about half its epochs
        overhead = min(trials, max_nodes) * per_node / 60
        wall = max(hours)
        cost = (node_hours + overhead) * NODE["usd_per_h"] + wall * HEAD_USD_PER_H
        per_epoch = " / ".join(f"{s:,.0f}" for s in sorted(set(shares)))
        lines.append(f"| {name} | {trials} x {EPOCHS} | {per_epoch} | "
                     f"{' / '.join(f'{h:.1f}' for h in sorted(set(hours)))} | "
                     f"{node_hours:.1f} + {overhead:.1f} | ${cost:,.0f} |")
    lines += ["", "Trials run side by side (one node each, `max_workers: 4`), so an "
              "experiment's wall time is about one trial's. ASHA's stops are counted as half "
              "a trial each at the share in the script. Add EFS/S3 storage (a few dollars)."]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gpu-json", type=Path, action="append",
                   help="gpu_check.py JSONs (default: results/gpu_check/gpu_check.json and "
                        "the recorded ones in benchmarks/gpu/)")
    p.add_argument("--write", action="store_true", help="replace the table in cluster/README.md")
    a = p.parse_args()
    jsons = a.gpu_json or [ROOT / "results/gpu_check/gpu_check.json",
                           *sorted((ROOT / "benchmarks" / "gpu").glob("*.json"))]
    text = table(*gpu_rate(jsons), decode_rate_per_core())
    print(text)
    if a.write:
        readme = README.read_text()
        block = f"{BEGIN}\n{text}\n{END}"
        if BEGIN in readme:
            head, rest = readme.split(BEGIN, 1)
            readme = head + block + rest.split(END, 1)[1]
        else:
            readme = readme.replace("COST_TABLE", block)
        README.write_text(readme)


if __name__ == "__main__":
    main()
