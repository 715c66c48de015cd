"""A Train worker's view of its data shards: batches of tensors on the device, with each training
row's augmentation draws keyed by (run seed, epoch, row), computed in Ray Data's prefetch
threads, off the step."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
import ray.data
import ray.train
import torch
from ray.data.collate_fn import NumpyBatchCollateFn

from raysys.config import Config
from raysys.model.augment import augment_uniforms

# Ray hands read-only arrays to the collate; nothing writes into them (augmentation works on a
# float copy), so torch's warning about that is noise.
warnings.filterwarnings("ignore", message="The given NumPy array is not writable")


class KeyedDraws(NumpyBatchCollateFn):
    """Ray Data collate: numpy batch -> tensors, plus each row's augmentation uniforms
    `aug` (B, AUGMENT_DRAWS) when training."""

    def __init__(self, seed: int, train: bool):
        self.seed, self.train = seed, train

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        out = {"image": torch.from_numpy(batch["image"]),
               "label": torch.from_numpy(batch["label"].astype(np.int64)),
               "row": torch.from_numpy(batch["row"].astype(np.int64))}
        if self.train:
            out["aug"] = torch.from_numpy(augment_uniforms(self.seed, batch["epoch"],
                                                           batch["row"]))
        return out


def train_batches(cfg: Config, shard: ray.data.DataIterator | ray.data.Dataset,
                  device: torch.device) -> Iterator[dict]:
    """One iterator over every remaining epoch's batches (the stream spans the run; the loop
    cuts it into epochs by step count). Full batches only: every rank takes the same steps.
    No local shuffle buffer: its state would cross epochs and differ after a resume; the
    stream's order is keyed instead (stream.py)."""
    return iter(shard.iter_torch_batches(
        batch_size=cfg.local_batch, drop_last=True, prefetch_batches=cfg.data.prefetch_batches,
        collate_fn=KeyedDraws(cfg.run.seed, train=True), device=device,
        pin_memory=device.type == "cuda"))


def val_batches(cfg: Config, device: torch.device, split: str = "val") -> Iterator[dict]:
    """This rank's share of the val (or test) images, each scored once per pass."""
    return ray.train.get_dataset_shard(split).iter_torch_batches(
        batch_size=cfg.local_batch, prefetch_batches=cfg.data.prefetch_batches,
        collate_fn=KeyedDraws(cfg.run.seed, train=False), device=device)
