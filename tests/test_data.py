"""The data path: decode and crop per image (no Ray), seeded epochs of work units, and the Ray
Data streams: shapes, disjoint splits, bad rows dropped before the split and counted, the bad
fraction cap, packed shards that mix names as well as the path manifest."""

import json

import numpy as np
import pyarrow as pa
import pytest
import torch
from PIL import Image

from raysys import data as D
from raysys.augment import KeyedDraws
from raysys.config import load_config
from raysys.keyed_random import derived_seed, keyed_uniform, row_keys
from raysys.manifest import build_manifest, read_manifest, write_manifest

# --- no Ray -----------------------------------------------------------------------------------


def test_keyed_random_is_a_fixed_function():
    u = keyed_uniform(row_keys(0, 1, np.arange(4)), 3)
    assert u.shape == (4, 3) and (u >= 0).all() and (u < 1).all()
    np.testing.assert_array_equal(u, keyed_uniform(row_keys(0, 1, np.arange(4)), 3))
    # Golden: a change would silently change every augmentation of every run.
    assert float(keyed_uniform(row_keys(7, 3, [11]), 1, stream=2)[0, 0]) == 0.7269261479377747
    assert derived_seed(1, 2) == 1258283920
    big = keyed_uniform(row_keys(0, 1, np.arange(20000)), 2)
    assert abs(big.mean() - 0.5) < 0.01 and abs(np.corrcoef(big.T)[0, 1]) < 0.03
    assert not np.array_equal(keyed_uniform(row_keys(0, 2, [5]), 4),
                              keyed_uniform(row_keys(0, 1, [5]), 4))


def test_crop_box_stays_inside_with_the_asked_area_and_ratio():
    u = keyed_uniform(row_keys(0, 1, np.arange(2000)), D.Preprocess.DRAWS)
    for row in u:
        top, left, h, w = D.crop_box(row, 300, 200, (0.8, 1.0), (3 / 4, 4 / 3))
        assert 0 <= top and top + h <= 300 and 0 <= left and left + w <= 200
        assert 0.75 <= h * w / 60000 <= 1.0 + 1e-2
        assert 3 / 4 - 0.02 <= w / h <= 4 / 3 + 0.02


def _image(path, mode, size=(80, 60)):
    if mode == "I;16":
        arr = (np.linspace(0, 65535, size[0] * size[1]).reshape(size[1], size[0]))
        Image.fromarray(arr.astype(np.uint16)).save(path)
    elif mode == "GIF":
        Image.new("RGB", size, (200, 30, 10)).convert("P", palette=Image.ADAPTIVE).save(path)
    else:
        Image.new(mode, size).save(path)
    return str(path)


def test_decode_every_colour_mode(tmp_path):
    modes = {"L": "l.jpg", "CMYK": "cmyk.jpg", "P": "p.png", "RGBA": "rgba.png", "LA": "la.png",
             "I;16": "i16.png", "GIF": "palette.gif"}
    paths = [_image(tmp_path / f, m) for m, f in modes.items()]
    red = tmp_path / "red.jpg"
    Image.new("RGB", (80, 60), (200, 30, 10)).save(red)
    paths.append(str(red))
    n = len(paths)
    units = {"path": np.array(paths), "label": np.arange(n), "row": np.arange(n),
             "epoch": np.ones(n, np.int64), "width": np.full(n, 80), "height": np.full(n, 60)}
    cfg = load_config("micro")
    for split in ("train", "val"):
        out = D.Preprocess(split, cfg.data, (0.8, 1.0), (3 / 4, 4 / 3), 0.5, 0, 12, None)(units)
        assert out["image"].shape == (n, 3, 32, 32) and out["row"].tolist() == list(range(n))
        rgb = out["image"][-1].reshape(3, -1).mean(axis=1)
        assert rgb[0] > 150 and rgb[1] < 80 and rgb[2] < 60  # RGB order, not BGR
        gif = out["image"][modes.__len__() - 1].reshape(3, -1).mean(axis=1)
        assert gif[0] > 150  # the palette GIF kept its colour
        assert out["image"][list(modes).index("I;16")].std() > 10  # 16-bit scaled, not clipped


def test_decode_is_the_same_whichever_actor(tmp_path):
    p = tmp_path / "x.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 70, 3), np.uint8)).save(p)
    units = {"path": np.array([str(p)] * 3), "label": np.zeros(3, int), "row": np.array([4, 4, 5]),
             "epoch": np.array([2, 2, 2]), "width": np.full(3, 70), "height": np.full(3, 90)}
    cfg = load_config("micro")
    a, b = (D.Preprocess("train", cfg.data, (0.5, 1.0), (3 / 4, 4 / 3), 0.5, 0, 12, None)(units)
            for _ in range(2))
    np.testing.assert_array_equal(a["image"], b["image"])  # two actors, same draws
    assert np.array_equal(a["image"][0], a["image"][1])  # same (epoch, row)
    assert not np.array_equal(a["image"][0], a["image"][2])  # another row


