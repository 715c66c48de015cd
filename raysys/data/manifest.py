"""Index files -> one Parquet (Arrow) manifest row per usable image, plus the data report.

The manifest is the only thing later stages read: Ray Data streams it, training derives class
weights from it, sweeps derive their name subsets from it. Every kind of bad input is counted
with examples, and one bad image or index file never stops the build.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from raysys import storage
from raysys.config import DataConfig
from raysys.data.formats import IMAGE_MAGIC, file_tail, is_jpeg, jpeg_is_whole
from raysys.parallel import map_chunks

MAX_EXAMPLES = 20
BAD_KINDS = {
    "missing": "path does not exist (index from another machine? use --path-map OLD=NEW)",
    "not_a_file": "path is a directory or another non-file",
    "unreadable": "cannot be opened (permissions, or a symlink loop)",
    "empty": "zero-byte file",
    "not_image": "not an image file",
    "truncated": "image cut off (header unreadable, or a JPEG without its end marker)",
    "too_large": "more pixels than data.max_pixels (decompression-bomb guard)",
    "conflict": "the same image listed under several names (left out of all)",
    "duplicate": "listed twice under one name (kept once)",
    "malformed_json": "index file is not valid JSON",
    "empty_json": "index file is empty",
    "no_good_key": "index file has no 'good' list",
    "no_images": "index file lists no images",
}

SCHEMA = pa.schema([
    ("row", pa.int64()), ("path", pa.string()), ("name", pa.string()), ("label", pa.int64()),
    ("split", pa.string()), ("group", pa.string()), ("width", pa.int32()),
    ("height", pa.int32()), ("bytes", pa.int64()),
])


class ManifestError(RuntimeError):
    """Nothing usable, or a split that cannot train: the message names the folder and the fix."""


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
        return {k: {"count": self.counts[k], "meaning": BAD_KINDS[k],
                    "examples": self.examples[k]} for k in BAD_KINDS if self.counts[k]}


# --- reading index files -------------------------------------------------------------------

def parse_path_map(items: Iterable[str]) -> list[tuple[str, str]]:
    pairs = []
    for item in items:
        old, sep, new = item.partition("=")
        if not sep or not old:
            raise ValueError(f"path map {item!r}: expected OLD=NEW, e.g. /mnt/old=/data/faces")
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
        raise ManifestError(f"{index_dir}: no index_<name>.json files found; point "
                            "data.index_dir (--index-dir) at the folder that holds them")
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
        if not doc["good"]:
            bad.add("no_images", str(f))
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

def read_header(path: str, max_pixels: int) -> tuple[str, int, int, int]:
    """(kind, width, height, bytes) with kind 'ok' or a bad-input kind. Reads the header only:
    PIL parses the size without decoding, so a decompression bomb is refused here."""
    try:
        st = os.stat(path)
    except OSError as e:
        return ("unreadable" if e.errno == errno.ELOOP else "missing"), 0, 0, 0
    if not os.path.isfile(path):
        return "not_a_file", 0, 0, 0
    if st.st_size == 0:
        return "empty", 0, 0, 0
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            fh.seek(0)
            with Image.open(fh) as im:
                w, h = im.size
            whole = not is_jpeg(head) or jpeg_is_whole(file_tail(fh))
    except PermissionError:
        return "unreadable", 0, 0, st.st_size
    except Exception:
        return ("truncated" if head.startswith(IMAGE_MAGIC) else "not_image"), 0, 0, st.st_size
    if not whole:  # the header reads, but training would find the image cut off
        return "truncated", w, h, st.st_size
    if w * h > max_pixels:
        return "too_large", w, h, st.st_size
    return "ok", w, h, st.st_size


def read_headers(paths: list[str], max_pixels: int, processes: int | None = None
                 ) -> list[tuple[str, int, int, int]]:
    """read_header for every path, in a process pool."""
    return list(map_chunks(read_header, paths, max_pixels, what="headers",
                           processes=processes))


# --- split ------------------------------------------------------------------------------------

def stable_fraction(key: str) -> float:
    """A number in [0, 1) from a digest of key: the same in every process and on every machine
    (Python's hash() is salted per process, so a split built on it changes between runs)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") / 2**64


def assign_groups(sizes: dict[str, int], fraction: float, total: int | None = None,
                  salt: str = "") -> set[str]:
    """One name's identity groups -> the ones that go to a held-out split (val, test), so that
    the name's share of images there comes close to `fraction` of `total` (default: all of
    `sizes`). A split that hashes each group alone can send a name's one dominant person, and
    with it nearly all of the name, to val (LFW's "gerhard" kept 1 of 111 images for
    training). Groups are walked in digest order (of salt + group: test and val walk
    different orders), so the choice is the same on every machine, and a group joins only when
    that brings the share closer to the target; a group larger than twice the target stays in
    train."""
    target = fraction * (sum(sizes.values()) if total is None else total)
    chosen, taken = set(), 0
    for group in sorted(sizes, key=lambda g: stable_fraction(salt + g)):
        if abs(taken + sizes[group] - target) < abs(taken - target):
            chosen.add(group)
            taken += sizes[group]
    return chosen


def split_of(key: str, data: DataConfig) -> str:
    """The per-image split: test below data.test_fraction, val in the next data.val_fraction
    (with no test split, val is exactly what it was before test existed)."""
    u = stable_fraction(key)
    if u < data.test_fraction:
        return "test"
    return "val" if u < data.test_fraction + data.val_fraction else "train"


def group_of(path: str, group_by: str, pattern: re.Pattern | None) -> str | None:
    if pattern is not None:
        m = pattern.search(path)
        return (m.group(1) if m.groups() else m.group(0)) if m else None
    return Path(path).parent.name if group_by == "parent" else None


# --- the manifest -----------------------------------------------------------------------------

def build_manifest(data: DataConfig, processes: int | None = None
                   ) -> tuple[pd.DataFrame, dict]:
    """Rows of usable images and the data report, from data.index_dir and the split settings
    (header reads in `processes` processes, default all cores). Raises ManifestError when
    nothing is usable or the split cannot train."""
    index_dir = Path(data.index_dir).expanduser().resolve()
    if not index_dir.is_dir():
        raise ManifestError(f"{index_dir}: not a folder; data.index_dir (--index-dir) must "
                            "hold the index_<name>.json files")
    bad = BadInputs()
    per_name = read_index_files(index_dir, parse_path_map(data.path_map), bad)
    rows = [(p, n) for n, paths in per_name.items() for p in paths]
    headers = read_headers([p for p, _ in rows], data.max_pixels, processes)

    pattern = re.compile(data.group_pattern) if data.group_pattern else None
    records = []
    for (path, name), (kind, w, h, nbytes) in zip(rows, headers, strict=True):
        if kind != "ok":
            bad.add(kind, path)
            continue
        rel = os.path.relpath(path, index_dir)
        group = group_of(rel, data.group_by, pattern)
        records.append((path, name, split_of(rel, data), group, w, h, nbytes))
    df = pd.DataFrame(records, columns=["path", "name", "split", "group", "width", "height",
                                        "bytes"])
    if data.split_by == "group" and not df.empty:
        df = split_by_group(df, data.val_fraction, data.test_fraction)
    if df.empty:
        raise ManifestError(f"{index_dir}: no usable images (bad inputs: {dict(bad.counts)}); "
                            "check that the index paths point at readable image files, or set "
                            "data.path_map (--path-map OLD=NEW) for index files written on "
                            "another machine")
    if data.split_by == "group" and (df.groupby("name")["group"].nunique() == 1).all():
        raise ManifestError(
            f"{index_dir}: data.split_by=group with data.group_by={data.group_by} makes every "
            "name a single identity group (the folders are the names themselves?), so each "
            "name would land wholly in train or wholly in val. Use data.split_by=image, or a "
            "data.group_pattern that captures the person in the path")

    names = order_names(df["name"].value_counts())
    if data.top_k:
        names = names[:data.top_k]
        df = df[df["name"].isin(names)]
    df = df.assign(label=df["name"].map({n: i for i, n in enumerate(names)}).astype("int64"))
    df = df.sort_values(["label", "path"]).reset_index(drop=True)
    df["row"] = range(len(df))
    df = df[list(SCHEMA.names)]
    return df, data_report(df, names, bad, index_dir)


def split_by_group(df: pd.DataFrame, val_fraction: float, test_fraction: float = 0.0
                   ) -> pd.DataFrame:
    """Identity-disjoint split, balanced per name (assign_groups): test's people first, then
    val's from the rest, each near its fraction of the name's images. A person listed under two
    names is placed once, with the name that holds most of their images, so they are on one
    side everywhere; an image without a group (the pattern did not match) keeps its per-image
    split."""
    grouped = df["group"].notna()
    sizes = df[grouped].groupby("group").size()
    owner = df[grouped].groupby("group")["name"].agg(lambda names: names.value_counts().index[0])
    test, val = set(), set()
    for _, groups in owner.groupby(owner):
        name_sizes = sizes[groups.index].to_dict()
        held = assign_groups(name_sizes, test_fraction, salt="test:")
        test |= held
        val |= assign_groups({g: n for g, n in name_sizes.items() if g not in held},
                             val_fraction, total=sum(name_sizes.values()))
    side = np.where(df["group"].isin(test), "test",
                    np.where(df["group"].isin(val), "val", "train"))
    return df.assign(split=np.where(grouped, side, df["split"]))


def order_names(counts: pd.Series) -> list[str]:
    """Labels are deterministic: by image count descending, ties alphabetical."""
    return sorted(counts.index, key=lambda n: (-int(counts[n]), n))


def data_report(df: pd.DataFrame, names: list[str], bad: BadInputs, index_dir: Path) -> dict:
    sizes = df["name"].value_counts().reindex(names)
    train = df[df["split"] == "train"]["name"].value_counts().reindex(names, fill_value=0)
    return {
        "index_dir": str(index_dir),
        "names": len(names),
        "images": len(df),
        "train": int((df["split"] == "train").sum()),
        "val": int((df["split"] == "val").sum()),
        "test": int((df["split"] == "test").sum()),
        "largest": [[n, int(sizes[n])] for n in names[:5]],
        "smallest": [[n, int(sizes[n])] for n in names[-5:]],
        "class_size_cv": float(sizes.std(ddof=0) / sizes.mean()),
        "names_without_train_images": [n for n in names if train[n] == 0],
        "bad_inputs": bad.as_dict(),
    }


def write_manifest(df: pd.DataFrame, report: dict, out: str) -> None:
    """M.parquet, and names.json + data_report.json beside it (local path or URI)."""
    table = pa.Table.from_pandas(df, schema=SCHEMA, preserve_index=False)
    storage.write_with(out, lambda t: pq.write_table(table, t))
    folder = storage.parent(out)
    storage.write_json(storage.join(folder, "names.json"), label_names(df))
    storage.write_json(storage.join(folder, "data_report.json"), report)


def label_names(df: pd.DataFrame) -> list[str]:
    pairs = df[["label", "name"]].drop_duplicates().sort_values("label")
    return pairs["name"].tolist()


def read_manifest(path: str, columns: list[str] | None = None) -> pd.DataFrame:
    fs, p = storage.filesystem(path)
    return pq.read_table(p, columns=columns, filesystem=fs).to_pandas()


def format_report(r: dict) -> str:
    lines = [
        f"index folder : {r['index_dir']}",
        f"names        : {r['names']}",
        f"images       : {r['images']}  (train {r['train']}, val {r['val']}"
        + (f", test {r['test']}" if r.get("test") else "") + ")",
        "largest      : " + ", ".join(f"{n} {c}" for n, c in r["largest"]),
        "smallest     : " + ", ".join(f"{n} {c}" for n, c in r["smallest"]),
        f"class CV     : {r['class_size_cv']:.3f}  (std/mean of images per name)",
    ]
    if r["names_without_train_images"]:
        lines.append(f"no train imgs: {len(r['names_without_train_images'])} names (all their "
                     "identities fell in val or test): "
                     + ", ".join(r["names_without_train_images"][:8])
                     + "  -> train with data.top_k, or another split")
    bad = r["bad_inputs"]
    lines.append("bad inputs   : " + (", ".join(f"{k} {v['count']}" for k, v in bad.items())
                                     or "none"))
    return "\n".join(lines)
