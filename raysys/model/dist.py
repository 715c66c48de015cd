"""Collectives that are no-ops on one process, so the step and the loop read the same with one
worker (unit tests, a laptop) and with many (DDP under Ray Train)."""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist


def distributed() -> bool:
    return dist.is_initialized() and dist.get_world_size() > 1


def all_reduce(t: torch.Tensor, op=dist.ReduceOp.SUM) -> torch.Tensor:
    if distributed():
        dist.all_reduce(t, op=op)
    return t


def barrier() -> None:
    if distributed():
        dist.barrier()


def all_gather_objects(obj) -> list:
    if not distributed():
        return [obj]
    parts: list = [None] * dist.get_world_size()
    dist.all_gather_object(parts, obj)
    return parts


def gather_objects_to_root(obj) -> list | None:
    """Every rank's obj on rank 0 (None elsewhere): what only rank 0 writes need not be
    copied to every rank (the best epoch's embeddings and logits: ~350 MB at 87k val images,
    ViT-B, 500 names)."""
    if not distributed():
        return [obj]
    parts: list | None = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(obj, parts, dst=0)
    return parts


def gather_by_row(arrays: dict[str, np.ndarray], root_only: bool = False
                  ) -> dict[str, np.ndarray]:
    """Concatenate every rank's arrays and sort by manifest row: the same order every epoch
    and every run, whichever rank scored which image. root_only: on rank 0 only; the other
    ranks get the keys with no rows."""
    parts = gather_objects_to_root(arrays) if root_only else all_gather_objects(arrays)
    if parts is None:
        return {k: v[:0] for k, v in arrays.items()}
    out = {k: np.concatenate([p[k] for p in parts]) for k in arrays}
    order = np.argsort(out["row"], kind="stable")
    return {k: v[order] for k, v in out.items()}
