"""The per-worker loop of Ray Train: build the model, resume from the latest checkpoint, then
per epoch train, evaluate, write the run folder (rank 0), checkpoint and report to Ray.

Every output a run must leave is written here, as it goes: ASHA's stop kills a trial before
`fit()` returns.
"""

from __future__ import annotations

import itertools
import math
import os
import time

import numpy as np
import ray
import ray.train
import ray.train.torch
import torch
from timm.utils import random_seed

from raysys.config import Config, validate
from raysys.keyed_random import derived_seed
from raysys.model.checkpoint import STATE_FILE, checkpoint_dir
from raysys.model.dist import all_gather_objects, all_reduce, barrier, gather_by_row
from raysys.model.metrics import per_class_table, val_metrics
from raysys.model.step import (
    empty_eval,
    evaluate,
    make_trainee,
    restore_trainee,
    save_trainee,
    seed_epoch,
    train_one_epoch,
)
from raysys.phases import mark, on_first
from raysys.report.controls import within_stratum
from raysys.report.history import run_status, within_key
from raysys.train.console import Console
from raysys.train.rundir import NullWriter, RunWriter
from raysys.train.shards import train_batches, val_batches
from raysys.train.tracking import start_wandb


def run_worker(loop_config: dict) -> None:
    cfg = validate(Config.from_dict(loop_config["config"]))
    mark("worker imports (torch, timm)", cfg.run.out)
    names, counts = loop_config["names"], np.asarray(loop_config["train_counts"], np.float64)
    ledger, spe, run_dir = loop_config["ledger"], loop_config["steps_per_epoch"], cfg.run.out
    rank = ray.train.get_context().get_world_rank()
    # A run the driver stopped (a stall, Ctrl+C) is not restarted; registered, a worker can be
    # stopped by the driver.
    stopped = ray.get(ledger.register.remote(rank, ray.get_runtime_context().current_actor))
    if stopped:
        raise RuntimeError(stopped)
    device = ray.train.torch.get_device()
    metric, seed = cfg.run.metric, cfg.run.seed
    random_seed(derived_seed(seed), 0)  # the same initial weights on every rank and every run
    t = make_trainee(cfg, counts, device, wrap=ray.train.torch.prepare_model,
                     steps_per_epoch=spe)
    mark("model built", run_dir)
    log_prior = torch.log(torch.tensor(counts / counts.sum(), device=device,
                                       dtype=torch.float32))

    # --- resume: the latest checkpoint (after a failure, or a re-run of the same folder)
    start_epoch, best, history = 1, -math.inf, []
    if (ckpt := ray.train.get_checkpoint()) is not None:
        with ckpt.as_directory() as d:
            s = restore_trainee(t, os.path.join(d, STATE_FILE))
        start_epoch, best, history = s["epoch"] + 1, s["best"], s["history"]
    last_epoch = cfg.optim.epochs
    if cfg.run.stop_after:
        last_epoch = min(last_epoch, start_epoch - 1 + cfg.run.stop_after)

    # Each name's gender and gender x generation (the driver's): every epoch's val argmax
    # within the true name's stratum is saved, so the report's within-stratum estimates are
    # selection-free.
    strata = {by: np.asarray(c, np.int64) for by, c in loop_config["strata"].items()}
    writer = RunWriter(run_dir, cfg.to_dict(), names, start_epoch, strata) if rank == 0 \
        else NullWriter()
    say = Console(rank, ledger, cfg.run.name)
    wandb_run = start_wandb(cfg, cfg.run.name, loop_config["wandb_dir"], rank)
    info = {"run_name": cfg.run.name, "arch": cfg.model.arch, "epochs": cfg.optim.epochs,
            "metric": metric, "device": device.type, "class_weights": cfg.loss.class_weights}

    # --- data: the train stream starts at start_epoch (the ledger tells the stream's first
    # stage), and it must know before any rank starts pulling.
    if start_epoch > 1:
        say(f"resumed at epoch {start_epoch} (best {metric} {best:.4f})")
    if rank == 0:
        ray.get(ledger.set_start.remote(start_epoch))
    barrier()
    batches = on_first(train_batches(cfg, ray.train.get_dataset_shard("train"), device),
                       "streams started, first batch", run_dir)
    val_bad = ray.get(ledger.bad_count.remote("val", 0)) if rank == 0 else 0
    nodes = [str(n) for n in all_gather_objects(ray.get_runtime_context().get_node_id())]

    # --- epochs
    for epoch in range(start_epoch, last_epoch + 1):
        seed_epoch(seed, epoch, rank)
        t0 = time.time()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        tr = train_one_epoch(t, itertools.islice(batches, spe), device)
        train_time = time.time() - t0
        eval_model = t.ema.module if t.ema is not None else t.raw
        t_eval = time.time()
        local = evaluate(eval_model, val_batches(cfg, device), t.augment, log_prior, t.amp,
                         device)
        # Features and logits are gathered only when the epoch is the best so far.
        local_feats = local.pop("feat", np.zeros((0, eval_model.num_features), np.float32))
        local_logits = local.pop("logits", np.zeros((0, len(counts)), np.float16))
        local = local or empty_eval(len(counts))
        # The candidates within a stratum are the names val holds, as the report's floors'.
        present = np.zeros(len(counts), bool)
        present[np.concatenate(all_gather_objects(np.unique(local["label"])))] = True
        for by, codes in strata.items():
            local[within_key(by)] = within_stratum(local_logits, local["label"], codes,
                                                   preds=local["pred_tau0.0"], present=present)
        val = gather_by_row(local)
        bad = (ray.get(ledger.bad_count.remote("train", epoch)) + val_bad) if rank == 0 \
            else 0
        metrics = epoch_metrics(epoch, tr, val, counts, train_time, time.time() - t0,
                                eval_time=time.time() - t_eval,
                                bad_images=int(all_reduce(torch.tensor(float(bad))).item()),
                                lr=t.optimizer.param_groups[0]["lr"], device=device)
        # Lists and maps go to the training log only (Tune's loggers want scalars): where each
        # rank ran and where its images were decoded, and each rank's next draw after the
        # epoch, equal between an interrupted and an uninterrupted run and different between
        # ranks.
        extras = {"workers/nodes": nodes,
                  "rng/fingerprint": all_gather_objects(int(torch.randint(2**31, (1,)))),
                  **({f"data/{split}_decoded_by_node": ray.get(
                      ledger.decoded_by_node.remote(split, epoch if split == "train" else 0))
                      for split in ("train", "val")} if rank == 0 else {})}
        # A tie goes to the later epoch, as Ray Train's checkpoint manager ranks ties, so
        # best_model.pth, the summary and fit()'s Result name the same epoch.
        if not tr["diverged"] and metrics[metric] >= best:
            best = metrics[metric]
            emb = gather_by_row({"row": local.get("row", np.zeros(0, np.int64)),
                                 "feat": local_feats, "logits": local_logits},
                                root_only=True)
            labels, preds = val["label"], val["pred_tau0.0"]
            test = score_test(eval_model, cfg, t, log_prior, device, len(counts)) \
                if loop_config["test"] else {}
            writer.save_best(eval_model.state_dict(), epoch, {
                "predictions": preds, "true_labels": labels, "val_rows": val["row"],
                "confidences": val["conf"], "embeddings": emb["feat"], "logits": emb["logits"],
                **test}, per_class_table(labels, preds, names, counts))
        metrics["best/" + metric] = best
        history.append(metrics | extras)
        writer.save_epoch(history, info | {"status": run_status(history, cfg.optim.epochs,
                                                                running=True)},
                          epoch, val["row"], val["pred_tau0.0"],
                          {by: val[within_key(by)] for by in strata})
        wandb_run.log(metrics, step=epoch)
        say(f"epoch {epoch}/{cfg.optim.epochs}  loss {metrics['train/loss']:.4f}  val top-1 "
            f"{metrics['val/top1']:.4f}  bal {metrics['val/balanced_acc']:.4f}  "
            f"{metrics['train/img_per_s']:.0f} img/s" + ("  DIVERGED" if tr["diverged"] else ""))
        # A diverged state is never checkpointed: resuming must not start from NaN weights.
        with checkpoint_dir(rank == 0 and not tr["diverged"]) as d:
            if d is not None:
                save_trainee(t, d / STATE_FILE, epoch=epoch, best=best, history=history)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d)
                             if d is not None else None)
        mark(f"epoch {epoch} reported", run_dir)
        if tr["diverged"]:
            break
    wandb_run.finish()


