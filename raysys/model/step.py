"""What runs on each Ray Train worker: one epoch of training, one of evaluation, and the loop
that runs them with checkpoints. `train_one_epoch` and `evaluate` are plain torch over any
iterable of batches, so the unit tests run them on in-memory batches without Ray.

Every rank takes the same number of steps each epoch (the stream is split equally and cut into
`steps_per_epoch` full batches), and every rank stops on the same step when a loss turns
non-finite (the flag is all-reduced), so no rank is ever left waiting in a collective.
"""

from __future__ import annotations

import itertools
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import ray
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler
from timm.utils import ModelEmaV3, random_seed

from raysys.augment import BatchAugment, KeyedDraws
from raysys.checkpoint import STATE_FILE, checkpoint_dir, load_state, save_state
from raysys.config import Config, validate
from raysys.keyed_random import derived_seed
from raysys.losses import WeightedSmoothedCE, build_mixup
from raysys.metrics import per_class_table, predictions, val_metrics
from raysys.model import build_model, features_and_logits
from raysys.report import NullWriter, RunWriter

# --- model, loss, optimiser, schedule ---------------------------------------------------------


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 on CUDA by default (no loss scaling needed), fp32 on the CPU."""
    table = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None,
             "auto": torch.bfloat16 if device.type == "cuda" else None}
    return table[precision]


def build_scheduler(optimizer, cfg: Config, steps_per_epoch: int) -> CosineLRScheduler:
    """Per-step linear warmup, then cosine to min_lr: stepped with step_update(global_step)."""
    total = cfg.optim.epochs * steps_per_epoch
    warmup = min(round(cfg.optim.warmup_epochs * steps_per_epoch), total - 1)
    return CosineLRScheduler(optimizer, t_initial=total - warmup, lr_min=cfg.optim.min_lr,
                             warmup_t=warmup, warmup_lr_init=cfg.optim.min_lr,
                             warmup_prefix=True, t_in_epochs=False)


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
    # lr scales with the global batch: 1e-3 x 2048/256 = 8e-3 for 8 workers x 256.
    optimizer = create_optimizer_v2(raw, opt="adamw", lr=cfg.optim.resolved_lr(
        cfg.data.batch_size), weight_decay=cfg.optim.weight_decay)
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


# --- collectives that are no-ops on one process -----------------------------------------------

def distributed() -> bool:
    return dist.is_initialized() and dist.get_world_size() > 1


def all_reduce(t: torch.Tensor, op=dist.ReduceOp.SUM) -> torch.Tensor:
    if distributed():
        dist.all_reduce(t, op=op)
    return t


def all_gather_objects(obj) -> list:
    if not distributed():
        return [obj]
    parts: list = [None] * dist.get_world_size()
    dist.all_gather_object(parts, obj)
    return parts


def gather_by_row(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Concatenate every rank's arrays and sort by manifest row: the same order every epoch
    and every run, whichever rank scored which image."""
    parts = all_gather_objects(arrays)
    out = {k: np.concatenate([p[k] for p in parts]) for k in arrays}
    order = np.argsort(out["row"], kind="stable")
    return {k: v[order] for k, v in out.items()}


# --- one epoch of training and one of evaluation ----------------------------------------------

