"""Manifest -> Ray Data -> uint8 image batches, for the whole run at once.

- **Train** is one stream for all remaining epochs: epoch numbers -> each epoch's work list
  in a seeded order (one short task per epoch) -> a pool of decode actors. It executes once
  per run, so the actor pool, imports and split start once, not every epoch (7-12 s per epoch
  measured when each epoch re-executed). The loop cuts the stream into epochs by step count.
- **Val** is decoded once per run (its transform is deterministic), materialised in the object
  store, and split without dropping rows (`equal=False`), so every val image is scored exactly
  once per epoch for any number of workers.
- **Bad rows** are dropped inside the decode actors, before the stream is split, so every rank
  takes the same number of steps. A `RunLedger` actor counts them per epoch and stops the run
  with a clear error once an epoch passes `data.max_bad_fraction`.
- **Randomness** of crop and flip is a function of (run seed, epoch, row), not of the actor.

Work units: a path manifest has one unit per image (a global per-epoch shuffle of paths is
cheap); a `raysys pack` folder has one unit per Parquet row group of pre-shuffled JPEG bytes,
shuffled per epoch and mixed further by a local shuffle buffer in the loop.
"""

from __future__ import annotations

import io
import json
import math
from collections import defaultdict
from dataclasses import dataclass

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray
import ray.train
from PIL import Image

from raysys import storage
from raysys.config import Config, DataConfig, steps_per_epoch
from raysys.keyed_random import derived_seed, keyed_uniform, row_keys

VAL_RESIZE_RATIO = 256 / 224  # the seed's resize-256 / center-crop-224, at any img_size
DECODE_STREAM = 1  # keyed_random stream id of the decode actors
CROP_TRIES = 10


class BadDataError(RuntimeError):
    """Too many images of an epoch could not be decoded; the message names examples."""


# --- what the driver knows about the images ---------------------------------------------------

@dataclass
class Source:
    """Names, train counts and each split's work units, read once on the driver."""

    names: list[str]
    train_counts: np.ndarray
    packed: bool
    units: dict[str, pa.Table]  # split -> one row per image, or per packed row group
    images: dict[str, int]  # split -> images


def is_packed(manifest: str) -> bool:
    return storage.is_dir(manifest)


def load_source(data: DataConfig) -> Source:
    """Read the manifest (or a packed folder) and keep the top-k names (labels < k)."""
    manifest = data.manifest
    if not storage.exists(manifest):
        raise FileNotFoundError(f"{manifest}: no such manifest; build one with `raysys manifest`"
                                " or pass --index-dir")
    folder = manifest if is_packed(manifest) else storage.parent(manifest)
    names = storage.read_json(storage.join(folder, "names.json"))
    if data.top_k:
        if data.top_k > len(names):
            raise ValueError(f"data.top_k={data.top_k} but {manifest} has only {len(names)} "
                             "names; use a smaller top_k (0 = all names)")
        names = names[:data.top_k]
    k = len(names)
    units, images = {}, {}
    if is_packed(manifest):
        for split in ("train", "val"):
            units[split] = _row_group_units(storage.join(manifest, split), k)
            images[split] = int(pc.sum(units[split]["take"]).as_py() or 0)
        train_labels = _packed_labels(units["train"])
        units = {split: t.drop_columns(["labels"]) for split, t in units.items()}
    else:
        fs, path = storage.filesystem(manifest)
        table = pq.read_table(path, filesystem=fs, columns=["row", "path", "label", "split",
                                                            "width", "height"])
        table = table.filter(pc.less(table["label"], k))
        for split in ("train", "val"):
            units[split] = table.filter(pc.equal(table["split"], split)).drop_columns(["split"])
            images[split] = units[split].num_rows
        train_labels = units["train"]["label"].to_numpy()
    counts = np.bincount(train_labels, minlength=k).astype(np.float64)
    if (counts == 0).any():
        empty = [names[i] for i in np.flatnonzero(counts == 0)]
        raise ValueError(f"{len(empty)} names have no train images ({', '.join(empty[:8])}): "
                         "their whole identity groups fell in val. Train on data.top_k names, "
                         "or rebuild the manifest with data.split_by=image")
    return Source(names, counts, is_packed(manifest), units, images)


