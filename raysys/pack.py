"""`raysys pack`: re-encode every usable image once, smaller, into ~128 MB Parquet shards.

A multi-node cluster then reads a few large files from shared or object storage instead of
435k small ones, and each image decodes from 256 px instead of 512 px.
"""

from __future__ import annotations

import io
import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from raysys.manifest import SCHEMA, read_manifest

PACKED_SCHEMA = SCHEMA.append(pa.field("image", pa.binary()))


def reencode(path: str, size: int, quality: int = 95) -> tuple[bytes, int, int] | None:
    """(JPEG bytes, width, height) with the shorter side at most `size`; None when the image
    cannot be decoded."""
    try:
        with Image.open(path) as im:
            im.draft("RGB", (size, size))
            im = im.convert("RGB")
            scale = size / min(im.size)
            if scale < 1:
                im = im.resize((round(im.width * scale), round(im.height * scale)),
                               Image.BICUBIC)
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=quality)
            return buf.getvalue(), im.width, im.height
    except Exception:
        return None


def _reencode_chunk(args: tuple[list[str], int]) -> list[tuple[bytes, int, int] | None]:
    paths, size = args
    return [reencode(p, size) for p in paths]


def pack(manifest: Path, out: Path, size: int = 256, shard_mb: int = 128,
         workers: int | None = None, chunk: int = 256) -> dict:
    """Write out/part-NNNNN.parquet shards (manifest columns + `image` bytes) and names.json."""
    df = read_manifest(manifest)
    out.mkdir(parents=True, exist_ok=True)
    paths = df["path"].tolist()
    chunks = [(paths[i:i + chunk], size) for i in range(0, len(paths), chunk)]
    shards, pending, pending_bytes, dropped = [], [], 0, 0

    def flush():
        nonlocal pending, pending_bytes
        if pending:
            name = out / f"part-{len(shards):05d}.parquet"
            pq.write_table(pa.Table.from_pylist(pending, schema=PACKED_SCHEMA), name)
            shards.append(name.name)
            pending, pending_bytes = [], 0

    rows = df.to_dict("records")
    with ProcessPoolExecutor(workers or os.cpu_count()) as pool:
        for c, encoded in enumerate(pool.map(_reencode_chunk, chunks)):
            for k, done in enumerate(encoded):
                if done is None:
                    dropped += 1
                    continue
                data, width, height = done
                row = dict(rows[c * chunk + k], image=data, bytes=len(data), width=width,
                           height=height)
                pending.append(row)
                pending_bytes += len(data)
                if pending_bytes >= shard_mb * 2**20:
                    flush()
    flush()
    names = json.loads((manifest.parent / "names.json").read_text())
    (out / "names.json").write_text(json.dumps(names, indent=1))
    info = {"source": str(manifest), "size": size, "shards": shards,
            "images": len(df) - dropped, "dropped": dropped}
    (out / "pack.json").write_text(json.dumps(info, indent=1))
    return info