def train_one_epoch(t: Trainee, batches: Iterable[dict], device: torch.device) -> dict:
    """One pass over batches of {image uint8, label, aug}. Stops, on every rank at the same
    step, at a non-finite loss or after `max_skipped` fp16 overflow steps in a row."""
    t.model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device)
    seen, skipped, waited, diverged = 0, 0, 0.0, False
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
        grad_norm = torch.nn.utils.clip_grad_norm_(t.model.parameters(), t.grad_clip)
        # Gradients are already all-reduced (same norm everywhere); the loss is not.
        flags = all_reduce(torch.stack([~torch.isfinite(loss.detach()),
                                        ~torch.isfinite(grad_norm)]).float(),
                           op=dist.ReduceOp.MAX).tolist()
        if flags[0] or (flags[1] and not t.scaler.is_enabled()):
            diverged = True
            break
        t.scaler.step(t.optimizer)  # fp16: skips the update itself when gradients overflowed
        t.scaler.update()
        skipped = skipped + 1 if flags[1] else 0
        if skipped >= t.max_skipped:
            diverged = True
            break
        t.step += 1
        t.scheduler.step_update(t.step)
        if t.ema is not None:
            t.ema.update(t.raw, step=t.step)
        loss_sum += loss.detach() * len(labels)
        correct += (logits.argmax(1) == labels).sum()
        seen += len(labels)
    totals = all_reduce(torch.stack([loss_sum, correct, torch.tensor(float(seen), device=device),
                                     torch.tensor(float(diverged), device=device)]).double())
    loss_total, correct_total, seen_total, div = totals.tolist()
    return {"train/loss": loss_total / max(seen_total, 1),
            "train/acc": correct_total / max(seen_total, 1),
            "images": int(seen_total), "diverged": div > 0, "data/wait_s": waited}


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches: Iterable[dict], augment: BatchAugment,
             log_prior: torch.Tensor, amp: torch.dtype | None, device: torch.device
             ) -> dict[str, np.ndarray]:
    """This rank's rows, labels, top-5, post-hoc predictions, confidences, NLL and pooled
    features. Logits are cast to fp32 before any argmax: top-1 and predictions.npy come from
    the same numbers."""
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
                # per image: the top class's probability (calibration) and the plain NLL
                "conf": log_p.max(dim=1).values.exp().cpu().numpy(),
                "nll": -log_p.gather(1, batch["label"].view(-1, 1)).squeeze(1).cpu().numpy()}
        for k, v in out.items():
            keep.setdefault(k, []).append(v)
    if not keep:  # a rank with no val rows this epoch (more ranks than val blocks)
        return {}
    return {k: np.concatenate(v) for k, v in keep.items()}


# --- the worker loop --------------------------------------------------------------------------

