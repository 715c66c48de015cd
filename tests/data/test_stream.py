"""The Ray Data streams: seeded epochs of work units, shapes, disjoint splits, bad rows dropped
before the split and counted, the bad fraction cap, packed shards that mix names as well as the
path manifest."""

import json

import numpy as np
import pyarrow as pa
import pytest
import torch

from raysys.config import load_config
from raysys.data import stream as D
from raysys.data.ledger import create_ledger
from raysys.data.manifest import build_manifest, read_manifest, write_manifest
from raysys.data.source import load_source
from raysys.train.shards import KeyedDraws


def test_epoch_units_are_seeded_and_whole_batches():
    units = pa.table({"row": np.arange(100), "path": [f"{i}.jpg" for i in range(100)]})
    e1, e1b, e2 = (D.epoch_units(units, e, 0, 96) for e in (1, 1, 2))
    assert e1.num_rows == 96 and e1["epoch"].to_pylist() == [1] * 96
    assert e1["row"].to_pylist() == e1b["row"].to_pylist() != e2["row"].to_pylist()
    packed = pa.table({"file": ["a"] * 5, "rg": list(range(5)), "take": [30, 30, 30, 30, 10]})
    cut = D.epoch_units(packed, 3, 0, 96)
    assert sum(cut["take"].to_pylist()) == 96


# --- Ray Data ---------------------------------------------------------------------------------

def _source(manifest, *sets):
    cfg = load_config("micro", sets=[f"data.manifest={manifest}", *sets])
    return cfg, load_source(cfg.data)


def _collect(ds, train: bool, seed: int = 0, batch: int = 64) -> list[dict]:
    ds.context.execution_options.preserve_order = True  # as SplitConfig does for training
    return list(ds.iter_torch_batches(batch_size=batch, collate_fn=KeyedDraws(seed, train)))