def _row_group_units(folder: str, k: int) -> pa.Table:
    """One unit per row group of a packed split: (file, rg, take = rows with label < k)."""
    fs, _ = storage.filesystem(folder)
    files, rgs, takes, labels = [], [], [], []
    for name in storage.listdir(folder):
        if not name.endswith(".parquet"):
            continue
        path = storage.join(folder, name)
        pf = pq.ParquetFile(storage.filesystem(path)[1], filesystem=fs)
        for rg in range(pf.num_row_groups):
            lab = pf.read_row_group(rg, columns=["label"])["label"].to_numpy()
            keep = lab[lab < k]
            if len(keep):
                files.append(path)
                rgs.append(rg)
                takes.append(len(keep))
                labels.append(keep.tolist())
    if not files:
        raise FileNotFoundError(f"{folder}: no .parquet shards; rebuild with `raysys pack`")
    return pa.table({"file": files, "rg": rgs, "take": takes,
                     "labels": pa.array(labels, pa.list_(pa.int64()))})


def _packed_labels(units: pa.Table) -> np.ndarray:
    return np.concatenate([np.asarray(x) for x in units["labels"].to_pylist()])


# --- the ledger: start epoch, bad rows, console lines -----------------------------------------

@ray.remote(num_cpus=0)
class RunLedger:
    """One per run, on the driver's node, so it outlives a lost worker node. The decode actors
    report what they dropped; rank 0 sets the epoch a (re)started stream begins at and sends
    its one-line epoch summaries, which the driver prints."""

    def __init__(self, rows_per_epoch: dict[str, int], max_bad_fraction: float):
        self.rows, self.max_bad = rows_per_epoch, max_bad_fraction
        self.start = 1
        self.seen: dict = defaultdict(int)
        self.bad: dict = defaultdict(list)
        self.decoder_nodes: set[str] = set()
        self.fatal: str | None = None
        self.lines: list[str] = []

    def set_start(self, epoch: int) -> None:
        """A (re)started train stream begins here; counts of epochs it replays start over."""
        self.start = epoch
        for key in [k for k in self.seen if k[0] == "train" and k[1] >= epoch]:
            self.seen.pop(key)
            self.bad.pop(key, None)

    def start_epoch(self) -> int:
        return self.start

    def record(self, split: str, epoch: int, seen: int, bad: list[str], node: str) -> str | None:
        """Add one decode batch; returns the error message once the epoch is over the limit."""
        key = (split, epoch)
        self.seen[key] += seen
        self.bad[key] += bad
        self.decoder_nodes.add(node)
        limit = self.max_bad * self.rows[split]
        if len(self.bad[key]) > limit and self.fatal is None:
            n = len(self.bad[key])
            self.fatal = (
                f"{n} of {self.rows[split]} {split} images in epoch {epoch} could not be "
                f"decoded, more than data.max_bad_fraction={self.max_bad:g}. Examples: "
                + "; ".join(self.bad[key][:5]) + ". Fix or remove them and rebuild the "
                "manifest (`raysys manifest`), or raise data.max_bad_fraction")
        return self.fatal

    def bad_rows(self, split: str, epoch: int) -> list[str]:
        return list(self.bad.get((split, epoch), []))

    def state(self) -> dict:
        return {"fatal": self.fatal, "decoder_nodes": sorted(self.decoder_nodes)}

    def log(self, line: str) -> None:
        self.lines.append(line)

    def drain(self) -> list[str]:
        lines, self.lines = self.lines, []
        return lines