def train_loop_per_worker(loop_config: dict) -> None:
    cfg = validate(Config.from_dict(loop_config["config"]))
    names, counts = loop_config["names"], np.asarray(loop_config["train_counts"], np.float64)
    ledger, spe = loop_config["ledger"], loop_config["steps_per_epoch"]
    rank = ray.train.get_context().get_world_rank()
    device = ray.train.torch.get_device()
    metric, seed = cfg.run.metric, cfg.run.seed
    random_seed(derived_seed(seed), 0)  # the same initial weights on every rank and every run
    t = make_trainee(cfg, counts, device, wrap=ray.train.torch.prepare_model,
                     steps_per_epoch=spe)
    log_prior = torch.log(torch.tensor(counts / counts.sum(), device=device,
                                       dtype=torch.float32))

    # --- resume: the latest checkpoint (after a failure, or a re-run of the same folder)
    start_epoch, best, history = 1, -math.inf, []
    if (ckpt := ray.train.get_checkpoint()) is not None:
        with ckpt.as_directory() as d:
            s = load_state(os.path.join(d, STATE_FILE), model=t.raw, optimizer=t.optimizer,
                           scaler=t.scaler, ema=t.ema)
        t.step, start_epoch, best, history = s["step"], s["epoch"] + 1, s["best"], s["history"]
        t.scheduler.step_update(t.step)
    last_epoch = cfg.optim.epochs
    if cfg.run.stop_after:
        last_epoch = min(last_epoch, start_epoch - 1 + cfg.run.stop_after)

    writer = RunWriter(loop_config["run_dir"], cfg.to_dict(), names) if rank == 0 \
        else NullWriter()
    say = Console(rank, ledger, loop_config["run_name"])
    if start_epoch > 1:
        say(f"resumed at epoch {start_epoch} (best {metric} {best:.4f})")
    wandb_run = start_wandb(cfg, loop_config, rank)
    info = {"run_name": loop_config["run_name"], "arch": cfg.model.arch,
            "epochs": cfg.optim.epochs, "metric": metric, "device": device.type,
            "class_weights": cfg.loss.class_weights}

    # --- data: the train stream starts at start_epoch (the ledger tells the stream's first
    # stage), and it must know before any rank starts pulling
    if rank == 0:
        ray.get(ledger.set_start.remote(start_epoch))
    if distributed():
        dist.barrier()
    train_batches = iter(ray.train.get_dataset_shard("train").iter_torch_batches(
        batch_size=cfg.local_batch, drop_last=True, prefetch_batches=cfg.data.prefetch_batches,
        local_shuffle_buffer_size=loop_config["shuffle_buffer"],
        local_shuffle_seed=derived_seed(seed, start_epoch, rank) if
        loop_config["shuffle_buffer"] else None,
        collate_fn=KeyedDraws(seed, train=True), device=device,
        pin_memory=device.type == "cuda"))
    val_shard = ray.train.get_dataset_shard("val")
    val_bad = len(ray.get(ledger.bad_rows.remote("val", 0))) if rank == 0 else 0
    nodes = [str(n) for n in all_gather_objects(ray.get_runtime_context().get_node_id())]

    # --- epochs
    for epoch in range(start_epoch, last_epoch + 1):
        # Per rank and per epoch: dropout, drop-path and mixup draw the same after a resume,
        # and differ between ranks.
        random_seed(derived_seed(seed, epoch), rank)
        fault_point(rank, epoch, loop_config["run_dir"])
        t0 = time.time()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        tr = train_one_epoch(t, itertools.islice(train_batches, spe), device)
        train_time = time.time() - t0
        eval_model = t.ema.module if t.ema is not None else t.raw
        local = evaluate(eval_model, val_shard.iter_torch_batches(
            batch_size=cfg.local_batch, prefetch_batches=cfg.data.prefetch_batches,
            collate_fn=KeyedDraws(seed, train=False), device=device), t.augment, log_prior,
            t.amp, device)
        local_feats = local.pop("feat", np.zeros((0, eval_model.num_features), np.float32))
        val = gather_by_row(local or empty_eval(len(counts)))
        labels, preds = val["label"], val["pred_tau0.0"]
        bad = (len(ray.get(ledger.bad_rows.remote("train", epoch))) + val_bad) if rank == 0 \
            else 0
        metrics = {"epoch": epoch, "train/loss": tr["train/loss"], "train/acc": tr["train/acc"],
                   "diverged": tr["diverged"],
                   **val_metrics(labels, val["top5"], val, counts),
                   "val/loss": float(val["nll"].mean()) if len(labels) else float("nan"),
                   "train/lr": t.optimizer.param_groups[0]["lr"],
                   "train/images": tr["images"],
                   "train/img_per_s": tr["images"] / max(train_time, 1e-9),
                   "data/wait_frac": tr["data/wait_s"] / max(train_time, 1e-9),
                   "time/epoch_s": time.time() - t0, "time/end": time.time(),
                   "gpu/peak_mem_gb": (torch.cuda.max_memory_allocated(device) / 2**30
                                       if device.type == "cuda" else 0.0),
                   "data/bad_images": int(all_reduce(torch.tensor(float(bad))).item()),
                   "data/num_classes": len(counts)}
        # Lists go to the training log only (Tune's loggers want scalars): where each rank ran,
        # and each rank's next draw after the epoch, equal between an interrupted and an
        # uninterrupted run and different between ranks.
        extras = {"workers/nodes": nodes,
                  "rng/fingerprint": all_gather_objects(int(torch.randint(2**31, (1,)))),
                  "data/decoder_nodes": ray.get(ledger.state.remote())["decoder_nodes"]
                  if rank == 0 else []}
        # A tie goes to the later epoch, as Ray Train's checkpoint manager ranks ties, so
        # best_model.pth, the summary and fit()'s Result name the same epoch.
        if not tr["diverged"] and metrics[metric] >= best:
            best = metrics[metric]
            emb = gather_by_row({"row": local.get("row", np.zeros(0, np.int64)),
                                 "feat": local_feats})
            writer.save_best(eval_model.state_dict(), epoch, {
                "predictions": preds, "true_labels": labels, "val_rows": val["row"],
                "confidences": val["conf"], "embeddings": emb["feat"]},
                per_class_table(labels, preds, names, counts))
        metrics["best/" + metric] = best
        history.append(metrics | extras)
        status = ("diverged" if tr["diverged"] else
                  "finished" if epoch == cfg.optim.epochs else "running")
        writer.save_epoch(history, info | {"status": status})
        wandb_run.log(metrics, step=epoch)
        say(f"epoch {epoch}/{cfg.optim.epochs}  loss {metrics['train/loss']:.4f}  val top-1 "
            f"{metrics['val/top1']:.4f}  bal {metrics['val/balanced_acc']:.4f}  "
            f"{metrics['train/img_per_s']:.0f} img/s" + ("  DIVERGED" if tr["diverged"] else ""))
        # A diverged state is never checkpointed: resuming must not start from NaN weights.
        with checkpoint_dir(rank == 0 and not tr["diverged"]) as d:
            if d is not None:
                save_state(d / STATE_FILE, model=t.raw, optimizer=t.optimizer, scaler=t.scaler,
                           ema=t.ema, step=t.step, epoch=epoch, best=best, history=history)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d)
                             if d is not None else None)
        if tr["diverged"]:
            break
    wandb_run.finish()