def score_test(model: torch.nn.Module, cfg: Config, t, log_prior: torch.Tensor,
               device: torch.device, k: int) -> dict[str, np.ndarray]:
    """The held-out test split scored by the model of the epoch val just chose, and saved with
    it: the chosen model's one score on test (the report's primary endpoint). Nothing of it is
    logged or reported to Ray, so no epoch, trial or recipe can be chosen by it. On rank 0;
    every rank scores its share."""
    local = evaluate(model, val_batches(cfg, device, "test"), t.augment, log_prior, t.amp,
                     device)
    empty = {"row": np.zeros(0, np.int64), "label": np.zeros(0, np.int64),
             "pred_tau0.0": np.zeros(0, np.int64), "logits": np.zeros((0, k), np.float16)}
    got = gather_by_row({key: local.get(key, v) for key, v in empty.items()}, root_only=True)
    return {"test_predictions": got["pred_tau0.0"], "test_true_labels": got["label"],
            "test_rows": got["row"], "test_logits": got["logits"]}


def epoch_metrics(epoch: int, tr: dict, val: dict[str, np.ndarray], counts: np.ndarray,
                  train_time: float, epoch_time: float, *, eval_time: float, bad_images: int,
                  lr: float, device: torch.device) -> dict:
    """The epoch's scalar record: what Ray Train reports, Tune schedules on, W&B logs and
    training_log.json keeps."""
    labels = val["label"]
    return {"epoch": epoch, "train/loss": tr["train/loss"], "train/acc": tr["train/acc"],
            "diverged": tr["diverged"],
            **val_metrics(labels, val["top5"], val, counts),
            "val/loss": float(val["nll"].mean()) if len(labels) else float("nan"),
            "train/lr": lr, "train/images": tr["images"],
            "train/img_per_s": tr["images"] / max(train_time, 1e-9),
            "data/wait_frac": tr["data/wait_s"] / max(train_time, 1e-9),
            "time/epoch_s": epoch_time, "time/eval_s": eval_time, "time/end": time.time(),
            "gpu/peak_mem_gb": (torch.cuda.max_memory_allocated(device) / 2**30
                                if device.type == "cuda" else 0.0),
            "data/bad_images": bad_images, "data/num_classes": len(counts)}
