"""Work units -> Ray Data -> uint8 image batches, for the whole run at once.

- **Train** is one stream for all remaining epochs: epoch numbers -> each epoch's work units
  in a seeded order (one short task per epoch) -> a pool of decode actors. It executes once
  per run, so the actor pool, imports and split start once, not every epoch (7-12 s per epoch
  measured when each epoch re-executed). The loop cuts the stream into epochs by step count.
- **Val** is decoded once per run (its transform is deterministic), materialised in the object
  store, and split without dropping rows (`equal=False`), so every val image is scored exactly
  once per epoch for any number of workers.
- **Bad rows** are dropped inside the decode actors, before the stream is split, so every rank
  takes the same number of steps; the run's ledger counts them (ledger.py).
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Iterator

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray
import ray.train

from raysys import storage
from raysys.config import Config, DataConfig, steps_per_epoch
from raysys.data.decode import Crops, read_file
from raysys.data.source import Source
from raysys.errors import BadDataError
from raysys.keyed_random import derived_seed, keyed_uniform, row_keys

MIX_STREAM = 3  # keyed_random stream id of the packed rows' order within a block
NODE_ID_LABEL = "ray.io/node-id"  # every Ray node carries its id as this label

# --- the decode actor -------------------------------------------------------------------------


class DecodeActor:
    """Work units in, (image uint8 CHW, label, row, epoch) out: `read` the encoded images of the
    units, then `decode` them. A row that fails to decode is dropped and reported to the
    ledger, never raised, until an epoch is over data.max_bad_fraction; then the run stops with
    BadDataError."""

    def __init__(self, crops: Crops, split: str, num_classes: int, ledger):
        self.crops, self.split, self.k, self.ledger = crops, split, num_classes, ledger
        self.files: dict[str, pq.ParquetFile] = {}
        self.node = ray.get_runtime_context().get_node_id()
        cv2.setNumThreads(1)  # one actor = one core; parallelism comes from the pool

    def __call__(self, units: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.decode(self.read(units))

    def read(self, units: dict[str, np.ndarray]) -> dict:
        """Units -> rows: {bytes (None: read the file at decode), where, label, row, epoch,
        short}. A path manifest has one unit per image, a packed folder one per row group."""
        return self._read_packed(units) if "rg" in units else self._read_paths(units)

    def decode(self, rows: dict) -> dict[str, np.ndarray]:
        images, ok, errors = self.crops(rows["bytes"], rows["where"], rows["short"],
                                        rows["epoch"], rows["row"])
        bad_epochs = rows["epoch"][[i for i, _ in errors]]
        for epoch in np.unique(rows["epoch"]):  # one epoch per batch, but at an epoch boundary
            fatal = ray.get(self.ledger.record.remote(
                self.split, int(epoch), int((rows["epoch"] == epoch).sum()),
                [msg for (_, msg), e in zip(errors, bad_epochs, strict=True) if e == epoch],
                self.node))
            if fatal:
                raise BadDataError(fatal)
        return {"image": images[ok], "label": rows["label"][ok], "row": rows["row"][ok],
                "epoch": rows["epoch"][ok]}

    def _read_paths(self, units: dict[str, np.ndarray]) -> dict:
        return {"bytes": [None] * len(units["path"]), "label": units["label"].astype(np.int64),
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
        # A row group holds the same ~128 rows every epoch: mix the block's row groups in an
        # order keyed by (seed, epoch, row), so batches change every epoch and a resumed run
        # streams exactly what an uninterrupted one would (a loop-side shuffle buffer carries
        # its state across epochs, which a resume cannot restore).
        keys = row_keys(self.crops.seed, t["epoch"].to_numpy(), t["row"].to_numpy())
        t = t.take(np.argsort(keyed_uniform(keys, 1, stream=MIX_STREAM)[:, 0], kind="stable"))
        return {"bytes": t["image"].to_pylist(),
                "label": t["label"].to_numpy().astype(np.int64),
                "row": t["row"].to_numpy().astype(np.int64),
                "epoch": t["epoch"].to_numpy().astype(np.int64),
                "short": np.minimum(t["width"].to_numpy(), t["height"].to_numpy()),
                "where": t["path"].to_numpy(zero_copy_only=False)}


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


def expand_epochs(batch: dict[str, np.ndarray], units: ray.ObjectRef, seed: int,
                  rows_per_epoch: int, ledger) -> Iterator[pa.Table]:
    """epochs -> each epoch's units (cut into decode-sized blocks next: in_blocks_of). Epochs
    before the ledger's start are skipped, so a stream restarted after a failure resumes at
    the checkpoint's epoch. `units` is a reference: the table (~35 MB of paths at 347k train
    images) is stored once, not pickled into the dataset that goes to the Train controller
    and every worker."""
    units = ray.get(units)
    start = ray.get(ledger.start_epoch.remote())
    for e in batch["epoch"]:
        if int(e) >= start:
            yield epoch_units(units, int(e), seed, rows_per_epoch)


def actor_pool(data: DataConfig, workers: int) -> ray.data.ActorPoolStrategy:
    """One decode actor per Train worker to start, growing to actors_per_worker each."""
    top = max(1, math.ceil(workers * data.actors_per_worker))
    return ray.data.ActorPoolStrategy(min_size=min(top, workers), max_size=top)


def decode_kwargs(cfg: Config, source: Source, split: str, ledger) -> dict:
    crops = Crops(cfg.data, cfg.augment, cfg.run.seed, train=split == "train")
    return {"fn_constructor_kwargs": {"crops": crops, "split": split,
                                      "num_classes": len(source.names), "ledger": ledger},
            "compute": actor_pool(cfg.data, cfg.run.workers),
            "num_cpus": cfg.data.cpus_per_actor,
            "batch_size": None,  # one block = one call: blocks are cut to size (rows_per_block)
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
    rows = steps_per_epoch(source.images["train"], cfg.global_batch) * cfg.global_batch
    epochs = ray.data.from_items([{"epoch": e} for e in range(1, cfg.optim.epochs + 1)],
                                 override_num_blocks=cfg.optim.epochs)
    # The expansion asks for no CPU: it is one short task per epoch (a permutation of the
    # work units) that mostly waits on the ledger, and a whole CPU for it (or for a separate
    # repartition step) could not be found once Train workers and decode actors fill their
    # nodes: a run hung so, with no message.
    # One at a time: tasks that ask for no CPU would otherwise all start at once, each in a
    # new worker process (Ray warned of 10 processes started on a 2-core machine).
    ds = epochs.map_batches(expand_epochs, batch_size=1, batch_format="numpy", num_cpus=0,
                            compute=ray.data.TaskPoolStrategy(size=1),
                            fn_kwargs={"units": ray.put(source.units["train"]),
                                       "seed": cfg.run.seed, "rows_per_epoch": rows,
                                       "ledger": ledger})
    ds = in_blocks_of(ds, rows_per_block(cfg, source))
    return ds.map_batches(DecodeActor, **decode_kwargs(cfg, source, "train", ledger))


def in_blocks_of(ds: ray.data.Dataset, rows: int) -> ray.data.Dataset:
    """ds cut into blocks of at most `rows` rows, streaming, by tasks that ask for no CPU.

    Ray Data merges what one task yields into blocks of up to 128 MB, and hands a block to one
    actor whole: the per-epoch expansion's small tables became one block per epoch, so one
    decode actor decoded a whole epoch in one call (at 434,528 images: 347k images, 3 GB in
    that actor, the rest of the pool idle; at 224 px it would be ~50 GB). The public
    `repartition(target_num_rows_per_block=)` does this cut, but its tasks ask for a whole
    CPU, which a node full of Train workers and decode actors never frees (a run hung so).
    Private Ray API (the logical operator behind that method), with the resources set;
    tests/data/test_stream.py checks the decode actors' calls get `rows` units."""
    from ray.data._internal.logical.interfaces import LogicalPlan
    from ray.data._internal.logical.operators.map_operator import StreamingRepartition

    op = StreamingRepartition(target_num_rows_per_block=rows, strict=False,
                              input_dependencies=[ds._logical_plan.dag],
                              ray_remote_args={"num_cpus": 0},
                              compute=ray.data.TaskPoolStrategy(size=1))
    return ray.data.Dataset._from_parent(ds, LogicalPlan(op, ds.context))