def create_ledger(source: Source, data: DataConfig):
    """Pinned to the driver's node: the controller lives there too, and a lost worker node
    must not take the run's accounting with it."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = ray.get_runtime_context().get_node_id()
    return RunLedger.options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False)
    ).remote(source.images, data.max_bad_fraction)


# --- decoding ---------------------------------------------------------------------------------

JPEG_SOI, JPEG_EOI = b"\xff\xd8", b"\xff\xd9"
REDUCED_JPEG = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
                (2, cv2.IMREAD_REDUCED_COLOR_2), (1, cv2.IMREAD_COLOR))


def decode(data: bytes, draft_side: int, short_side: int = 0, max_pixels: int = 0
           ) -> np.ndarray:
    """RGB uint8 (H, W, 3) with the shorter side no less than draft_side.

    JPEGs of known size (nearly all the data) use OpenCV's reduced decode, which scales by
    1/2^k inside the DCT like PIL's draft mode but runs ~30% faster; anything else goes
    through PIL, which also turns grayscale, CMYK, palette, 16-bit and alpha into RGB."""
    if data[:2] == JPEG_SOI and short_side:
        # libjpeg pads a cut-off JPEG silently; the missing end marker is what gives it away.
        if data.rstrip(b"\0")[-2:] != JPEG_EOI:
            raise ValueError("truncated JPEG")
        flag = next(f for k, f in REDUCED_JPEG if k == 1 or short_side // k >= draft_side)
        arr = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
        if arr is not None and arr.ndim == 3:
            return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    im = Image.open(io.BytesIO(data))
    if max_pixels and im.width * im.height > max_pixels:  # header only: no decode yet
        raise ValueError(f"{im.width}x{im.height} exceeds data.max_pixels")
    im.draft("RGB", (draft_side, draft_side))  # the largest 1/2^k scale still >= the request
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit gray: scale, don't clip
        arr16 = np.asarray(im, dtype=np.float64)
        im = Image.fromarray(np.uint8(arr16 / max(arr16.max(), 1) * 255)).convert("RGB")
    elif im.mode != "RGB":
        im = im.convert("RGBA").convert("RGB") if im.mode in ("P", "LA", "PA") else \
            im.convert("RGB")
    return np.asarray(im)


def resize(arr: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bilinear; area averaging only when shrinking by more than 1.5x, where bilinear would
    alias (INTER_AREA costs ~4x more at the ~1.1x shrink of a 256 px draft to a 224 crop)."""
    big_shrink = arr.shape[0] > 1.5 * height or arr.shape[1] > 1.5 * width
    return cv2.resize(arr, (width, height),
                      interpolation=cv2.INTER_AREA if big_shrink else cv2.INTER_LINEAR)


def center_fraction(arr: np.ndarray, fraction: float) -> np.ndarray:
    """The central `fraction` of each side (LFW frames hold the face in the central half)."""
    if fraction >= 1:
        return arr
    h, w = arr.shape[:2]
    ch, cw = max(1, round(h * fraction)), max(1, round(w * fraction))
    top, left = (h - ch) // 2, (w - cw) // 2
    return arr[top:top + ch, left:left + cw]


