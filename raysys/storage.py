"""Where run folders, manifests and sweep reports live: a local path, a path every node mounts
(EFS), or an object-store URI (s3://bucket/prefix), all through pyarrow's filesystems, so rank 0
writes its outputs the same way on whichever node it lands.

Writes never leave half a file: on a file system they go to a temp file beside the target and
are renamed over it; on S3 an object appears whole when its upload completes, or not at all.
S3 credentials come from the environment or the node's instance profile; `AWS_ENDPOINT_URL`
points at an S3-compatible server (the tests use a local moto server).
"""

from __future__ import annotations

import json
import os
import posixpath
import tempfile
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import pyarrow.fs as pafs


def is_uri(path: str | os.PathLike) -> bool:
    return "://" in str(path)


def absolute(path: str | os.PathLike) -> str:
    """URIs unchanged; local paths made absolute (workers may run in another directory)."""
    return str(path) if is_uri(path) else str(Path(path).expanduser().resolve())


def join(base: str | os.PathLike, *parts: str) -> str:
    if is_uri(base):
        return posixpath.join(str(base).rstrip("/"), *parts)
    return str(Path(base, *parts))


def parent(path: str) -> str:
    return posixpath.dirname(path.rstrip("/")) if is_uri(path) else str(Path(path).parent)


def basename(path: str) -> str:
    return posixpath.basename(path.rstrip("/")) if is_uri(path) else Path(path).name


def filesystem(path: str | os.PathLike) -> tuple[pafs.FileSystem, str]:
    """(pyarrow filesystem, path inside it). An s3:// URI honours AWS_ENDPOINT_URL explicitly,
    so the endpoint travels with the (picklable) filesystem to every Ray worker."""
    path = str(path)
    if not is_uri(path):
        return pafs.LocalFileSystem(), absolute(path)
    url = urlparse(path)
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if url.scheme == "s3" and endpoint:
        ep = urlparse(endpoint)
        fs = pafs.S3FileSystem(endpoint_override=ep.netloc, scheme=ep.scheme or "https",
                               region=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
        return fs, (url.netloc + url.path).rstrip("/")
    fs, inner = pafs.FileSystem.from_uri(path)
    return fs, inner.rstrip("/")


def makedirs(path: str) -> None:
    fs, p = filesystem(path)
    fs.create_dir(p, recursive=True)


def exists(path: str) -> bool:
    fs, p = filesystem(path)
    return fs.get_file_info(p).type != pafs.FileType.NotFound


def is_dir(path: str) -> bool:
    fs, p = filesystem(path)
    return fs.get_file_info(p).type == pafs.FileType.Directory


def listdir(path: str) -> list[str]:
    """Names directly inside a folder, sorted; [] when it does not exist."""
    fs, p = filesystem(path)
    if fs.get_file_info(p).type != pafs.FileType.Directory:
        return []
    infos = fs.get_file_info(pafs.FileSelector(p, recursive=False))
    return sorted(posixpath.basename(i.path) for i in infos)


def read_bytes(path: str) -> bytes:
    fs, p = filesystem(path)
    with fs.open_input_stream(p) as f:
        return f.read()


def read_text(path: str) -> str:
    return read_bytes(path).decode()


def read_json(path: str):
    return json.loads(read_bytes(path))


def write_with(path: str, write: Callable[[str], None]) -> None:
    """Run write(local_tmp_path), then publish the file at `path` in one step."""
    if not is_uri(path):
        atomic_write(Path(path), write)
        return
    with tempfile.TemporaryDirectory(prefix="raysys-up-") as d:
        tmp = os.path.join(d, "blob")
        write(tmp)
        fs, p = filesystem(path)
        fs.create_dir(posixpath.dirname(p), recursive=True)
        pafs.copy_files(tmp, p, source_filesystem=pafs.LocalFileSystem(),
                        destination_filesystem=fs)


def write_bytes(path: str, data: bytes) -> None:
    write_with(path, lambda t: Path(t).write_bytes(data))


def write_text(path: str, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path: str, obj) -> None:
    write_text(path, json.dumps(obj, indent=1))


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Write to a temp file beside `path`, fsync, then rename: a crash never leaves a half file,
    and the previous version stays whole until the new one is complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def download_dir(src: str, dst: Path) -> None:
    """Copy a folder (e.g. a checkpoint on S3) to a local one."""
    fs, p = filesystem(src)
    dst.mkdir(parents=True, exist_ok=True)
    pafs.copy_files(p, str(dst), source_filesystem=fs,
                    destination_filesystem=pafs.LocalFileSystem())
