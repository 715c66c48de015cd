"""Index files -> one Parquet (Arrow) manifest row per usable image, plus class statistics.

The manifest is the only thing later stages read: Ray Data streams it, training derives class
weights from it, sweeps derive their name subsets from it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

MAX_EXAMPLES = 20
# Magic numbers of formats we expect: a file starting with one of these that PIL cannot open is
# a cut-off image ("truncated"), anything else is "not_image".
IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM", b"RIFF", b"II*\x00", b"MM\x00*")
BAD_KINDS = ("missing", "empty", "not_image", "truncated", "conflict", "duplicate",
             "malformed_json", "empty_json", "no_good_key")

SCHEMA = pa.schema([
    ("path", pa.string()), ("name", pa.string()), ("label", pa.int64()), ("split", pa.string()),
    ("group", pa.string()), ("width", pa.int32()), ("height", pa.int32()), ("bytes", pa.int64()),
])


class ManifestError(RuntimeError):
    """Nothing usable: the message names the folder and what was wrong."""


@dataclass
class BadInputs:
    """Counts and up to MAX_EXAMPLES example paths per kind of bad input."""

    counts: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=lambda: defaultdict(list))

    def add(self, kind: str, where: str) -> None:
        self.counts[kind] += 1
        if len(self.examples[kind]) < MAX_EXAMPLES:
            self.examples[kind].append(where)

    def as_dict(self) -> dict:
        return {k: {"count": self.counts[k], "examples": self.examples[k]}
                for k in BAD_KINDS if self.counts[k]}


# --- reading index files -------------------------------------------------------------------

def parse_path_map(items: Iterable[str]) -> list[tuple[str, str]]:
    pairs = []
    for item in items:
        old, sep, new = item.partition("=")
        if not sep or not old:
            raise ValueError(f"--path-map {item!r}: expected OLD=NEW, e.g. /mnt/faces=/data/faces")
        pairs.append((old, new))
    return pairs


def resolve(raw: str, index_dir: Path, path_map: list[tuple[str, str]]) -> str:
    """Absolute path for an index entry: mapped prefixes first, then relative to the index file."""
    for old, new in path_map:
        if raw.startswith(old):
            raw = new + raw[len(old):]
            break
    return os.path.normpath(raw if os.path.isabs(raw) else os.path.join(index_dir, raw))


def read_index_files(index_dir: Path, path_map: list[tuple[str, str]], bad: BadInputs
                     ) -> dict[str, list[str]]:
    """name -> resolved paths, with conflicts and duplicates removed and counted."""
    files = sorted(index_dir.glob("index_*.json"))
    if not files:
        raise ManifestError(f"{index_dir}: no index_<name>.json files found; point --index-dir at "
                            "the folder that holds them")
    per_name: dict[str, list[str]] = {}
    for f in files:
        name = f.stem[len("index_"):]
        text = f.read_text(errors="replace")
        if not text.strip():
            bad.add("empty_json", str(f))
            continue
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            bad.add("malformed_json", f"{f}: {e}")
            continue
        if not isinstance(doc, dict) or not isinstance(doc.get("good"), list):
            bad.add("no_good_key", str(f))
            continue
        seen: set[str] = set()
        paths = []
        for raw in doc["good"]:
            p = resolve(str(raw), index_dir, path_map)
            if p in seen:
                bad.add("duplicate", f"{p} (twice in {f.name})")
                continue
            seen.add(p)
            paths.append(p)
        per_name[name] = paths

    owners = Counter(p for paths in per_name.values() for p in paths)
    for name, paths in per_name.items():
        for p in paths:
            if owners[p] > 1:
                bad.add("conflict", f"{p} (under {owners[p]} names, incl. {name})")
        per_name[name] = [p for p in paths if owners[p] == 1]
    return per_name


# --- image headers ---------------------------------------------------------------------------

def read_header(path: str) -> tuple[str, int, int, int]:
    """(kind, width, height, bytes) with kind 'ok' or a bad-input kind. Reads the header only."""
    try:
        size = os.path.getsize(path)
    except OSError:
        return "missing", 0, 0, 0
    if size == 0:
        return "empty", 0, 0, 0
    try:
        with Image.open(path) as im:
            w, h = im.size
        return "ok", w, h, size
    except Exception:
        with open(path, "rb") as fh:
            head = fh.read(8)
        return ("truncated" if head.startswith(IMAGE_MAGIC) else "not_image"), 0, 0, size


def _read_headers_chunk(paths: list[str]) -> list[tuple[str, int, int, int]]:
    return [read_header(p) for p in paths]


def read_headers(paths: list[str], workers: int | None = None, chunk: int = 256
                 ) -> list[tuple[str, int, int, int]]:
    """Header reads in a process pool: PIL's header parse holds the GIL, so threads do not scale."""
    workers = workers or os.cpu_count() or 1
    if workers == 1 or len(paths) < 2 * chunk:
        return _read_headers_chunk(paths)
    chunks = [paths[i:i + chunk] for i in range(0, len(paths), chunk)]
    with ProcessPoolExecutor(workers) as pool:
        return [r for part in pool.map(_read_headers_chunk, chunks) for r in part]


