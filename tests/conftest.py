"""Shared fixtures: small demo data made per session, a local Ray instance, the LFW folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

LFW = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "lfw-names"
LFW_INDEX = LFW / "index_files"

# Tests never log to W&B and never reach a network.
os.environ.setdefault("WANDB_MODE", "disabled")


@pytest.fixture(scope="session")
def demo_index(tmp_path_factory) -> Path:
    """12 names, 1200 images at 64 px: learnable, and quick to decode."""
    from raysys.demo_data import generate

    return generate(tmp_path_factory.mktemp("demo"), names=12, size=64, images=1200, seed=0)


@pytest.fixture(scope="session")
def demo_manifest(demo_index, tmp_path_factory) -> Path:
    from raysys.manifest import ManifestOptions, build_manifest, write_manifest

    out = tmp_path_factory.mktemp("manifest") / "manifest.parquet"
    df, report = build_manifest(demo_index, ManifestOptions(split_by="group"))
    write_manifest(df, report, out)
    return out


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray for the session: 4 logical CPUs on 2 cores, so a Parquet read (which wants a
    whole free CPU) never waits behind a train worker and the preprocessing actors."""
    import ray

    ray.init(address="local", num_cpus=4, num_gpus=0, object_store_memory=512 * 2**20,
             log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def lfw_index() -> Path:
    if not LFW_INDEX.is_dir():
        pytest.skip(f"{LFW_INDEX} not present")
    return LFW_INDEX