def crop_box(u: np.ndarray, h: int, w: int, scale: tuple[float, float],
             ratio: tuple[float, float]) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop.get_params, driven by uniforms u (2 * tries + 2)."""
    area = h * w
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    for t in range(CROP_TRIES):
        target = area * (scale[0] + (scale[1] - scale[0]) * u[t])
        aspect = math.exp(log_r[0] + (log_r[1] - log_r[0]) * u[CROP_TRIES + t])
        cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(u[2 * CROP_TRIES] * (h - ch + 1))
            left = int(u[2 * CROP_TRIES + 1] * (w - cw + 1))
            return top, left, ch, cw
    in_ratio = w / h  # fallback: the whole image, clamped to the ratio range
    if in_ratio < ratio[0]:
        cw, ch = w, round(w / ratio[0])
    elif in_ratio > ratio[1]:
        ch, cw = h, round(h * ratio[1])
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


class Preprocess:
    """The decode actor: work units in, (image uint8 CHW, label, row, epoch) out. A row that
    fails to decode is dropped and reported to the ledger, never raised, until an epoch is over
    data.max_bad_fraction; then the run stops with BadDataError. (ledger=None: just dropped.)"""

    DRAWS = 2 * CROP_TRIES + 2 + 1  # crop tries (area, ratio), position, flip

    def __init__(self, split: str, data: DataConfig, scale: tuple[float, float],
                 ratio: tuple[float, float], hflip: float, seed: int, num_classes: int,
                 ledger):
        self.train, self.split = split == "train", split
        self.size, self.fraction, self.max_pixels = data.img_size, data.center_crop, \
            data.max_pixels
        self.scale, self.ratio, self.hflip, self.seed = scale, ratio, hflip, seed
        self.k, self.ledger = num_classes, ledger
        # The draft decode keeps just enough pixels: the smallest crop area still spans
        # sqrt(scale_min) of the (center-cropped) side.
        need = data.img_size / math.sqrt(scale[0]) if self.train else \
            data.img_size * VAL_RESIZE_RATIO
        self.draft_side = math.ceil(need / data.center_crop)
        self.files: dict[str, pq.ParquetFile] = {}
        self.node = ray.get_runtime_context().get_node_id() if ledger is not None else ""
        cv2.setNumThreads(1)  # one actor = one core; parallelism comes from the pool

    def __call__(self, units: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = self._read_packed(units) if "rg" in units else self._read_paths(units)
        n = len(rows["label"])
        out = np.zeros((n, 3, self.size, self.size), dtype=np.uint8)
        ok = np.zeros(n, dtype=bool)
        keys = row_keys(self.seed, rows["epoch"], rows["row"])
        u = keyed_uniform(keys, self.DRAWS, stream=DECODE_STREAM) if self.train else None
        bad: list[tuple[int, str]] = []  # (epoch, what went wrong)
        for i in range(n):
            try:
                data = rows["bytes"][i] if rows["bytes"] is not None else \
                    _read_file(rows["path"][i])
                arr = decode(data, self.draft_side, int(rows["short"][i]), self.max_pixels)
                out[i] = self._transform(arr, u[i] if u is not None else None).transpose(2, 0, 1)
                ok[i] = True
            except Exception as e:
                bad.append((int(rows["epoch"][i]),
                            f"{rows['where'][i]}: {type(e).__name__}: {e}"[:300]))
        for epoch in np.unique(rows["epoch"]) if self.ledger is not None else []:
            # one epoch per batch, but at an epoch boundary
            fatal = ray.get(self.ledger.record.remote(
                self.split, int(epoch), int((rows["epoch"] == epoch).sum()),
                [msg for e, msg in bad if e == epoch], self.node))
            if fatal:
                raise BadDataError(fatal)
        return {"image": out[ok], "label": rows["label"][ok], "row": rows["row"][ok],
                "epoch": rows["epoch"][ok]}

    def _read_paths(self, units: dict[str, np.ndarray]) -> dict:
        return {"path": units["path"], "bytes": None, "label": units["label"].astype(np.int64),
                "row": units["row"].astype(np.int64), "epoch": units["epoch"].astype(np.int64),
                "short": np.minimum(units["width"], units["height"]), "where": units["path"]}

    def _read_packed(self, units: dict[str, np.ndarray]) -> dict:
        parts = []
        for file, rg, take, epoch in zip(units["file"], units["rg"], units["take"],
                                         units["epoch"], strict=True):
            if file not in self.files:
                fs, path = storage.filesystem(file)
                self.files[file] = pq.ParquetFile(path, filesystem=fs)
            t = self.files[file].read_row_group(int(rg), columns=["row", "label", "image",
                                                                   "width", "height", "path"])
            t = t.filter(pc.less(t["label"], self.k)).slice(0, int(take))
            parts.append(t.append_column("epoch", pa.array(np.full(t.num_rows, epoch))))
        t = pa.concat_tables(parts)
        return {"path": None, "bytes": t["image"].to_pylist(),
                "label": t["label"].to_numpy().astype(np.int64),
                "row": t["row"].to_numpy().astype(np.int64),
                "epoch": t["epoch"].to_numpy().astype(np.int64),
                "short": np.minimum(t["width"].to_numpy(), t["height"].to_numpy()),
                "where": t["path"].to_numpy(zero_copy_only=False)}

    def _transform(self, arr: np.ndarray, u: np.ndarray | None) -> np.ndarray:
        """(H, W, 3) uint8 -> (img_size, img_size, 3) uint8."""
        s = self.size
        arr = center_fraction(arr, self.fraction)
        h, w = arr.shape[:2]
        if u is not None:
            top, left, ch, cw = crop_box(u, h, w, self.scale, self.ratio)
            arr = resize(arr[top:top + ch, left:left + cw], s, s)
            return np.ascontiguousarray(arr[:, ::-1]) if u[-1] < self.hflip else arr
        scale = round(s * VAL_RESIZE_RATIO) / min(w, h)
        rw, rh = max(s, round(w * scale)), max(s, round(h * scale))
        left, top = (rw - s) // 2, (rh - s) // 2
        return resize(arr, rw, rh)[top:top + s, left:left + s]


def _read_file(path: str) -> bytes:
    if storage.is_uri(path):
        return storage.read_bytes(path)
    with open(path, "rb") as fh:
        return fh.read()


# --- epochs of work units ---------------------------------------------------------------------

def epoch_units(units: pa.Table, epoch: int, seed: int, rows_per_epoch: int) -> pa.Table:
    """One epoch's units in a seeded order, cut to `rows_per_epoch` images (whole global batches:
    the dropped remainder differs every epoch). Packed units are row groups: the last one taken
    is cut to fit."""
    rng = np.random.default_rng(derived_seed(seed, epoch))
    units = units.take(rng.permutation(units.num_rows))
    if "take" in units.column_names:
        take = units["take"].to_numpy().copy()
        ends = np.cumsum(take)
        if ends[-1] > rows_per_epoch:
            last = int(np.searchsorted(ends, rows_per_epoch))  # first unit reaching the count
            take = take[: last + 1]
            take[-1] -= int(ends[last]) - rows_per_epoch
            units = units.slice(0, last + 1)
        units = units.set_column(units.column_names.index("take"), "take", pa.array(take))
    else:
        units = units.slice(0, rows_per_epoch)
    return units.append_column("epoch", pa.array(np.full(units.num_rows, epoch, np.int64)))


def expand_epochs(batch: dict[str, np.ndarray], units: pa.Table, seed: int,
                  rows_per_epoch: int, ledger) -> pa.Table:
    """epochs -> each epoch's units. Epochs before the ledger's start are skipped, so a stream
    restarted after a failure resumes at the checkpoint's epoch."""
    start = ray.get(ledger.start_epoch.remote())
    parts = [epoch_units(units, int(e), seed, rows_per_epoch)
             for e in batch["epoch"] if int(e) >= start]
    if not parts:
        return units.schema.empty_table().append_column("epoch", pa.array([], pa.int64()))
    return pa.concat_tables(parts)