def empty_eval(k: int) -> dict[str, np.ndarray]:
    """A rank that got no val rows still joins the gather with correctly shaped arrays."""
    from raysys.metrics import POST_HOC_TAUS

    return {"top5": np.zeros((0, min(5, k)), np.int64), "row": np.zeros(0, np.int64),
            "label": np.zeros(0, np.int64), "conf": np.zeros(0, np.float32),
            "nll": np.zeros(0, np.float32),
            **{f"pred_tau{tau}": np.zeros(0, np.int64) for tau in POST_HOC_TAUS}}


# --- console, W&B and the test-only fault hook -----------------------------------------------

class Console:
    """Rank 0's one line per epoch: printed (worker log) and sent to the ledger, whose lines the
    driver prints. Other ranks say nothing."""

    def __init__(self, rank: int, ledger, run_name: str):
        self.on, self.ledger, self.run_name = rank == 0, ledger, run_name

    def __call__(self, line: str) -> None:
        if self.on:
            print(line, flush=True)
            self.ledger.log.remote(f"[{self.run_name}] {line}")


class NoWandb:
    def log(self, *args, **kwargs) -> None:
        pass

    def finish(self) -> None:
        pass


def start_wandb(cfg: Config, loop_config: dict, rank: int):
    """Rank 0 of a single run logs to W&B: online with a key, offline without; never fatal.
    Sweeps log from the Tune driver instead (WandbLoggerCallback), so trials pass wandb=False."""
    if rank != 0 or not cfg.run.wandb or os.environ.get("WANDB_MODE") == "disabled":
        return NoWandb()
    try:
        import wandb

        has_key = bool(os.environ.get("WANDB_API_KEY")) or _netrc_has_wandb()
        return wandb.init(project=cfg.run.wandb_project, name=loop_config["run_name"],
                          dir=loop_config["wandb_dir"], config=cfg.to_dict(),
                          mode=os.environ.get("WANDB_MODE") or ("online" if has_key else
                                                                "offline"))
    except Exception as e:  # logging must never cost a training run
        print(f"W&B disabled for this run: {type(e).__name__}", flush=True)
        return NoWandb()


def _netrc_has_wandb() -> bool:
    netrc = os.path.expanduser("~/.netrc")
    return os.path.exists(netrc) and "api.wandb.ai" in open(netrc, errors="ignore").read()


FAULT_ENV = "RAYSYS_FAULT"  # test-only: "rank=R,epoch=E,after_s=S" -> os._exit(1) once


def fault_point(rank: int, epoch: int, run_dir: str) -> None:
    """Kill this worker process partway through an epoch, once per run folder: the fault
    injection the reliability tests use. Does nothing unless RAYSYS_FAULT is set."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    want = dict(p.split("=") for p in spec.split(","))
    marker = os.path.join(run_dir, ".fault-fired")
    if int(want["rank"]) != rank or int(want["epoch"]) != epoch or os.path.exists(marker):
        return
    import threading

    def die():
        time.sleep(float(want.get("after_s", 1)))
        open(marker, "w").close()
        os._exit(1)

    threading.Thread(target=die, daemon=True).start()