def on_nodes(ds: ray.data.Dataset, nodes: list[str]) -> ray.data.Dataset:
    """ds with every task and actor of its execution held to these nodes (Ray's node-id label,
    through ExecutionOptions.label_selector). Ray Data's requests to the autoscaler then name
    these nodes, never "any node with a CPU": on AWS only GPU nodes have CPUs, and such a
    request starts one."""
    options = copy.deepcopy(ds.context.execution_options)
    options.label_selector = {NODE_ID_LABEL: f"in({','.join(sorted(set(nodes)))})"}
    ds.context.execution_options = options
    return ds


def keep_ray_data_actors_here() -> None:
    """Ray Data's three per-cluster actors (stats, autoscaling coordinator, actor locations),
    made now on this process's node. Each is detached and made once, on the node of the first
    process that runs a Ray Data execution: in a sweep, a trial's on a GPU node, which the
    autoscaler then never sees idle ("busy workers on node"): a p4d billed until `ray down`.
    The sweep's driver, on the head, makes them first.

    Private API: Ray Data has no public call that places them. A test fails if they go away
    (tests/train/test_ray_private.py); the real-autoscaler test fails if a node stays up."""
    from ray.data._internal.cluster_autoscaler.default_autoscaling_coordinator import (
        get_or_create_autoscaling_coordinator,
    )
    from ray.data._internal.execution.node_trackers.actor_location import (
        get_or_create_actor_location_tracker,
    )
    from ray.data._internal.stats import get_or_create_stats_actor

    for make in (get_or_create_stats_actor, get_or_create_autoscaling_coordinator,
                 get_or_create_actor_location_tracker):
        make()


