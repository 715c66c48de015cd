"""One script for a lent GPU machine, under 8 minutes. Measures, side by side in one run:

  1. ViT-B/16 at 224 px, bf16, batch 256, 500 names, on synthetic batches through raysys's
     own train_one_epoch: img/s, MFU, peak memory, without and with torch.compile. The FLOPs
     of one training image (forward + backward) are counted on the timm model itself by
     torch's FlopCounterMode (~105 GFLOP for ViT-B/16 at 224 px);
  2. the full raysys path on one GPU: 512 px JPEGs -> `raysys pack` shards -> Ray Data decode
     actors -> TorchTrainer: img/s and the fraction of train time spent waiting for data;
  3. a resume on CUDA: the full-path run stops after epoch 1 and is run again; its epochs
     continue (the checkpoint loads to the CPU first, then onto the device).

The full path trains as the preset says (the GPU presets compile); `--set optim.compile=false`
measures it eager. Figures from an H200: benchmarks/RESULTS.md and benchmarks/gpu/.

    python benchmarks/gpu_check.py                      # on the GPU machine
    python benchmarks/gpu_check.py --device cpu --preset vit_base --steps 2 --batch 8
        # the production model's step (ViT-B/16, 500 names) on CPU; no full path, no compile
    python benchmarks/gpu_check.py --device cpu --preset micro --steps 3 --images 128
        # the full path (pack -> Ray Data -> Train -> resume) as a CPU dry run

Writes everything to <out>/gpu_check.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

from raysys.config import load_config
from raysys.model.step import make_trainee, train_one_epoch
from raysys.train.shards import KeyedDraws

NAMES = 500
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0}


def peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def train_gflop_per_image(cfg) -> float:
    """Forward + backward FLOPs of one image through the timm model, counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode

    from raysys.model.vit import build_model

    model = build_model(cfg.model, NAMES, cfg.data.img_size)
    with FlopCounterMode(display=False) as counter:
        model(torch.randn(1, 3, cfg.data.img_size, cfg.data.img_size)).sum().backward()
    return counter.get_total_flops() / 1e9


def synthetic(preset: str, device: torch.device, steps: int, compile_: bool,
              batch: int | None = None) -> dict:
    """Steady-state img/s of train_one_epoch on device-resident uint8 batches."""
    cfg = load_config(preset, sets=[f"optim.compile={str(compile_).lower()}",
                                    "optim.precision=auto"]
                      + ([f"data.worker_batch={batch}"] if batch else []))
    batch = cfg.global_batch
    counts = np.full(NAMES, 100.0)
    t = make_trainee(cfg, counts, device, wrap=lambda m: m, steps_per_epoch=steps)
    rng = np.random.default_rng(0)
    collate = KeyedDraws(0, train=True)
    batches = []
    for s in range(steps):
        b = collate({"image": rng.integers(0, 255, (batch, 3, cfg.data.img_size,
                                                     cfg.data.img_size), np.uint8),
                     "label": rng.integers(0, NAMES, batch),
                     "row": np.arange(batch) + s * batch,
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
    gflop = train_gflop_per_image(cfg)
    return {"img_per_s": img_s, "images": stats["images"], "seconds": seconds,
            "warmup_s": warmup_s, "compile": compile_, "batch": batch,
            "names": NAMES, "gflop_per_train_image": gflop,
            "mfu": img_s * gflop / 1e3 / peak if peak else None,
            "peak_mem_gb": torch.cuda.max_memory_allocated(device) / 2**30
            if device.type == "cuda" else None,
            "loss": stats["train/loss"], "diverged": stats["diverged"]}


def full_path(preset: str, gpu: bool, images: int, epochs: int, work: Path,
              extra: list[str] = ()) -> dict:
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
            f"run.gpus={str(gpu).lower()}", "run.wandb=false", f"run.out={work / 'run'}",
            *extra]
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
    p.add_argument("--batch", type=int, default=0,
                   help="images per step (default: the preset's, 256 for vit_base)")
    p.add_argument("--images", type=int, default=None,
                   help="JPEGs for the full path (default 6144 on cuda; 0 = skip, the CPU "
                        "default)")
    p.add_argument("--epochs", type=int, default=4, help=">= 3: epoch 3 on is steady state")
    p.add_argument("--compile", choices=["auto", "yes", "no"], default="auto",
                   help="also measure with torch.compile (auto: on cuda only; on CPU, "
                        "compiling ViT-B takes minutes)")
    p.add_argument("--set", dest="sets", action="append", default=[],
                   help="KEY=VALUE for the full path's runs, e.g. optim.compile=true")
    p.add_argument("--out", default="results/gpu_check")
    a = p.parse_args(argv)
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: pass --device cpu for a dry run")
    images = a.images if a.images is not None else (6144 if device.type == "cuda" else 0)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "torch": torch.__version__, "preset": a.preset, "full_path_sets": a.sets}
    # A lent GPU is rare: each stage's result is written as soon as it exists, and a stage
    # that fails is recorded (its traceback in the JSON) without losing the others.
    failed = []

    def stage(key: str, fn, *args):
        try:
            value = fn(*args)
        except Exception:  # noqa: BLE001 - recorded, printed and turned into the exit status
            value = {"error": traceback.format_exc()}
            failed.append(key)
            print(f"{key} failed:\n{value['error']}", flush=True)
        else:
            print(f"{key}: {json.dumps(value)}", flush=True)
        (out / "gpu_check.json").write_text(json.dumps(report | {key: value}, indent=1))
        return value

    runs = [(False, "synthetic_eager")]
    if a.compile == "yes" or (a.compile == "auto" and device.type == "cuda"):
        runs.append((True, "synthetic_compile"))
    report["synthetic"] = []
    for compile_, key in runs:
        result = stage(key, synthetic, a.preset, device, a.steps, compile_, a.batch)
        if "error" not in result:
            report["synthetic"].append(result)
    report["full_path"] = None
    if images:
        with tempfile.TemporaryDirectory(prefix="raysys-gpu-check-") as work:
            result = stage("full_path", full_path, a.preset, device.type == "cuda", images,
                           a.epochs, Path(work), a.sets)
            report["full_path"] = None if "error" in result else result
    report["failed"] = failed
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1))
    print(f"device: {report['device']}, torch {report['torch']}, preset {a.preset}")
    print(f"{'measurement':44s} {'img/s':>9s} {'MFU':>6s} {'peak GB':>8s}")
    for s in report["synthetic"]:
        mfu = f"{s['mfu']:.1%}" if s["mfu"] else "n/a"
        mem = f"{s['peak_mem_gb']:.1f}" if s["peak_mem_gb"] else "n/a"
        name = (f"synthetic, batch {s['batch']}, {'torch.compile' if s['compile'] else 'eager'}")
        print(f"{name:44s} {s['img_per_s']:9.1f} {mfu:>6s} {mem:>8s}")
    if report["synthetic"]:
        print(f"FLOPs per training image (fwd + bwd, {NAMES} names): "
              f"{report['synthetic'][0]['gflop_per_train_image']:.1f} GFLOP")
    if (f := report["full_path"]) is not None:
        print(f"{'full path (packed JPEG -> Ray Data -> Train)':44s} {f['img_per_s']:9.0f} "
              f"{'':>6s} {f['peak_mem_gb']:8.1f}")
        print(f"data wait: {f['data_wait_frac']:.1%} of train time; resume ok: "
              f"{f['resume']['ok']}")
    print(f"json: {out / 'gpu_check.json'}")
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)} (tracebacks above and in the JSON)")
    return report


if __name__ == "__main__":
    os.environ.setdefault("WANDB_MODE", "disabled")
    main()
