"""One script for a lent GPU machine, under 8 minutes. Measures, side by side in one run:

  1. ViT-B/16 at 224 px, bf16, batch 256, on synthetic batches through raysys's own
     train_one_epoch: img/s, MFU (at 105.6 GFLOP per training image = 3 x 2 x 17.6 GMAC),
     peak memory, without and with torch.compile;
  2. the full raysys path on one GPU: 512 px JPEGs -> `raysys pack` shards -> Ray Data decode
     actors -> TorchTrainer: img/s and the fraction of train time spent waiting for data;
  3. a resume on CUDA: the full-path run stops after epoch 1 and is run again; its epochs
     continue (the checkpoint loads to the CPU first, then onto the device).

    python benchmarks/gpu_check.py                      # on the GPU machine
    python benchmarks/gpu_check.py --device cpu --preset micro --steps 3 --images 256  # dry run

Writes everything to <out>/gpu_check.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from raysys.config import load_config
from raysys.model.step import make_trainee, train_one_epoch
from raysys.train.shards import KeyedDraws

GFLOP_PER_TRAIN_IMAGE = {"vit_base": 105.6, "micro": 0.03}  # fwd + bwd, ~3x the forward
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0}


def peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def synthetic(preset: str, device: torch.device, steps: int, compile_: bool) -> dict:
    """Steady-state img/s of train_one_epoch on device-resident uint8 batches."""
    cfg = load_config(preset, sets=[f"optim.compile={str(compile_).lower()}",
                                    "optim.precision=auto"])
    batch = cfg.global_batch
    counts = np.full(500, 100.0)
    t = make_trainee(cfg, counts, device, wrap=lambda m: m, steps_per_epoch=steps)
    rng = np.random.default_rng(0)
    collate = KeyedDraws(0, train=True)
    batches = []
    for s in range(steps):
        b = collate({"image": rng.integers(0, 255, (batch, 3, cfg.data.img_size,
                                                     cfg.data.img_size), np.uint8),
                     "label": rng.integers(0, 500, batch), "row": np.arange(batch) + s * batch,
                     "epoch": np.ones(batch, np.int64)})
        batches.append({k: v.to(device) for k, v in b.items()})
    t0 = time.perf_counter()
    train_one_epoch(t, batches[: max(2, steps // 5)], device)  # warm-up (and compile)
    warmup_s = time.perf_counter() - t0
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    stats = train_one_epoch(t, batches, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    img_s = stats["images"] / seconds
    peak = peak_tflops(device)
    return {"img_per_s": img_s, "warmup_s": warmup_s, "compile": compile_,
            "mfu": img_s * GFLOP_PER_TRAIN_IMAGE.get(preset, float("nan")) / 1e3 / peak
            if peak else None,
            "peak_mem_gb": torch.cuda.max_memory_allocated(device) / 2**30
            if device.type == "cuda" else None,
            "loss": stats["train/loss"], "diverged": stats["diverged"]}


def full_path(preset: str, gpu: bool, images: int, epochs: int, work: Path) -> dict:
    """Ray Data from packed shards of 512 px JPEGs -> TorchTrainer, then a resume."""
    from raysys.data.demo import generate
    from raysys.data.pack import pack
    from raysys.train.run import ensure_manifest, fit

    index = generate(work / "demo", names=max(4, min(48, images // 16)), size=512,
                     images=images, seed=0)
    cfg = load_config(preset, sets=[f"data.index_dir={index}", "data.split_by=group"])
    manifest = ensure_manifest(cfg.data, str(work / "manifest"))
    t0 = time.perf_counter()
    pack(manifest, str(work / "packed"), size=256)
    pack_s = time.perf_counter() - t0
    sets = [f"data.manifest={work / 'packed'}", f"optim.epochs={epochs}",
            f"run.gpus={str(gpu).lower()}", "run.wandb=false", f"run.out={work / 'run'}"]
    first = fit(load_config(preset, sets=sets + ["run.stop_after=1"]))
    resumed = fit(load_config(preset, sets=sets))
    history = resumed["history"]
    # Epoch 1 ran in the first invocation; the resumed one starts its stream at epoch 2, so
    # the steady state is epoch 3 onwards.
    steady = history[2:] or history[-1:]
    return {"images": images, "pack_s": pack_s,
            "img_per_s": float(np.mean([h["train/img_per_s"] for h in steady])),
            "data_wait_frac": float(np.mean([h["data/wait_frac"] for h in steady])),
            "first_epoch_s": history[0]["time/epoch_s"],
            "epoch_s": float(np.mean([h["time/epoch_s"] for h in steady])),
            "peak_mem_gb": max(h["gpu/peak_mem_gb"] for h in history),
            "resume": {"epochs_first": [h["epoch"] for h in first["history"]],
                       "epochs_after": [h["epoch"] for h in history],
                       "ok": [h["epoch"] for h in history] == list(range(1, epochs + 1))
                       and history[0] == first["history"][0]}}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--preset", default="vit_base")
    p.add_argument("--steps", type=int, default=30, help="synthetic steps per measurement")
    p.add_argument("--images", type=int, default=6144, help="JPEGs for the full path")
    p.add_argument("--epochs", type=int, default=4, help=">= 3: epoch 3 on is steady state")
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--out", default="results/gpu_check")
    a = p.parse_args(argv)
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: pass --device cpu for a dry run")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "torch": torch.__version__, "preset": a.preset}
    report["synthetic"] = [synthetic(a.preset, device, a.steps, False)]
    if not a.no_compile:
        report["synthetic"].append(synthetic(a.preset, device, a.steps, True))
    with tempfile.TemporaryDirectory(prefix="raysys-gpu-check-") as work:
        report["full_path"] = full_path(a.preset, device.type == "cuda", a.images, a.epochs,
                                        Path(work))
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1))
    print(f"device: {report['device']}, torch {report['torch']}, preset {a.preset}")
    print(f"{'measurement':40s} {'img/s':>9s} {'MFU':>6s} {'peak GB':>8s}")
    for s in report["synthetic"]:
        mfu = f"{s['mfu']:.1%}" if s["mfu"] else "n/a"
        mem = f"{s['peak_mem_gb']:.1f}" if s["peak_mem_gb"] else "n/a"
        name = f"synthetic, {'torch.compile' if s['compile'] else 'eager'}"
        print(f"{name:40s} {s['img_per_s']:9.0f} {mfu:>6s} {mem:>8s}")
    f = report["full_path"]
    print(f"{'full path (packed JPEG -> Ray Data -> Train)':40s} {f['img_per_s']:9.0f} "
          f"{'':>6s} {f['peak_mem_gb']:8.1f}")
    print(f"data wait: {f['data_wait_frac']:.1%} of train time; resume ok: {f['resume']['ok']}")
    print(f"json: {out / 'gpu_check.json'}")
    return report


if __name__ == "__main__":
    os.environ.setdefault("WANDB_MODE", "disabled")
    main()