# --- val and test: decoded once, or kept encoded and decoded per evaluation -----------------

# Decoded val above this size is kept encoded instead: 87k val images at 224 px are 13 GB of
# uint8 per trial, and several trials' val on one node spilled the object store to disk.
VAL_DECODED_MAX_BYTES = 2**30


def val_cache(cfg: Config, source: Source) -> str:
    """"decoded" or "encoded" (val and test alike): data.val_cache, or by their size together
    when it is "auto"."""
    if cfg.data.val_cache != "auto":
        return cfg.data.val_cache
    decoded = (source.images["val"] + source.images["test"]) * 3 * cfg.data.img_size ** 2
    return "decoded" if decoded <= VAL_DECODED_MAX_BYTES else "encoded"


def decode_val(units: dict[str, np.ndarray], **kwargs) -> dict[str, np.ndarray]:
    """Val decodes in plain tasks: no actor pool to start for one pass."""
    return DecodeActor(**kwargs)(units)


def read_val(units: dict[str, np.ndarray], **kwargs) -> dict[str, np.ndarray]:
    """The encoded bytes of val's images, read once (a file that cannot be read keeps empty
    bytes: its decode fails, and the ledger counts it)."""
    rows = DecodeActor(**kwargs).read(units)
    if "rg" not in units:  # a path manifest: read the files now
        rows["bytes"] = [_read_or_empty(p) for p in rows["where"]]
    return {**{k: np.asarray(v) for k, v in rows.items() if k != "bytes"},
            "bytes": np.array(rows["bytes"], dtype=object)}


def _read_or_empty(path: str) -> bytes:
    try:
        return read_file(path)
    except OSError:
        return b""


def decode_read(rows: dict[str, np.ndarray], **kwargs) -> dict[str, np.ndarray]:
    """Decode val's kept bytes: every evaluation, in tasks."""
    return DecodeActor(**kwargs).decode({**rows, "bytes": list(rows["bytes"])})