# --- split ------------------------------------------------------------------------------------

def stable_fraction(key: str) -> float:
    """A number in [0, 1) from a digest of key: the same in every process and on every machine
    (Python's hash() is salted per process, so a split built on it changes between runs)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") / 2**64


def group_of(path: str, group_by: str, pattern: re.Pattern | None) -> str | None:
    if pattern is not None:
        m = pattern.search(path)
        return (m.group(1) if m.groups() else m.group(0)) if m else None
    return Path(path).parent.name if group_by == "parent" else None


# --- the manifest -----------------------------------------------------------------------------

@dataclass
class ManifestOptions:
    val_fraction: float = 0.2
    split_by: str = "image"  # "image" | "group"
    group_by: str = "parent"  # "parent" | "none"
    group_pattern: str | None = None
    top_k: int | None = None
    path_map: list[tuple[str, str]] = field(default_factory=list)
    workers: int | None = None


def build_manifest(index_dir: Path, opts: ManifestOptions) -> tuple[pd.DataFrame, dict]:
    """Rows of usable images and the data report. Raises ManifestError only if nothing is usable."""
    index_dir = Path(index_dir).resolve()
    if not index_dir.is_dir():
        raise ManifestError(f"{index_dir}: not a folder; --index-dir must hold index_<name>.json")
    if opts.split_by == "group" and opts.group_by == "none" and not opts.group_pattern:
        raise ValueError("--split-by group needs --group-by parent or --group-pattern REGEX")
    bad = BadInputs()
    per_name = read_index_files(index_dir, opts.path_map, bad)
    rows = [(p, n) for n, paths in per_name.items() for p in paths]
    headers = read_headers([p for p, _ in rows], opts.workers)

    pattern = re.compile(opts.group_pattern) if opts.group_pattern else None
    records = []
    for (path, name), (kind, w, h, nbytes) in zip(rows, headers, strict=True):
        if kind != "ok":
            bad.add(kind, path)
            continue
        rel = os.path.relpath(path, index_dir)
        group = group_of(rel, opts.group_by, pattern)
        split_key = group if opts.split_by == "group" and group is not None else rel
        split = "val" if stable_fraction(split_key) < opts.val_fraction else "train"
        records.append((path, name, split, group, w, h, nbytes))
    df = pd.DataFrame(records, columns=["path", "name", "split", "group", "width", "height",
                                        "bytes"])
    if df.empty:
        raise ManifestError(f"{index_dir}: no usable images (bad inputs: {dict(bad.counts)}); "
                            "check that the index paths point at readable image files, or use "
                            "--path-map OLD=NEW for index files written on another machine")

    names = order_names(df["name"].value_counts())
    if opts.top_k:
        names = names[:opts.top_k]
        df = df[df["name"].isin(names)]
    df = df.assign(label=df["name"].map({n: i for i, n in enumerate(names)}).astype("int64"))
    df = df[list(SCHEMA.names)].reset_index(drop=True)
    return df, data_report(df, names, bad, index_dir)


def order_names(counts: pd.Series) -> list[str]:
    """Labels are deterministic: by image count descending, ties alphabetical."""
    return sorted(counts.index, key=lambda n: (-int(counts[n]), n))


def data_report(df: pd.DataFrame, names: list[str], bad: BadInputs, index_dir: Path) -> dict:
    sizes = df["name"].value_counts().reindex(names)
    return {
        "index_dir": str(index_dir),
        "names": len(names),
        "images": len(df),
        "train": int((df["split"] == "train").sum()),
        "val": int((df["split"] == "val").sum()),
        "largest": [[n, int(sizes[n])] for n in names[:5]],
        "smallest": [[n, int(sizes[n])] for n in names[-5:]],
        "class_size_cv": float(sizes.std(ddof=0) / sizes.mean()),
        "bad_inputs": bad.as_dict(),
    }


def write_manifest(df: pd.DataFrame, report: dict, out: Path) -> None:
    """M.parquet, and names.json + data_report.json beside it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    names = label_names(df)
    table = pa.Table.from_pandas(df, schema=SCHEMA, preserve_index=False)
    table = table.replace_schema_metadata({"raysys.names": json.dumps(names)})
    pq.write_table(table, out)
    (out.parent / "names.json").write_text(json.dumps(names, indent=1))
    (out.parent / "data_report.json").write_text(json.dumps(report, indent=1))


