"""Manifest -> what the driver knows about a run's images: names, train counts and each split's
work units. Read once per run on the driver; no Ray.

Work units: a path manifest has one unit per image (a global per-epoch shuffle of paths is
cheap); a `raysys pack` folder has one unit per Parquet row group of pre-shuffled JPEG bytes,
shuffled per epoch, their rows mixed within each block by a keyed order (stream.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from raysys import storage
from raysys.config import DataConfig

# test: held out, never read to choose anything; the chosen model is scored on it once
SPLITS = ("train", "val", "test")


@dataclass
class Source:
    """Names, train counts and each split's work units."""

    names: list[str]
    train_counts: np.ndarray
    packed: bool
    units: dict[str, pa.Table]  # split -> one row per image, or per packed row group
    images: dict[str, int]  # split -> images (test: 0 without a test split)


def is_packed(manifest: str) -> bool:
    """A `raysys pack` folder, rather than a manifest file."""
    return storage.is_dir(manifest)


def read_names(manifest: str) -> list[str]:
    """The label order of a manifest (names.json beside it) or of a packed folder (inside)."""
    folder = manifest if is_packed(manifest) else storage.parent(manifest)
    return storage.read_json(storage.join(folder, "names.json"))


def path_manifest(manifest: str) -> str:
    """A packed folder's source manifest: the report and the floors read the original files."""
    if is_packed(manifest):
        return storage.read_json(storage.join(manifest, "pack.json"))["source"]
    return manifest


def load_source(data: DataConfig) -> Source:
    """Read the manifest (or a packed folder) and keep the top-k names (labels < k)."""
    manifest = data.manifest
    if not storage.exists(manifest):
        raise FileNotFoundError(f"{manifest}: no such manifest; build one with `raysys manifest`"
                                " or pass --index-dir")
    names = read_names(manifest)
    if data.top_k:
        if data.top_k > len(names):
            raise ValueError(f"data.top_k={data.top_k} but {manifest} has only {len(names)} "
                             "names; use a smaller top_k (0 = all names)")
        names = names[:data.top_k]
    k = len(names)
    units, images = {}, {}
    if is_packed(manifest):
        written = storage.read_json(storage.join(manifest, "pack.json"))["shards"]
        for split in SPLITS:
            units[split] = (_row_group_units(storage.join(manifest, split), k)
                            if written.get(split) or split != "test" else _no_units())
            images[split] = int(pc.sum(units[split]["take"]).as_py() or 0)
        train_labels = _packed_labels(units["train"])
        units = {split: t.drop_columns(["labels"]) for split, t in units.items()}
    else:
        fs, path = storage.filesystem(manifest)
        table = pq.read_table(path, filesystem=fs, columns=["row", "path", "label", "split",
                                                            "width", "height"])
        table = table.filter(pc.less(table["label"], k))
        for split in SPLITS:
            units[split] = table.filter(pc.equal(table["split"], split)).drop_columns(["split"])
            images[split] = units[split].num_rows
        train_labels = units["train"]["label"].to_numpy()
    counts = np.bincount(train_labels, minlength=k).astype(np.float64)
    if (counts == 0).any():
        empty = [names[i] for i in np.flatnonzero(counts == 0)]
        raise ValueError(f"{len(empty)} names have no train images ({', '.join(empty[:8])}): "
                         "their whole identity groups fell in val or test. Train on "
                         "data.top_k names, or rebuild the manifest with data.split_by=image")
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


def _no_units() -> pa.Table:
    """A packed folder without a test split (packed before test existed, or test_fraction 0)."""
    return pa.table({"file": pa.array([], pa.string()), "rg": pa.array([], pa.int64()),
                     "take": pa.array([], pa.int64()),
                     "labels": pa.array([], pa.list_(pa.int64()))})


def _packed_labels(units: pa.Table) -> np.ndarray:
    return np.concatenate([np.asarray(x) for x in units["labels"].to_pylist()])
