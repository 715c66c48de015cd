"""Manifest -> Ray Dataset of uint8 CHW images, decoded by a pool of preprocessing actors.

CPU work per image is kept to what must happen on the CPU: a JPEG draft decode straight to
about the size the crop needs (512 px -> 256 px for a 224 crop, ~5x cheaper than a full decode),
a random-resized crop and a flip on uint8 (OpenCV's resize: ~1.5x PIL's on this path).
Photometric augmentation runs batched on the training device (augment.py).
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import ray
import torch
from PIL import Image
from ray.data.expressions import col
from torchvision.transforms import RandomResizedCrop

from raysys.config import AugmentConfig, DataConfig

VAL_RESIZE_RATIO = 256 / 224  # the seed's resize-256 / center-crop-224, at any img_size


# --- manifest access --------------------------------------------------------------------------

def manifest_files(manifest: str | Path) -> list[str]:
    """A manifest is one Parquet file (image paths) or a `raysys pack` folder of shards."""
    p = Path(manifest)
    if p.is_dir():
        files = sorted(str(f) for f in p.glob("*.parquet"))
        if not files:
            raise FileNotFoundError(f"{p}: no .parquet shards; build it with `raysys pack`")
        return files
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such manifest; build one with `raysys manifest`")
    return [str(p)]


@dataclass
class ClassInfo:
    """What the loss and the report need: label names and per-class train counts."""

    names: list[str]
    train_counts: np.ndarray


def class_info(manifest: str | Path, top_k: int = 0) -> ClassInfo:
    """Labels are ordered by size, so the top-k subset is simply labels < k: no relabelling."""
    files = manifest_files(manifest)
    table = pq.ParquetDataset(files).read(columns=["name", "label", "split"])
    df = table.to_pandas()
    if top_k:
        df = df[df["label"] < top_k]
    names = df[["label", "name"]].drop_duplicates().sort_values("label")["name"].tolist()
    train = df.loc[df["split"] == "train", "label"].to_numpy()
    return ClassInfo(names, np.bincount(train, minlength=len(names)).astype(np.float64))


# --- decoding ---------------------------------------------------------------------------------

JPEG_SOI, JPEG_EOI = b"\xff\xd8", b"\xff\xd9"
REDUCED_JPEG = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
                (2, cv2.IMREAD_REDUCED_COLOR_2), (1, cv2.IMREAD_COLOR))


def decode(source: str | bytes, draft_side: int, short_side: int = 0) -> np.ndarray:
    """RGB uint8 (H, W, 3) with the shorter side no less than draft_side.

    JPEGs of known size (nearly all the data) use OpenCV's reduced decode, which scales by
    1/2^k inside the DCT like PIL's draft mode but runs ~30% faster; anything else goes
    through PIL, which also turns grayscale, CMYK, palette and alpha into RGB."""
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    if data[:2] == JPEG_SOI and short_side:
        # libjpeg pads a cut-off JPEG silently; the missing end marker is what gives it away.
        if data.rstrip(b"\0")[-2:] != JPEG_EOI:
            raise ValueError("truncated JPEG")
        flag = next(f for k, f in REDUCED_JPEG if k == 1 or short_side // k >= draft_side)
        arr = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
        if arr is not None and arr.ndim == 3:
            return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    im = Image.open(io.BytesIO(data))
    im.draft("RGB", (draft_side, draft_side))  # the largest 1/2^k scale still >= the request
    if im.mode != "RGB":
        im = im.convert("RGBA").convert("RGB") if im.mode in ("P", "LA") else im.convert("RGB")
    return np.asarray(im)


class Preprocess:
    """The actor: decode, crop, flip. Emits (image uint8 CHW, label, valid) per input row; a row
    that fails to decode comes out with valid=False and a blank image, never an exception."""

    def __init__(self, train: bool, img_size: int, scale: tuple[float, float] = (0.8, 1.0),
                 hflip: float = 0.5):
        self.train, self.size, self.hflip = train, img_size, hflip
        self.crop = RandomResizedCrop(img_size, scale=scale)
        if train:
            # A crop of the smallest area still spans sqrt(scale_min) of the side.
            self.draft_side = math.ceil(img_size / math.sqrt(scale[0]))
        else:
            self.draft_side = round(img_size * VAL_RESIZE_RATIO)
        # Every actor process starts torch with the same default seed: reseed or all actors
        # would crop identically.
        torch.manual_seed(int.from_bytes(os.urandom(8), "little") & (2**63 - 1))
        self.rng = np.random.default_rng()
        cv2.setNumThreads(1)  # one actor = one core; parallelism comes from the pool

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        sources = batch["image"] if "image" in batch else batch["path"]
        short = np.minimum(batch["width"], batch["height"]) if "width" in batch else None
        n = len(sources)
        out = np.zeros((n, 3, self.size, self.size), dtype=np.uint8)
        valid = np.zeros(n, dtype=bool)
        for i, src in enumerate(sources):
            try:
                arr = decode(src if isinstance(src, str) else bytes(src), self.draft_side,
                             int(short[i]) if short is not None else 0)
                out[i] = self._transform(arr).transpose(2, 0, 1)
                valid[i] = True
            except Exception:
                continue
        return {"image": out, "label": batch["label"].astype(np.int64), "valid": valid}

    def _transform(self, arr: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 -> (img_size, img_size, 3) uint8."""
        s = self.size
        if self.train:
            shape_only = torch.empty(1).expand(1, *arr.shape[:2])  # get_params reads (C, H, W)
            top, left, h, w = self.crop.get_params(shape_only, self.crop.scale, self.crop.ratio)
            arr = resize(arr[top:top + h, left:left + w], s, s)
            return arr[:, ::-1] if self.rng.random() < self.hflip else arr
        h, w = arr.shape[:2]
        scale = round(s * VAL_RESIZE_RATIO) / min(w, h)
        rw, rh = max(s, round(w * scale)), max(s, round(h * scale))
        left, top = (rw - s) // 2, (rh - s) // 2
        return resize(arr, rw, rh)[top:top + s, left:left + s]