@pytest.mark.slow
def test_streams_shapes_labels_and_disjoint_splits(ray_local, demo_manifest):
    cfg, source = _source(demo_manifest, "optim.epochs=2")
    ledger = create_ledger(source, cfg.data)
    val = D.val_dataset(cfg, source, ledger)
    rows = torch.cat([b["row"] for b in _collect(val, False)])
    assert len(rows) == source.images["val"] == len(set(rows.tolist()))
    train = _collect(D.train_stream(cfg, source, ledger), True)
    images = torch.cat([b["image"] for b in train])
    per_epoch = (source.images["train"] // 64) * 64
    assert images.shape == (2 * per_epoch, 3, 32, 32) and images.dtype == torch.uint8
    assert images.float().std() > 10  # real pictures, not blanks
    train_rows = set(torch.cat([b["row"] for b in train]).tolist())
    assert not train_rows & set(rows.tolist())
    assert train[0]["aug"].shape == (64, 30)
    top = load_source(load_config("micro", sets=[f"data.manifest={demo_manifest}",
                                                   "data.top_k=3"]).data)
    assert set(top.units["val"]["label"].to_pylist()) <= {0, 1, 2} and len(top.names) == 3


@pytest.mark.slow
def test_stream_resumes_at_the_ledgers_epoch(ray_local, demo_manifest):
    cfg, source = _source(demo_manifest, "optim.epochs=3")
    ledger = create_ledger(source, cfg.data)
    full = _collect(D.train_stream(cfg, source, ledger), True)
    ledger.set_start.remote(3)
    tail = _collect(D.train_stream(cfg, source, ledger), True)
    n = len(tail)
    assert n == len(full) // 3
    for a, b in zip(full[-n:], tail, strict=True):  # epoch 3 is the same either way
        assert torch.equal(a["row"], b["row"]) and torch.equal(a["image"], b["image"])
        assert torch.equal(a["aug"], b["aug"])


@pytest.mark.slow
def test_the_decode_pool_gets_decode_sized_blocks_not_whole_epochs(ray_local, demo_manifest):
    """Each decode call gets data.actor_batch_size images: Ray Data merges what one task
    yields into one block, so the per-epoch expansion once handed a whole epoch to one actor
    (benchmarks/scale.py: 3 GB in that actor at 434,528 images, the rest of the pool idle)."""
    cfg, source = _source(demo_manifest, "optim.epochs=2", "data.actor_batch_size=40")
    ledger = create_ledger(source, cfg.data)
    blocks = [len(b["label"]) for b in D.train_stream(cfg, source, ledger).iter_batches(
        batch_size=None, batch_format="numpy")]
    per_epoch = (source.images["train"] // 64) * 64
    assert sum(blocks) == 2 * per_epoch and max(blocks) <= 40
    assert len(blocks) >= 2 * (per_epoch // 40)


def _damaged_manifest(demo_manifest, tmp_path, victims: int):
    """Plant damage after the manifest was built: headers read fine, bodies are broken."""
    df = read_manifest(str(demo_manifest))
    train = df.index[df.split == "train"][:victims]
    for i, idx in enumerate(train):
        dst = tmp_path / f"bad{i}.jpg"
        data = open(df.loc[idx, "path"], "rb").read()
        dst.write_bytes(b"garbage" * 10 if i % 2 else data[: len(data) // 3])
        df.loc[idx, "path"] = str(dst)
    report = json.loads((demo_manifest.parent / "data_report.json").read_text())
    write_manifest(df, report, str(tmp_path / "m.parquet"))
    return tmp_path / "m.parquet", set(df.loc[train, "row"])


@pytest.mark.slow
def test_bad_rows_dropped_before_the_split_and_counted(ray_local, demo_manifest, tmp_path):
    manifest, bad_rows = _damaged_manifest(demo_manifest, tmp_path, 4)
    cfg, source = _source(manifest, "optim.epochs=1")
    ledger = create_ledger(source, cfg.data)
    seen = set(torch.cat([b["row"] for b in _collect(
        D.train_stream(cfg, source, ledger), True, batch=1)]).tolist())
    epoch = set(D.epoch_units(source.units["train"], 1, cfg.run.seed,
                              (source.images["train"] // 64) * 64)["row"].to_pylist())
    dropped = ray_local.get(ledger.bad_count.remote("train", 1))
    examples = ray_local.get(ledger.bad_examples.remote("train", 1))
    assert not seen & bad_rows and seen | (bad_rows & epoch) == epoch
    assert dropped == len(bad_rows & epoch)  # exactly the damaged rows this epoch drew
    assert 0 < len(examples) <= 5 and all("bad" in d for d in examples)


@pytest.mark.slow
def test_too_many_bad_rows_stop_with_examples(ray_local, demo_manifest, tmp_path):
    manifest, _ = _damaged_manifest(demo_manifest, tmp_path, 60)
    cfg, source = _source(manifest, "optim.epochs=1", "data.max_bad_fraction=0.01")
    ledger = create_ledger(source, cfg.data)
    with pytest.raises(Exception, match="could not be decoded, more than data.max_bad_fraction"):
        _collect(D.train_stream(cfg, source, ledger), True)


@pytest.mark.slow
def test_packed_shards_mix_names_and_resume_in_the_same_order(ray_local, demo_manifest,
                                                              tmp_path):
    """Packed batches mix names as well as the path manifest's, and a stream restarted at
    epoch 2 (a resume) yields epoch 2's rows in exactly the order of an uninterrupted run."""
    from raysys.data.pack import pack
    from raysys.train.shards import train_batches

    info = pack(str(demo_manifest), str(tmp_path / "packed"), size=40, shard_mb=1)
    n = len(read_manifest(str(demo_manifest)))
    assert info["images"] == n and info["shards"]["train"] and info["shards"]["val"]
    df = read_manifest(str(demo_manifest))
    packed = load_source(load_config("micro", sets=[f"data.manifest={tmp_path / 'packed'}"]).data)
    assert packed.images == {s: int((df.split == s).sum()) for s in ("train", "val", "test")}
    # a folder packed before test existed (or without a test split) has none
    old = json.loads((tmp_path / "packed" / "pack.json").read_text())
    old["shards"].pop("test")
    (tmp_path / "packed" / "pack.json").write_text(json.dumps(old))
    assert load_source(load_config("micro", sets=[
        f"data.manifest={tmp_path / 'packed'}"]).data).images["test"] == 0
    (tmp_path / "packed" / "pack.json").write_text(json.dumps(info))
    diversity, orders = {}, {}
    for name, manifest, start in (("paths", demo_manifest, 1),
                                  ("packed", tmp_path / "packed", 1),
                                  ("resumed", tmp_path / "packed", 2)):
        cfg, source = _source(manifest, "optim.epochs=2", "data.batch_size=64")
        ledger = create_ledger(source, cfg.data)
        ray_local.get(ledger.set_start.remote(start))
        assert source.images["train"] == (read_manifest(str(demo_manifest)).split == "train").sum()
        ds = D.train_stream(cfg, source, ledger)
        ds.context.execution_options.preserve_order = True  # as SplitConfig does for training
        batches = list(train_batches(cfg, ds, torch.device("cpu")))
        diversity[name] = np.mean([len(set(b["label"].tolist())) for b in batches])
        orders[name] = torch.cat([b["row"] for b in batches])
    assert diversity["packed"] >= 0.9 * diversity["paths"], diversity
    per_epoch = len(orders["resumed"])
    full_rows = orders["packed"]
    assert len(full_rows) == 2 * per_epoch
    assert torch.equal(full_rows[per_epoch:], orders["resumed"])
    assert not torch.equal(full_rows[:per_epoch], full_rows[per_epoch:])  # a new order each epoch


@pytest.mark.slow
def test_lfw_val_decodes_once(ray_local, lfw_index, tmp_path):
    """Held decoded (small), val is decoded once: a materialised dataset that every evaluation
    reads without running a decode again, each val row exactly once per pass. Held as JPEG
    bytes (val_cache=encoded, the production size), each evaluation decodes the same pixels."""
    cfg = load_config("micro", sets=[f"data.index_dir={lfw_index}", "data.split_by=group",
                                     "data.img_size=64", "model.patch_size=8",
                                     "data.top_k=20"])
    df, report = build_manifest(cfg.data)
    write_manifest(df, report, str(tmp_path / "m.parquet"))
    from ray.data.dataset import MaterializedDataset

    def pass_over(ds) -> tuple[np.ndarray, torch.Tensor]:
        batches = _collect(ds, False, batch=128)
        rows = torch.cat([b["row"] for b in batches]).numpy()
        order = np.argsort(rows)
        return rows[order], torch.cat([b["image"] for b in batches])[order]

    val_rows = np.sort(df.loc[df.split == "val", "row"].to_numpy())
    cfg, source = _source(tmp_path / "m.parquet", "data.img_size=64", "model.patch_size=8")
    ledger = create_ledger(source, cfg.data)
    assert D.val_cache(cfg, source) == "decoded"
    held = D.val_dataset(cfg, source, ledger)
    assert isinstance(held, MaterializedDataset)  # nothing left to execute: no decode
    first, second = pass_over(held), pass_over(held)
    assert np.array_equal(first[0], val_rows) and np.array_equal(second[0], val_rows)
    assert torch.equal(first[1], second[1])
    cfg_b, source_b = _source(tmp_path / "m.parquet", "data.img_size=64", "model.patch_size=8",
                              "data.val_cache=encoded")
    encoded = D.val_dataset(cfg_b, source_b, create_ledger(source_b, cfg_b.data))
    rows_b, images_b = pass_over(encoded)
    assert np.array_equal(rows_b, val_rows) and torch.equal(images_b, first[1])
