"""One epoch of training and one of evaluation: plain torch over any iterable of batches, so
the unit tests and benchmarks run them on in-memory batches, and Ray Train's workers on their
data shards (train/loop.py).

Every rank takes the same number of steps each epoch (the stream is split equally and cut into
`steps_per_epoch` full batches), and every rank stops on the same step when a loss turns
non-finite (the flag is all-reduced), so no rank is ever left waiting in a collective.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.scheduler.scheduler import Scheduler
from timm.utils import ModelEmaV3, random_seed

from raysys.config import Config
from raysys.keyed_random import derived_seed
from raysys.model.augment import BatchAugment
from raysys.model.checkpoint import load_state, save_state
from raysys.model.dist import all_reduce
from raysys.model.losses import WeightedSmoothedCE, build_mixup
from raysys.model.metrics import POST_HOC_TAUS, predictions
from raysys.model.vit import build_model, features_and_logits

# --- model, loss, optimiser, schedule ---------------------------------------------------------


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 on CUDA by default (no loss scaling needed), fp32 on the CPU."""
    table = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None,
             "auto": torch.bfloat16 if device.type == "cuda" else None}
    return table[precision]


def build_scheduler(optimizer, cfg: Config, steps_per_epoch: int) -> Scheduler:
    """Per-step linear warmup from min_lr, then cosine to min_lr over the remaining steps:
    stepped with step_update(global step). timm's factory, counted in steps (one "epoch" = one
    step): a warmup of a fractional number of epochs is then rounded to whole steps, and is cut
    to leave at least one step of cosine."""
    total = cfg.optim.epochs * steps_per_epoch
    warmup = min(round(cfg.optim.warmup_epochs * steps_per_epoch), total - 1)
    scheduler, _ = create_scheduler_v2(
        optimizer, sched="cosine", num_epochs=total - warmup, warmup_epochs=warmup,
        warmup_prefix=True, warmup_lr=cfg.optim.min_lr, min_lr=cfg.optim.min_lr,
        step_on_epochs=False, updates_per_epoch=1)
    return scheduler


@dataclass
class Trainee:
    """The things one optimisation step touches."""

    model: torch.nn.Module  # what forward/backward run on (DDP and/or compiled)
    raw: torch.nn.Module  # the plain module: state_dict, eval, embeddings
    optimizer: torch.optim.Optimizer
    scheduler: Scheduler
    scaler: torch.amp.GradScaler
    ema: ModelEmaV3 | None
    criterion: torch.nn.Module
    mixup: object | None
    augment: BatchAugment
    amp: torch.dtype | None
    grad_clip: float
    max_skipped: int
    step: int = 0


def make_trainee(cfg: Config, counts: np.ndarray, device: torch.device,
                 wrap: Callable[[torch.nn.Module], torch.nn.Module], steps_per_epoch: int
                 ) -> Trainee:
    """`wrap` is prepare_model under Ray Train (to device, DDP when world > 1); the unit tests
    and benchmarks pass a bare loop's `lambda m: m`."""
    raw = build_model(cfg.model, len(counts), cfg.data.img_size).to(device)
    model = wrap(raw)
    if cfg.optim.compile:
        model = torch.compile(model)
    # AdamW without decay on norms, biases, position embedding and cls token (timm's rule).
    # lr scales with the global batch: vit_base on 8 GPUs is 5e-4 x 2048/512 = 2e-3.
    optimizer = create_optimizer_v2(raw, opt="adamw", lr=cfg.optim.resolved_lr(
        cfg.global_batch), weight_decay=cfg.optim.weight_decay)
    amp = autocast_dtype(cfg.optim.precision, device)
    return Trainee(
        model=model, raw=raw, optimizer=optimizer,
        scheduler=build_scheduler(optimizer, cfg, steps_per_epoch),
        scaler=torch.amp.GradScaler(device.type, enabled=amp == torch.float16),
        ema=ModelEmaV3(raw, decay=cfg.optim.ema_decay) if cfg.optim.ema_decay else None,
        criterion=WeightedSmoothedCE(cfg.loss, counts).to(device),
        mixup=build_mixup(cfg.augment, len(counts)),
        augment=BatchAugment(cfg.augment, cfg.data.mean, cfg.data.std, device),
        amp=amp, grad_clip=cfg.optim.grad_clip, max_skipped=cfg.optim.max_skipped_steps)


# --- per-epoch seeding, and the state a resume needs -----------------------------------------

def seed_epoch(seed: int, epoch: int, rank: int) -> None:
    """Reseed torch, numpy and random per (run seed, epoch, rank): dropout, drop-path and
    mixup draw the same after a resume as in an uninterrupted run, and differ between ranks,
    so no RNG state needs saving."""
    random_seed(derived_seed(seed, epoch), rank)


def save_trainee(t: Trainee, path, *, epoch: int, best: float, history: list[dict]) -> None:
    save_state(path, model=t.raw, optimizer=t.optimizer, scaler=t.scaler, ema=t.ema,
               step=t.step, epoch=epoch, best=best, history=history)


def restore_trainee(t: Trainee, path) -> dict:
    """Load a checkpoint into t and move its schedule to the saved step; returns
    {step, epoch, best, history}."""
    s = load_state(path, model=t.raw, optimizer=t.optimizer, scaler=t.scaler, ema=t.ema)
    t.step = s["step"]
    t.scheduler.step_update(t.step)
    return s


# --- one epoch of training and one of evaluation ----------------------------------------------