def resize(arr: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bilinear; area averaging only when shrinking by more than 1.5x, where bilinear would
    alias (INTER_AREA costs ~4x more at the ~1.1x shrink of a 256 px draft to a 224 crop)."""
    big_shrink = arr.shape[0] > 1.5 * height or arr.shape[1] > 1.5 * width
    return cv2.resize(arr, (width, height),
                      interpolation=cv2.INTER_AREA if big_shrink else cv2.INTER_LINEAR)


# --- the dataset ------------------------------------------------------------------------------

def build_dataset(data: DataConfig, augment: AugmentConfig, split: str) -> ray.data.Dataset:
    """One split of the manifest as a Ray Dataset of {image, label, valid}."""
    files = manifest_files(data.manifest)
    packed = "image" in pq.read_schema(files[0]).names
    source = "image" if packed else "path"
    train = split == "train"
    ds = ray.data.read_parquet(files, shuffle="files" if train and packed else None)
    ds = ds.select_columns([source, "label", "split", "width", "height"])
    ds = ds.filter(expr=col("split") == split)
    if data.top_k:
        ds = ds.filter(expr=col("label") < data.top_k)
    if train and not packed:
        # Rows are only paths here, so a full shuffle is cheap; it re-runs (new order) each epoch.
        ds = ds.random_shuffle()
    # One block per actor call: a manifest is often a single Parquet block, and one block
    # would go to one actor while the rest of the pool idles.
    ds = ds.repartition(target_num_rows_per_block=data.actor_batch_size)
    return ds.map_batches(
        Preprocess,
        fn_constructor_kwargs={"train": train, "img_size": data.img_size,
                               "scale": tuple(augment.scale), "hflip": augment.hflip},
        compute=ray.data.ActorPoolStrategy(size=data.num_actors),
        num_cpus=data.cpus_per_actor,
        batch_size=data.actor_batch_size,
        batch_format="numpy",
    )


class BatchStream:
    """Iterates a worker's shard as (images uint8 on device, labels), dropping and counting
    the rows the actors could not decode."""

    def __init__(self, shard, batch_size: int, device: torch.device, prefetch_batches: int = 4,
                 shuffle_buffer: int = 0):
        self.shard, self.batch_size, self.device = shard, batch_size, device
        self.prefetch, self.shuffle_buffer = prefetch_batches, shuffle_buffer or None
        self.bad_images = 0

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.bad_images = 0  # per pass: each epoch reports its own drops
        for batch in self.shard.iter_torch_batches(
            batch_size=self.batch_size, prefetch_batches=self.prefetch, device=self.device,
            local_shuffle_buffer_size=self.shuffle_buffer,
            pin_memory=self.device.type == "cuda",
        ):
            images, labels, valid = batch["image"], batch["label"], batch["valid"]
            if not bool(valid.all()):
                self.bad_images += int((~valid).sum())
                images, labels = images[valid], labels[valid]
            if len(labels):
                yield images, labels

