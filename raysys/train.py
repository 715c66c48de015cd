"""ViT training on Ray Train: `fit(cfg)` on the driver, `train_loop_per_worker` on each worker.

The same code runs 1 CPU worker in a test and N GPU workers across nodes on a cluster; only
the config differs.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import ray
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from timm.scheduler import CosineLRScheduler
from timm.utils import ModelEmaV3

from raysys.augment import BatchAugment
from raysys.checkpoint import STATE_FILE, checkpoint_dir, load_state, save_state
from raysys.config import Config, validate
from raysys.data import BatchStream, build_dataset, class_info
from raysys.losses import ClassWeightedCE, build_mixup
from raysys.metrics import per_class_table, predictions, val_metrics
from raysys.model import build_model, features_and_logits
from raysys.report import NullWriter, RunWriter, best_entry

RESULTS_ROOT = Path("results/track2_vit_scratch")
BEST_METRIC = "val/top1"


# --- small helpers ----------------------------------------------------------------------------

def print0(rank: int, *args) -> None:
    if rank == 0:
        print(*args, flush=True)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 on CUDA by default (no loss scaling needed), fp32 on the CPU."""
    table = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None,
             "auto": torch.bfloat16 if device.type == "cuda" else None}
    return table[precision]


def build_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW; no decay on norms, biases, position embeddings or the cls token."""
    skip = set(model.no_weight_decay())
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 or name in skip else decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr)


def build_scheduler(optimizer, cfg: Config, steps_per_epoch: int) -> CosineLRScheduler:
    """Per-step linear warmup, then cosine to min_lr: stepped with step_update(global_step)."""
    total = cfg.optim.epochs * steps_per_epoch
    warmup = min(round(cfg.optim.warmup_epochs * steps_per_epoch), total - 1)
    return CosineLRScheduler(optimizer, t_initial=total - warmup, lr_min=cfg.optim.min_lr,
                             warmup_t=warmup, warmup_lr_init=cfg.optim.min_lr,
                             warmup_prefix=True, t_in_epochs=False)


def all_gather(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Concatenate each worker's arrays, same order for every key."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return arrays
    parts: list = [None] * dist.get_world_size()
    dist.all_gather_object(parts, arrays)
    return {k: np.concatenate([p[k] for p in parts]) for k in arrays}


def all_sum(*values: float) -> list[float]:
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return list(values)
    # On the training device: NCCL reduces CUDA tensors only.
    t = torch.tensor(values, dtype=torch.float64, device=ray.train.torch.get_device())
    dist.all_reduce(t)
    return t.tolist()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class Trainee:
    """The things one optimisation step touches."""

    model: torch.nn.Module  # what forward/backward run on (DDP and/or compiled)
    raw: torch.nn.Module  # the plain module: state_dict, eval, embeddings
    optimizer: torch.optim.Optimizer
    scheduler: CosineLRScheduler
    scaler: torch.amp.GradScaler
    ema: ModelEmaV3 | None
    criterion: torch.nn.Module
    mixup: object | None
    augment: BatchAugment
    amp: torch.dtype | None
    grad_clip: float
    step: int = 0


def make_trainee(cfg: Config, counts: np.ndarray, device: torch.device,
                 wrap: Callable[[torch.nn.Module], torch.nn.Module], steps_per_epoch: int,
                 rank: int = 0) -> Trainee:
    """Model, loss, optimiser and schedule from the config. `wrap` is prepare_model under Ray
    Train (to device, DDP when world > 1); the benchmarks pass a bare loop's identity."""
    raw = build_model(cfg.model, len(counts), cfg.data.img_size).to(device)
    model = wrap(raw)
    if cfg.optim.compile:
        model = torch.compile(model)
    # lr scales with the global batch: 1e-3 x 2048/256 = 8e-3 for 8 workers x 256.
    optimizer = build_optimizer(raw, cfg.optim.resolved_lr(cfg.data.batch_size),
                                cfg.optim.weight_decay)
    amp = autocast_dtype(cfg.optim.precision, device)
    return Trainee(
        model=model, raw=raw, optimizer=optimizer,
        scheduler=build_scheduler(optimizer, cfg, steps_per_epoch),
        scaler=torch.amp.GradScaler(device.type, enabled=amp == torch.float16),
        ema=ModelEmaV3(raw, decay=cfg.optim.ema_decay) if cfg.optim.ema_decay else None,
        criterion=ClassWeightedCE(cfg.loss, counts).to(device),
        mixup=build_mixup(cfg.augment, cfg.loss, len(counts)),
        augment=BatchAugment(cfg.augment, cfg.data.mean, cfg.data.std, device,
                             seed=cfg.run.seed * 1000 + rank),
        amp=amp, grad_clip=cfg.optim.grad_clip)