def held_val(cfg: Config, source: Source, ledger, split: str = "val") -> ray.data.Dataset:
    """What the object store holds of val (or test) for the whole run: its images decoded
    (uint8 at img_size), or their encoded bytes (val_cache)."""
    units = source.units[split]
    units = units.append_column("epoch", pa.array(np.zeros(units.num_rows, np.int64)))
    n = rows_per_block(cfg, source)
    ds = ray.data.from_arrow([units.slice(i, n) for i in range(0, units.num_rows, n)])
    kwargs = decode_kwargs(cfg, source, split, ledger)
    kwargs.pop("compute")
    read = decode_val if val_cache(cfg, source) == "decoded" else read_val
    ds = ds.map_batches(read, fn_kwargs=kwargs.pop("fn_constructor_kwargs"), **kwargs)
    # Before the workers exist: on the nodes that are up (the run must not grow the cluster
    # for its val).
    return on_nodes(ds, [n["NodeID"] for n in ray.nodes() if n["Alive"]]).materialize()


def val_dataset(cfg: Config, source: Source, ledger, split: str = "val") -> ray.data.Dataset:
    """Val (or test) as every evaluation reads it: the held images, or the held bytes decoded
    again."""
    held = held_val(cfg, source, ledger, split)
    if val_cache(cfg, source) == "decoded":
        return held
    kwargs = decode_kwargs(cfg, source, split, ledger)
    # Tasks that ask for no CPU, at most one per decode actor: during an evaluation the train
    # stream waits for its consumers, so the decode actors' cores are idle; a whole CPU per
    # task would not be free once workers and actors fill their nodes.
    tasks = ray.data.TaskPoolStrategy(size=kwargs.pop("compute").max_size)
    return held.map_batches(decode_read, fn_kwargs=kwargs.pop("fn_constructor_kwargs"),
                            compute=tasks, **(kwargs | {"num_cpus": 0}))


class SplitConfig(ray.train.DataConfig):
    """How Train's workers get the streams, configured once the workers are placed:

    - **Train**: equal shards, in order (every rank takes the same steps; reproducible with one
      worker). **Val** (and **test**): every row exactly once, shards of unequal size
      (`equal=True` would drop up to world-1 rows per epoch).
    - **Decoded where it is consumed.** Every task and actor of both streams is held to the
      Train workers' nodes (ExecutionOptions.label_selector on Ray's node-id label): decoded
      uint8 images, ~1.5 GB/s per trial at production rates, never cross the network, and the
      resources Ray Data asks the autoscaler for name these nodes, never "any node with a CPU"
      (on AWS only GPU nodes have CPUs: such a request starts a GPU node).
    - **One CPU worker executes its own streams** (`in_process`): a split's coordinator is an
      actor, ~3 CPU-seconds to start for each stream of each run, a tenth of a short run on two
      cores; a GPU worker keeps it, so that Ray Data's scheduling thread does not share the
      training loop's interpreter.

    Only public Ray APIs: Train V2 calls configure() with one dataset at a time, in its
    DatasetManager actor, once the worker group is up."""

    def __init__(self, in_process: bool = False):
        with warnings.catch_warnings():  # Train's own defaults set a deprecated field
            warnings.simplefilter("ignore", DeprecationWarning)
            train = self.default_ingest_options()
        train.preserve_order = True
        super().__init__(execution_options={"train": train})
        self.in_process = in_process

    def place(self, ds: ray.data.Dataset, worker_node_ids: list[str]) -> None:
        """Where the stream's tasks and actors run: on the Train workers' nodes."""
        on_nodes(ds, worker_node_ids)

    def configure(self, datasets, world_size, worker_handles, worker_node_ids, **kwargs):
        shards: list[dict] = [{} for _ in range(world_size)]
        for name, ds in datasets.items():
            ds = ds.copy(ds)
            if ds.name is None:
                ds.set_name(name)
            ds.context.execution_options = self._resolve_execution_options(name)  # a copy
            self.place(ds, worker_node_ids)
            if world_size == 1 and self.in_process:
                shards[0][name] = ds.iterator()
                continue
            for shard, it in zip(shards, ds.streaming_split(
                    world_size, equal=name == "train", locality_hints=worker_node_ids),
                    strict=True):
                shard[name] = it
        return shards