def test_bad_rows_are_dropped_not_raised(tmp_path):
    good = _image(tmp_path / "ok.jpg", "RGB")
    (tmp_path / "cut.jpg").write_bytes(open(good, "rb").read()[:200])
    (tmp_path / "junk.jpg").write_text("not an image")
    paths = [good, str(tmp_path / "cut.jpg"), str(tmp_path / "junk.jpg"), str(tmp_path / "gone")]
    units = {"path": np.array(paths), "label": np.arange(4), "row": np.arange(4),
             "epoch": np.ones(4, np.int64), "width": np.full(4, 80), "height": np.full(4, 60)}
    out = D.Preprocess("val", load_config("micro").data, (0.8, 1), (0.75, 1.33), 0.5, 0, 12,
                       None)(units)
    assert out["row"].tolist() == [0]


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
    return cfg, D.load_source(cfg.data)


def _collect(ds, train: bool, seed: int = 0, batch: int = 64) -> list[dict]:
    ds.context.execution_options.preserve_order = True  # as SplitConfig does for training
    return list(ds.iter_torch_batches(batch_size=batch, collate_fn=KeyedDraws(seed, train)))


@pytest.mark.slow
def test_streams_shapes_labels_and_disjoint_splits(ray_local, demo_manifest):
    cfg, source = _source(demo_manifest, "optim.epochs=2")
    ledger = D.create_ledger(source, cfg.data)
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
    top = D.load_source(load_config("micro", sets=[f"data.manifest={demo_manifest}",
                                                   "data.top_k=3"]).data)
    assert set(top.units["val"]["label"].to_pylist()) <= {0, 1, 2} and len(top.names) == 3


@pytest.mark.slow
def test_stream_resumes_at_the_ledgers_epoch(ray_local, demo_manifest):
    cfg, source = _source(demo_manifest, "optim.epochs=3")
    ledger = D.create_ledger(source, cfg.data)
    full = _collect(D.train_stream(cfg, source, ledger), True)
    ledger.set_start.remote(3)
    tail = _collect(D.train_stream(cfg, source, ledger), True)
    n = len(tail)
    assert n == len(full) // 3
    for a, b in zip(full[-n:], tail, strict=True):  # epoch 3 is the same either way
        assert torch.equal(a["row"], b["row"]) and torch.equal(a["image"], b["image"])
        assert torch.equal(a["aug"], b["aug"])


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
    ledger = D.create_ledger(source, cfg.data)
    seen = set(torch.cat([b["row"] for b in _collect(
        D.train_stream(cfg, source, ledger), True, batch=1)]).tolist())
    epoch = set(D.epoch_units(source.units["train"], 1, cfg.run.seed,
                              (source.images["train"] // 64) * 64)["row"].to_pylist())
    dropped = ray_local.get(ledger.bad_rows.remote("train", 1))
    assert not seen & bad_rows and seen | (bad_rows & epoch) == epoch
    assert len(dropped) == len(bad_rows & epoch)  # exactly the damaged rows this epoch drew
    assert all("bad" in d for d in dropped)


@pytest.mark.slow
def test_too_many_bad_rows_stop_with_examples(ray_local, demo_manifest, tmp_path):
    manifest, _ = _damaged_manifest(demo_manifest, tmp_path, 60)
    cfg, source = _source(manifest, "optim.epochs=1", "data.max_bad_fraction=0.01")
    ledger = D.create_ledger(source, cfg.data)
    with pytest.raises(Exception, match="could not be decoded, more than data.max_bad_fraction"):
        _collect(D.train_stream(cfg, source, ledger), True)


@pytest.mark.slow
def test_packed_shards_mix_names_like_the_path_manifest(ray_local, demo_manifest, tmp_path):
    from raysys.pack import pack

    info = pack(str(demo_manifest), str(tmp_path / "packed"), size=40, shard_mb=1)
    n = len(read_manifest(str(demo_manifest)))
    assert info["images"] == n and info["shards"]["train"] and info["shards"]["val"]
    diversity = {}
    for name, manifest in (("paths", demo_manifest), ("packed", tmp_path / "packed")):
        cfg, source = _source(manifest, "optim.epochs=2")
        ledger = D.create_ledger(source, cfg.data)
        assert source.images["train"] == (read_manifest(str(demo_manifest)).split == "train").sum()
        ds = D.train_stream(cfg, source, ledger)
        batches = list(ds.iter_torch_batches(
            batch_size=64, drop_last=True, local_shuffle_buffer_size=D.shuffle_buffer(cfg, source),
            local_shuffle_seed=0, collate_fn=KeyedDraws(0, True)))
        diversity[name] = np.mean([len(set(b["label"].tolist())) for b in batches])
    assert diversity["packed"] >= 0.9 * diversity["paths"], diversity


@pytest.mark.slow
def test_lfw_val_decodes_once(ray_local, lfw_index, tmp_path):
    cfg = load_config("micro", sets=[f"data.index_dir={lfw_index}", "data.split_by=group",
                                     "data.img_size=64", "model.patch_size=8",
                                     "data.top_k=20"])
    df, report = build_manifest(cfg.data)
    write_manifest(df, report, str(tmp_path / "m.parquet"))
    cfg, source = _source(tmp_path / "m.parquet", "data.img_size=64", "model.patch_size=8")
    ledger = D.create_ledger(source, cfg.data)
    rows = [b["row"] for b in _collect(D.val_dataset(cfg, source, ledger), False, batch=128)]
    assert sum(len(r) for r in rows) == (df.split == "val").sum()