def actor_pool(data: DataConfig, workers: int) -> ray.data.ActorPoolStrategy:
    """One decode actor per Train worker to start, growing to actors_per_worker each."""
    top = max(1, math.ceil(workers * data.actors_per_worker))
    return ray.data.ActorPoolStrategy(min_size=min(top, workers), max_size=top)


def decode_kwargs(cfg: Config, source: Source, split: str, ledger) -> dict:
    a = cfg.augment
    return {"fn_constructor_kwargs": {
                "split": split, "data": cfg.data, "scale": tuple(a.scale),
                "ratio": tuple(a.ratio), "hflip": a.hflip, "seed": cfg.run.seed,
                "num_classes": len(source.names), "ledger": ledger},
            "compute": actor_pool(cfg.data, cfg.run.workers),
            "num_cpus": cfg.data.cpus_per_actor,
            "batch_size": None,  # one block = one call: blocks are cut to actor_batch_size below
            "batch_format": "numpy",
            **({"label_selector": dict(p.split("=", 1) for p in cfg.data.decode_selector)}
               if cfg.data.decode_selector else {})}


def rows_per_block(cfg: Config, source: Source) -> int:
    """Units per block, so that a block decodes to about actor_batch_size images."""
    if not source.packed:
        return cfg.data.actor_batch_size
    per_unit = max(1.0, source.images["train"] / max(1, source.units["train"].num_rows))
    return max(1, round(cfg.data.actor_batch_size / per_unit))