# Steps between two reads of the divergence flags on the host. A read every step (an
# all-reduce and a .tolist()) stalls the GPU's queue once per step; a non-finite loss is found
# at most this many steps late, and a diverged state is never checkpointed anyway.
SYNC_EVERY = 25


def train_one_epoch(t: Trainee, batches: Iterable[dict], device: torch.device) -> dict:
    """One pass over batches of {image uint8, label, aug}. Stops, on every rank at the same
    step, within SYNC_EVERY steps of a non-finite loss (or gradient, without fp16 loss
    scaling), or of `max_skipped` fp16 overflow steps in a row."""
    t.model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device)
    bad = torch.zeros((), dtype=torch.bool, device=device)  # non-finite since the start
    streak = torch.zeros((), dtype=torch.long, device=device)  # fp16 overflow skips in a row
    worst = torch.zeros((), dtype=torch.long, device=device)
    seen, since, waited, diverged = 0, 0, 0.0, False
    it = iter(batches)
    while True:
        tick = time.perf_counter()
        batch = next(it, None)
        waited += time.perf_counter() - tick
        if batch is None:
            break
        x, labels = t.augment(batch["image"], batch["aug"]), batch["label"]
        target = labels
        if t.mixup is not None:  # the batch is full and even (validate + drop_last)
            x, target = t.mixup(x, labels)
        with torch.autocast(device.type, dtype=t.amp or torch.float32, enabled=t.amp is not None):
            logits = t.model(x)
            loss = t.criterion(logits, target)
        t.optimizer.zero_grad(set_to_none=True)
        t.scaler.scale(loss).backward()
        t.scaler.unscale_(t.optimizer)
        # Gradients are already all-reduced (the same norm on every rank); the loss is not.
        overflow = ~torch.isfinite(torch.nn.utils.clip_grad_norm_(t.model.parameters(),
                                                                  t.grad_clip))
        bad |= ~torch.isfinite(loss.detach())
        if not t.scaler.is_enabled():
            bad |= overflow
        t.scaler.step(t.optimizer)  # fp16: skips the update itself when gradients overflowed
        t.scaler.update()
        streak = (streak + 1) * overflow
        worst = torch.maximum(worst, streak)
        t.step += 1
        t.scheduler.step_update(t.step)
        if t.ema is not None:
            t.ema.update(t.raw, step=t.step)
        loss_sum += loss.detach() * len(labels)
        correct += (logits.argmax(1) == labels).sum()
        seen += len(labels)
        since += 1
        if since == SYNC_EVERY:
            since = 0
            if diverged := _diverged(bad, worst, t.max_skipped):
                break
    if since:  # every rank took the same steps, so they all join this last check
        diverged = _diverged(bad, worst, t.max_skipped)
    totals = all_reduce(torch.stack([loss_sum, correct, torch.tensor(float(seen), device=device),
                                     torch.tensor(float(diverged), device=device)]).double())
    loss_total, correct_total, seen_total, div = totals.tolist()
    return {"train/loss": loss_total / max(seen_total, 1),
            "train/acc": correct_total / max(seen_total, 1),
            "images": int(seen_total), "diverged": div > 0, "data/wait_s": waited}


def _diverged(bad: torch.Tensor, worst: torch.Tensor, max_skipped: int) -> bool:
    """Any rank saw a non-finite loss, or too many fp16 overflow skips in a row: one
    all-reduce and one host read."""
    flags = torch.stack([bad.float(), (worst >= max_skipped).float()])
    return bool(all_reduce(flags, op=dist.ReduceOp.MAX).max().item())


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches: Iterable[dict], augment: BatchAugment,
             log_prior: torch.Tensor, amp: torch.dtype | None, device: torch.device
             ) -> dict[str, np.ndarray]:
    """This rank's rows, labels, top-5, post-hoc predictions, confidences, NLL, pooled
    features and logits. Logits are cast to fp32 before any argmax: top-1 and predictions.npy
    come from the same numbers."""
    model.eval()
    keep: dict[str, list] = {}
    for batch in batches:
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            feats, logits = features_and_logits(model, augment(batch["image"]))
        logits = logits.float()
        out = {k: v.cpu().numpy() for k, v in predictions(logits, log_prior).items()}
        log_p = torch.log_softmax(logits, dim=1)
        out |= {"row": batch["row"].cpu().numpy(), "label": batch["label"].cpu().numpy(),
                "feat": feats.float().cpu().numpy(),
                # every name's score, for the report's within-stratum accuracy (fp16 halves
                # a 500-name val set's 87 MB; an argmax over it is the report's, not top-1's)
                "logits": logits.half().cpu().numpy(),
                # per image: the top class's probability (calibration) and the plain NLL
                "conf": log_p.max(dim=1).values.exp().cpu().numpy(),
                "nll": -log_p.gather(1, batch["label"].view(-1, 1)).squeeze(1).cpu().numpy()}
        for k, v in out.items():
            keep.setdefault(k, []).append(v)
    if not keep:  # a rank with no val rows this epoch (more ranks than val blocks)
        return {}
    return {k: np.concatenate(v) for k, v in keep.items()}


def empty_eval(k: int) -> dict[str, np.ndarray]:
    """A rank that got no val rows still joins the gather with correctly shaped arrays."""
    return {"top5": np.zeros((0, min(5, k)), np.int64), "row": np.zeros(0, np.int64),
            "label": np.zeros(0, np.int64), "conf": np.zeros(0, np.float32),
            "nll": np.zeros(0, np.float32),
            **{f"pred_tau{tau}": np.zeros(0, np.int64) for tau in POST_HOC_TAUS}}