def label_names(df: pd.DataFrame) -> list[str]:
    pairs = df[["label", "name"]].drop_duplicates().sort_values("label")
    return pairs["name"].tolist()


def read_manifest(path: Path, columns: list[str] | None = None) -> pd.DataFrame:
    return pq.read_table(path, columns=columns).to_pandas()


def format_report(r: dict) -> str:
    lines = [
        f"index folder : {r['index_dir']}",
        f"names        : {r['names']}",
        f"images       : {r['images']}  (train {r['train']}, val {r['val']})",
        "largest      : " + ", ".join(f"{n} {c}" for n, c in r["largest"]),
        "smallest     : " + ", ".join(f"{n} {c}" for n, c in r["smallest"]),
        f"class CV     : {r['class_size_cv']:.3f}  (std/mean of images per name)",
    ]
    bad = r["bad_inputs"]
    lines.append("bad inputs   : " + (", ".join(f"{k} {v['count']}" for k, v in bad.items())
                                     or "none"))
    return "\n".join(lines)


# --- class statistics (used by the loss) ------------------------------------------------------

def train_counts(df: pd.DataFrame, num_classes: int) -> np.ndarray:
    labels = df.loc[df["split"] == "train", "label"].to_numpy()
    return np.bincount(labels, minlength=num_classes).astype(np.float64)


CLASS_WEIGHTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "none": lambda n: np.ones_like(n),
    "inverse": lambda n: n.sum() / (len(n) * n),
    "sqrt": lambda n: np.sqrt(n.sum() / n),
    # Cui et al. 2019: (1 - beta) / (1 - beta^n), beta = 0.999.
    "effective": lambda n: (1 - 0.999) / (1 - 0.999 ** n),
}


def class_weights(counts: np.ndarray, scheme: str) -> np.ndarray:
    """Per-class loss weights, normalised to mean 1 so the loss scale does not move with K."""
    if scheme not in CLASS_WEIGHTS:
        raise ValueError(f"class weight scheme {scheme!r}: choose one of {sorted(CLASS_WEIGHTS)}")
    # A class absent from train would get an infinite weight; it never appears in a target anyway.
    w = CLASS_WEIGHTS[scheme](np.maximum(counts, 1.0))
    return w / w.mean()