def train_stream(cfg: Config, source: Source, ledger) -> ray.data.Dataset:
    """Every remaining epoch of training images as one dataset, executed once per run."""
    rows = steps_per_epoch(source.images["train"], cfg.data.batch_size) * cfg.data.batch_size
    epochs = ray.data.from_items([{"epoch": e} for e in range(1, cfg.optim.epochs + 1)],
                                 override_num_blocks=cfg.optim.epochs)
    ds = epochs.map_batches(expand_epochs, batch_size=1, batch_format="numpy", fn_kwargs={
        "units": source.units["train"], "seed": cfg.run.seed, "rows_per_epoch": rows,
        "ledger": ledger})
    # Small blocks: a big one would go to a single actor while the rest of the pool idles.
    # (Fused with the expansion above into one short task per epoch.)
    ds = ds.repartition(target_num_rows_per_block=rows_per_block(cfg, source))
    return ds.map_batches(Preprocess, **decode_kwargs(cfg, source, "train", ledger))


def decode_val(units: dict[str, np.ndarray], **kwargs) -> dict[str, np.ndarray]:
    """Val decodes once per run: plain tasks, no actor pool to start for one pass."""
    return Preprocess(**kwargs)(units)


def val_dataset(cfg: Config, source: Source, ledger) -> ray.data.Dataset:
    """The val images decoded once (deterministic resize + center crop) and kept in the object
    store for every epoch of the run."""
    units = source.units["val"]
    units = units.append_column("epoch", pa.array(np.zeros(units.num_rows, np.int64)))
    ds = ray.data.from_arrow(units).repartition(
        target_num_rows_per_block=rows_per_block(cfg, source))
    kwargs = decode_kwargs(cfg, source, "val", ledger)
    kwargs.pop("compute")
    return ds.map_batches(decode_val, fn_kwargs=kwargs.pop("fn_constructor_kwargs"),
                          **kwargs).materialize()


class SplitConfig(ray.train.DataConfig):
    """Train: equal shards, in order (every rank takes the same steps; reproducible with one
    worker). Val: every row exactly once, shards of unequal size (`equal=True` would drop up to
    world-1 rows per epoch)."""

    def configure(self, datasets, world_size, worker_handles, worker_node_ids, **kwargs):
        out = [{} for _ in range(world_size)]
        hints = worker_node_ids if self._enable_shard_locality else None
        for name, ds in datasets.items():
            ds = ds.copy(ds)
            if ds.name is None:
                ds.set_name(name)
            options = self._resolve_execution_options(name)
            options.preserve_order = name == "train"
            ds.context.execution_options = options
            for i, it in enumerate(ds.streaming_split(world_size, equal=name == "train",
                                                      locality_hints=hints)):
                out[i][name] = it
        return out


def shuffle_buffer(cfg: Config, source: Source) -> int | None:
    """Rows of local shuffle in the loop: packed shards need it (a row group holds ~128 rows of
    one region of the pre-shuffled set); a path manifest is already shuffled globally."""
    size = cfg.data.shuffle_buffer
    if size < 0:
        size = 10 * cfg.local_batch if source.packed else 0
    return size or None


def describe(source: Source) -> str:
    return json.dumps({"names": len(source.names), "packed": source.packed, **source.images})
