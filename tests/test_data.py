import shutil

import numpy as np
import pytest
import torch

from raysys.config import AugmentConfig, DataConfig
from raysys.data import BatchStream, Preprocess, build_dataset, class_info
from raysys.manifest import ManifestOptions, build_manifest, read_manifest, write_manifest


def _collect(ds):
    rows = ds.take_all()
    return (np.stack([r["image"] for r in rows]), np.array([r["label"] for r in rows]),
            np.array([r["valid"] for r in rows]))


def test_dataset_shapes_labels_and_disjoint_splits(ray_local, demo_manifest):
    data = DataConfig(manifest=str(demo_manifest), img_size=32, num_actors=1,
                      cpus_per_actor=0.5, actor_batch_size=32)
    info = class_info(demo_manifest)
    df = read_manifest(demo_manifest)
    for split in ("train", "val"):
        images, labels, valid = _collect(build_dataset(data, AugmentConfig(), split))
        assert images.shape == ((df["split"] == split).sum(), 3, 32, 32)
        assert images.dtype == np.uint8 and labels.dtype == np.int64 and valid.all()
        assert labels.min() >= 0 and labels.max() < len(info.names)
        assert images.std() > 10  # real pictures, not blanks
    train, val = set(df[df.split == "train"].path), set(df[df.split == "val"].path)
    assert train and val and not train & val
    top = build_dataset(DataConfig(manifest=str(demo_manifest), img_size=32, num_actors=1,
                                   cpus_per_actor=0.5, top_k=3), AugmentConfig(), "val")
    assert set(_collect(top)[1]) <= {0, 1, 2}


def test_corrupt_images_are_counted_not_raised(ray_local, demo_index, tmp_path):
    df, report = build_manifest(demo_index, ManifestOptions())
    # Plant damage after the manifest was built: headers read fine, bodies are broken.
    victims = df[df.split == "train"].path.iloc[:3].tolist()
    for i, p in enumerate(victims):
        dst = tmp_path / f"bad{i}.jpg"
        data = open(p, "rb").read()
        dst.write_bytes(data[: len(data) // 3] if i < 2 else b"garbage" * 10)
        df.loc[df.path == p, "path"] = str(dst)
    missing = tmp_path / "gone.jpg"
    shutil.copy(victims[0], missing)
    df.loc[df.index[df.split == "train"][3], "path"] = str(missing)
    missing.unlink()
    write_manifest(df, report, tmp_path / "m.parquet")
    data = DataConfig(manifest=str(tmp_path / "m.parquet"), img_size=32, num_actors=1,
                      cpus_per_actor=0.5)
    ds = build_dataset(data, AugmentConfig(), "train")
    stream = BatchStream(ds.iterator(), batch_size=64, device=torch.device("cpu"))
    seen = sum(len(labels) for _, labels in stream)
    # A JPEG cut at a third may still decode (PIL pads it); the garbage and the missing file
    # never do.
    assert 2 <= stream.bad_images <= 4
    assert seen + stream.bad_images == (df.split == "train").sum()


def test_preprocess_modes_and_color_modes(tmp_path):
    from PIL import Image

    paths = []
    for mode in ("L", "CMYK", "P", "RGBA", "LA"):
        p = tmp_path / f"{mode}.png" if mode in ("P", "RGBA", "LA") else tmp_path / f"{mode}.jpg"
        Image.new(mode, (80, 60)).save(p)
        paths.append(str(p))
    Image.new("RGB", (80, 60), (200, 30, 10)).save(tmp_path / "red.jpg")
    paths.append(str(tmp_path / "red.jpg"))
    sized = {"width": np.full(6, 80), "height": np.full(6, 60)}  # JPEGs take the OpenCV path
    for extra in ({}, sized):
        batch = {"path": np.array(paths), "label": np.arange(6), **extra}
        for train in (True, False):
            out = Preprocess(train=train, img_size=32)(batch)
            assert out["image"].shape == (6, 3, 32, 32) and out["valid"].all()
            red = out["image"][5].reshape(3, -1).mean(axis=1)
            assert red[0] > 150 and red[1] < 80 and red[2] < 60  # RGB order, not BGR


def test_pack_round_trip(ray_local, demo_manifest, tmp_path):
    from raysys.pack import pack

    info = pack(demo_manifest, tmp_path / "packed", size=40, shard_mb=1)
    assert info["images"] == len(read_manifest(demo_manifest)) and info["shards"]
    data = DataConfig(manifest=str(tmp_path / "packed"), img_size=32, num_actors=1,
                      cpus_per_actor=0.5)
    images, labels, valid = _collect(build_dataset(data, AugmentConfig(), "train"))
    assert valid.all() and images.shape[1:] == (3, 32, 32)
    assert len(labels) == (read_manifest(demo_manifest).split == "train").sum()


@pytest.mark.slow
def test_lfw_val_epoch_streams(ray_local, lfw_index, tmp_path):
    df, report = build_manifest(lfw_index, ManifestOptions(split_by="group"))
    write_manifest(df, report, tmp_path / "m.parquet")
    data = DataConfig(manifest=str(tmp_path / "m.parquet"), img_size=64, num_actors=1,
                      cpus_per_actor=1.0)
    stream = BatchStream(build_dataset(data, AugmentConfig(), "val").iterator(), 128,
                         torch.device("cpu"))
    n = 0
    for images, labels in stream:
        assert images.shape[1:] == (3, 64, 64) and images.dtype == torch.uint8
        n += len(labels)
    assert n == (df.split == "val").sum() and stream.bad_images == 0