# --- one epoch of training and one of evaluation ----------------------------------------------

def train_one_epoch(t: Trainee, stream: Iterable, device: torch.device) -> dict:
    """One pass over (uint8 images, labels) batches; stops at the first non-finite loss."""
    t.model.train()
    loss_sum = correct = seen = 0.0
    diverged = False
    for images, labels in stream:
        x = t.augment(images, train=True)
        target = labels
        if t.mixup is not None:
            if len(x) % 2:  # timm's Mixup pairs samples within the batch
                x, labels = x[:-1], labels[:-1]
            x, target = t.mixup(x, labels)
        with torch.autocast(device.type, dtype=t.amp or torch.float32, enabled=t.amp is not None):
            logits = t.model(x)
            loss = t.criterion(logits, target)
        t.optimizer.zero_grad(set_to_none=True)
        t.scaler.scale(loss).backward()
        t.scaler.unscale_(t.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(t.model.parameters(), t.grad_clip)
        # Gradients are all-reduced, so every rank sees the same non-finite norm and stops
        # together: no rank is left waiting in a collective.
        if not (torch.isfinite(loss) and torch.isfinite(grad_norm)):
            diverged = True
            break
        t.scaler.step(t.optimizer)
        t.scaler.update()
        t.step += 1
        t.scheduler.step_update(t.step)
        if t.ema is not None:
            t.ema.update(t.raw, step=t.step)
        loss_sum += loss.item() * len(labels)
        correct += (logits.argmax(1) == labels).sum().item()
        seen += len(labels)
    loss_sum, correct, seen, flag = all_sum(loss_sum, correct, seen, float(diverged))
    return {"train/loss": loss_sum / max(seen, 1), "train/acc": correct / max(seen, 1),
            "images": seen, "diverged": flag > 0}


@torch.no_grad()
def evaluate(model: torch.nn.Module, stream: BatchStream, augment: BatchAugment,
             log_prior: torch.Tensor, amp: torch.dtype | None, device: torch.device
             ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Gathered labels and predictions from all workers, plus this worker's embeddings."""
    model.eval()
    keep: dict[str, list] = {"labels": []}
    feats = []
    for images, labels in stream:
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            f, logits = features_and_logits(model, augment(images, train=False))
        for k, v in predictions(logits, log_prior).items():
            keep.setdefault(k, []).append(v.cpu().numpy())
        keep["labels"].append(labels.cpu().numpy())
        feats.append(f.float().cpu().numpy())
    local = {k: np.concatenate(v) for k, v in keep.items() if v}
    return all_gather(local), np.concatenate(feats) if feats else np.zeros((0, 0), np.float32)


# --- the worker -------------------------------------------------------------------------------

def train_loop_per_worker(loop_config: dict) -> None:
    cfg = validate(Config.from_dict(loop_config["config"]))
    names, counts = loop_config["names"], np.asarray(loop_config["train_counts"], np.float64)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    seed_everything(cfg.run.seed + rank)

    # --- model, loss, optimiser, schedule
    global_batch = cfg.data.batch_size
    steps_per_epoch = max(1, math.ceil(counts.sum() / global_batch))
    t = make_trainee(cfg, counts, device, wrap=ray.train.torch.prepare_model,
                     steps_per_epoch=steps_per_epoch, rank=rank)
    raw, optimizer, amp = t.raw, t.optimizer, t.amp
    log_prior = torch.log(torch.tensor(np.maximum(counts, 1) / counts.sum(), device=device,
                                       dtype=torch.float32))

    # --- resume: the latest checkpoint of this run (after a failure, or a re-run of the same out)
    start_epoch, best, history = 1, -1.0, []
    if (ckpt := ray.train.get_checkpoint()) is not None:
        with ckpt.as_directory() as d:
            s = load_state(Path(d) / STATE_FILE, model=raw, optimizer=optimizer, scaler=t.scaler,
                           ema=t.ema, augment_gen=t.augment.gen, device=device)
        t.step, start_epoch, best, history = s["step"], s["epoch"] + 1, s["best"], s["history"]
        t.scheduler.step_update(t.step)
        print0(rank, f"resumed from epoch {s['epoch']} (best {BEST_METRIC} {best:.4f})")
    last_epoch = cfg.optim.epochs
    if cfg.run.stop_after:
        last_epoch = min(last_epoch, start_epoch - 1 + cfg.run.stop_after)

    writer = (RunWriter(Path(loop_config["run_dir"]), cfg.to_dict(), names) if rank == 0
              else NullWriter())
    wandb_run = start_wandb(cfg, loop_config, rank)
    local_batch = max(1, global_batch // world)
    stream = {split: BatchStream(ray.train.get_dataset_shard(split), local_batch, device,
                                 cfg.data.prefetch_batches,
                                 cfg.data.shuffle_buffer if split == "train" else 0)
              for split in ("train", "val")}
    info = {"run_name": loop_config["run_name"], "arch": cfg.model.arch, "epochs": cfg.optim.epochs}

    # --- epochs
    for epoch in range(start_epoch, last_epoch + 1):
        t0 = time.time()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        tr = train_one_epoch(t, stream["train"], device)
        train_time = time.time() - t0
        eval_model = t.ema.module if t.ema is not None else raw
        gathered, local_feats = evaluate(eval_model, stream["val"], t.augment, log_prior, amp,
                                         device)
        labels = gathered["labels"]
        bad = all_sum(sum(s.bad_images for s in stream.values()))[0]
        metrics = {"epoch": epoch, **{k: v for k, v in tr.items() if k != "images"},
                   **val_metrics(labels, gathered["top5"], gathered, counts),
                   "train/lr": optimizer.param_groups[0]["lr"],
                   "train/img_per_s": tr["images"] / max(train_time, 1e-9),
                   "time/epoch_s": time.time() - t0,
                   "gpu/peak_mem_gb": (torch.cuda.max_memory_allocated(device) / 2**30
                                       if device.type == "cuda" else 0.0),
                   "data/bad_images": int(bad)}
        is_best = not tr["diverged"] and metrics[BEST_METRIC] > best
        if is_best:
            best = metrics[BEST_METRIC]
            embeddings = all_gather({"e": local_feats})["e"]
            preds = gathered["pred_tau0.0"]
            writer.save_best(eval_model.state_dict(), epoch, labels, preds, embeddings,
                             per_class_table(labels, preds, names, counts))
        metrics["best/" + BEST_METRIC] = best
        history.append(metrics)
        status = ("diverged" if tr["diverged"] else
                  "finished" if epoch == cfg.optim.epochs else "running")
        writer.save_epoch(history, info | {"status": status})
        wandb_run.log(metrics, step=epoch)
        print0(rank, f"epoch {epoch}/{cfg.optim.epochs}  loss {metrics['train/loss']:.4f}  "
                     f"val top-1 {metrics['val/top1']:.4f}  bal {metrics['val/balanced_acc']:.4f}"
                     f"  {metrics['train/img_per_s']:.0f} img/s"
                     + ("  DIVERGED" if tr["diverged"] else ""))
        # A diverged state is never checkpointed: resuming must not start from NaN weights.
        with checkpoint_dir(rank == 0 and not tr["diverged"]) as d:
            if d is not None:
                save_state(d / STATE_FILE, model=raw, optimizer=optimizer, scaler=t.scaler,
                           ema=t.ema, step=t.step, epoch=epoch, best=best, history=history,
                           augment_gen=t.augment.gen)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d)
                             if d is not None else None)
        if tr["diverged"]:
            break
    wandb_run.finish()


# --- W&B: offline unless a key is configured; a do-nothing stand-in elsewhere ------------------

class NoWandb:
    def log(self, *args, **kwargs) -> None:
        pass

    def finish(self) -> None:
        pass


def start_wandb(cfg: Config, loop_config: dict, rank: int):
    if rank != 0 or not cfg.run.wandb or os.environ.get("WANDB_MODE") == "disabled":
        return NoWandb()
    import wandb

    has_key = bool(os.environ.get("WANDB_API_KEY")) or _netrc_has_wandb()
    try:
        return wandb.init(project=cfg.run.wandb_project, name=loop_config["run_name"],
                          dir=loop_config["run_dir"], config=cfg.to_dict(),
                          mode=os.environ.get("WANDB_MODE") or ("online" if has_key else
                                                                "offline"))
    except Exception as e:  # logging must never cost a training run
        print(f"W&B disabled for this run: {e}", flush=True)
        return NoWandb()


def _netrc_has_wandb() -> bool:
    netrc = Path.home() / ".netrc"
    return netrc.exists() and "api.wandb.ai" in netrc.read_text(errors="ignore")


# --- the driver -------------------------------------------------------------------------------

def resolve_run(cfg: Config) -> tuple[Config, Path]:
    """Fill in the manifest (built from data.index_dir when needed), run name and run folder."""
    from raysys.config import apply_overrides

    run = cfg.run
    name = run.name or (Path(run.out).name if run.out else
                        f"{cfg.model.arch}-{time.strftime('%Y%m%d-%H%M%S')}")
    run_dir = Path(run.out or RESULTS_ROOT / name).resolve()
    manifest = cfg.data.manifest
    if not manifest:
        if not cfg.data.index_dir:
            raise ValueError("no data: pass --manifest M.parquet or --index-dir DIR")
        manifest = str(ensure_manifest(Path(cfg.data.index_dir), run_dir / "data",
                                       cfg.data.split_by))
    cfg = apply_overrides(cfg, {"run": {"name": name, "out": str(run_dir)},
                                "data": {"manifest": str(Path(manifest).resolve())}})
    return cfg, run_dir


def ensure_manifest(index_dir: Path, out_dir: Path, split_by: str = "image") -> Path:
    from raysys.manifest import ManifestOptions, build_manifest, format_report, write_manifest

    out = out_dir / "manifest.parquet"
    if not out.exists():
        df, report = build_manifest(index_dir, ManifestOptions(split_by=split_by))
        write_manifest(df, report, out)
        print(format_report(report), flush=True)
    return out


def init_ray() -> None:
    """Join RAY_ADDRESS's cluster when set, else start a local Ray with at least 4 logical CPUs:
    on a 2-core machine a worker, the preprocessing actors and the Parquet listing (which wants
    a whole free CPU) need more than 2."""
    if not ray.is_initialized():
        if os.environ.get("RAY_ADDRESS"):
            ray.init()
        else:
            ray.init(num_cpus=max(4, os.cpu_count() or 1))


def build_trainer(cfg: Config, run_dir: Path, callbacks: list | None = None,
                  storage: str | None = None, ray_name: str = "checkpoints"
                  ) -> ray.train.torch.TorchTrainer:
    """The TorchTrainer for one run; tune.py builds the same one inside each trial."""
    info = class_info(cfg.data.manifest, cfg.data.top_k)
    # Rank 0 prints one line per epoch; Ray Data's per-operator bars would bury it. Set here,
    # in whichever process builds the datasets (the CLI driver or a Tune trial).
    ray.data.DataContext.get_current().enable_progress_bars = False
    resources = {"CPU": cfg.run.cpus_per_worker} | ({"GPU": 1} if cfg.run.gpus else {})
    return ray.train.torch.TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"config": cfg.to_dict(), "names": info.names,
                           "train_counts": info.train_counts.tolist(),
                           "run_dir": str(run_dir), "run_name": cfg.run.name},
        scaling_config=ray.train.ScalingConfig(num_workers=cfg.run.workers, use_gpu=cfg.run.gpus,
                                               resources_per_worker=resources),
        datasets={split: build_dataset(cfg.data, cfg.augment, split) for split in ("train", "val")},
        dataset_config=ray.train.DataConfig(datasets_to_split=["train", "val"]),
        run_config=ray.train.RunConfig(
            # A fixed name under the run folder: running the same --out again finds the
            # controller's snapshot and resumes from the latest checkpoint.
            name=ray_name, storage_path=storage or str(run_dir),
            checkpoint_config=ray.train.CheckpointConfig(
                num_to_keep=1, checkpoint_score_attribute=BEST_METRIC,
                checkpoint_score_order="max"),
            failure_config=ray.train.FailureConfig(max_failures=cfg.run.max_failures),
            callbacks=callbacks or []),
    )


def fit(cfg: Config) -> dict:
    """Train one run; returns the run folder and the best result from its training log."""
    cfg, run_dir = resolve_run(validate(cfg))
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg.save(run_dir / "config.json")
    init_ray()
    build_trainer(cfg, run_dir).fit()
    history = json.loads((run_dir / "training_log.json").read_text())
    best = best_entry(history, BEST_METRIC)
    return {"run_dir": str(run_dir), "best_val_top1": best[BEST_METRIC],
            "best_epoch": best["epoch"], "diverged": bool(history[-1]["diverged"]),
            "history": history}
