import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from raysys.cli import main as cli
from raysys.config import DataConfig
from raysys.data.manifest import (
    ManifestError,
    assign_groups,
    build_manifest,
    read_manifest,
    stable_fraction,
)


def _jpeg(path, colour=(200, 100, 50)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 16), colour).save(path, format="JPEG")


@pytest.fixture
def messy_index(tmp_path):
    """One example of every kind of bad input, beside good images."""
    img, idx = tmp_path / "images", tmp_path / "index_files"
    idx.mkdir()
    for i in range(6):
        _jpeg(img / "ann_p1" / f"{i}.jpg")
        _jpeg(img / "bob_p1" / f"{i}.jpg")
    (img / "empty.jpg").write_bytes(b"")
    (img / "text.jpg").write_text("this is not an image")
    (img / "cut.jpg").write_bytes((img / "ann_p1" / "0.jpg").read_bytes()[:12])
    whole = (img / "ann_p1" / "1.jpg").read_bytes()
    # Cut past its header: PIL reads the size, and only the missing end marker tells.
    (img / "tail_cut.jpg").write_bytes(whole[: len(whole) * 2 // 3])
    (img / "padded.jpg").write_bytes(whole + b"\0" * 100)  # zero padding after the marker: whole
    _jpeg(img / "shared.jpg")
    ann = [f"../images/ann_p1/{i}.jpg" for i in range(6)]
    bob = [str(img / "bob_p1" / f"{i}.jpg") for i in range(6)]  # absolute paths
    ann += ["../images/missing.jpg", "../images/empty.jpg", "../images/text.jpg",
            "../images/cut.jpg", "../images/tail_cut.jpg", "../images/padded.jpg",
            "../images/shared.jpg", "../images/ann_p1/0.jpg"]
    bob += ["../images/shared.jpg"]
    (idx / "index_ann.json").write_text(json.dumps({"good": ann}))
    (idx / "index_bob.json").write_text(json.dumps({"good": bob, "bad": []}))
    (idx / "index_cat.json").write_text("{not json")
    (idx / "index_dan.json").write_text("")
    (idx / "index_eve.json").write_text(json.dumps({"bad": ["x.jpg"]}))
    return idx


def test_every_bad_input_kind_is_counted_and_left_out(messy_index):
    df, report = build_manifest(DataConfig(index_dir=str(messy_index)))
    bad = report["bad_inputs"]
    expected = {"missing": 1, "empty": 1, "not_image": 1, "truncated": 2, "conflict": 2,
                "duplicate": 1, "malformed_json": 1, "empty_json": 1, "no_good_key": 1}
    assert {k: v["count"] for k, v in bad.items()} == expected
    assert any("missing.jpg" in e for e in bad["missing"]["examples"])
    assert any("index_cat.json" in e for e in bad["malformed_json"]["examples"])
    assert any("tail_cut.jpg" in e for e in bad["truncated"]["examples"])
    assert len(df) == 13 and sorted(df["name"].unique()) == ["ann", "bob"]
    assert not df["path"].str.contains("shared|cut|text|empty").any()
    assert df["path"].str.endswith("padded.jpg").sum() == 1
    assert df["path"].map(os.path.isabs).all()
    assert (df["width"] == 16).all() and (df["bytes"] > 0).all()


def test_nothing_usable_fails_naming_the_folder(tmp_path, capsys):
    idx = tmp_path / "idx"
    idx.mkdir()
    assert cli(["manifest", "--index-dir", str(idx), "--out", str(tmp_path / "m.parquet")]) == 2
    assert str(idx) in capsys.readouterr().err
    (idx / "index_x.json").write_text(json.dumps({"good": ["nope.jpg"]}))
    with pytest.raises(ManifestError, match="no usable images"):
        build_manifest(DataConfig(index_dir=str(idx)))


def test_path_map_rewrites_prefixes(tmp_path):
    _jpeg(tmp_path / "real" / "a" / "1.jpg")
    idx = tmp_path / "idx"
    idx.mkdir()
    (idx / "index_a.json").write_text(json.dumps({"good": ["/mnt/old/a/1.jpg"]}))
    df, _ = build_manifest(DataConfig(index_dir=str(idx),
                                      path_map=(f"/mnt/old={tmp_path / 'real'}",)))
    assert df["path"].tolist() == [str(tmp_path / "real" / "a" / "1.jpg")]


def test_labels_by_count_then_name_and_top_k(demo_index):
    df, _ = build_manifest(DataConfig(index_dir=str(demo_index)))
    sizes = df.groupby("label")["name"].agg(["first", "size"])
    keys = [(-s, n) for n, s in zip(sizes["first"], sizes["size"], strict=True)]
    assert keys == sorted(keys)
    top, _ = build_manifest(DataConfig(index_dir=str(demo_index), top_k=3))
    assert sorted(top["label"].unique()) == [0, 1, 2]
    assert set(top["name"]) == set(sizes["first"][:3])


def test_group_split_is_identity_disjoint(demo_index):
    df, _ = build_manifest(DataConfig(index_dir=str(demo_index), split_by="group"))
    sides = df.groupby("group")["split"].nunique()
    assert (sides == 1).all()
    assert set(df["split"]) == {"train", "val"}
    share = df.groupby("name")["split"].apply(lambda s: (s == "val").mean())
    assert share.between(0.05, 0.4).all(), share


def test_group_split_balances_each_name():
    """A name with one dominant person: hashing groups alone can send that person (and nearly
    the whole name) to val; the per-name split keeps them in train and fills val with the
    others, up to the target share."""
    sizes = {"dominant": 90, **{f"p{i}": 2 for i in range(10)}}
    val = assign_groups(sizes, 0.2)  # target 22 images
    assert "dominant" not in val and sum(sizes[g] for g in val) == 20
    assert assign_groups({"only": 50}, 0.2) == set()  # one person cannot be split
    assert assign_groups({"a": 10, "b": 10, "c": 10, "d": 10, "e": 10}, 0.2) != set()


def test_a_person_under_two_names_stays_on_one_side(tmp_path):
    idx = tmp_path / "idx"
    idx.mkdir()
    index = {"ann": [], "bob": []}
    for p in range(12):
        for i in range(3):
            _jpeg(tmp_path / "images" / f"p{p}" / f"{i}.jpg")
            index["ann" if p < 6 else "bob"].append(f"../images/p{p}/{i}.jpg")
    for p in range(6):  # each of ann's people also has one image listed under bob
        _jpeg(tmp_path / "images" / f"p{p}" / "9.jpg")
        index["bob"].append(f"../images/p{p}/9.jpg")
    for name, paths in index.items():
        (idx / f"index_{name}.json").write_text(json.dumps({"good": paths}))
    df, _ = build_manifest(DataConfig(index_dir=str(idx), split_by="group", val_fraction=0.3))
    assert (df.groupby("group")["split"].nunique() == 1).all()
    assert set(df["split"]) == {"train", "val"}


def test_stable_fraction_is_a_fixed_digest():
    # Golden values: any change of digest would silently reshuffle every existing split.
    assert stable_fraction("a/b.jpg") == 0.40596623609383115
    assert stable_fraction("George_W_Bush") == 0.20337580254717685
    fractions = np.array([stable_fraction(f"img{i}.jpg") for i in range(5000)])
    assert abs((fractions < 0.2).mean() - 0.2) < 0.02


def test_split_with_the_names_as_folders_is_refused(tmp_path):
    """group_by=parent when each name's images sit in one folder: every name would be one
    identity and land wholly in train or in val."""
    idx = tmp_path / "idx"
    idx.mkdir()
    for name in ("ann", "bob", "cat"):
        for i in range(3):
            _jpeg(tmp_path / "images" / name / f"{i}.jpg")
        (idx / f"index_{name}.json").write_text(json.dumps(
            {"good": [f"../images/{name}/{i}.jpg" for i in range(3)]}))
    with pytest.raises(ManifestError, match="single identity group.*split_by=image"):
        build_manifest(DataConfig(index_dir=str(idx), split_by="group"))
    df, _ = build_manifest(DataConfig(index_dir=str(idx), split_by="image"))
    assert len(df) == 9 and df["row"].tolist() == list(range(9))


def _manifest_in_subprocess(index_dir, out, hashseed, *extra):
    env = dict(os.environ, PYTHONHASHSEED=str(hashseed))
    subprocess.run([sys.executable, "-m", "raysys.cli", "manifest", "--index-dir",
                    str(index_dir), "--out", str(out), *extra], check=True, env=env,
                   capture_output=True)
    return read_manifest(out)


@pytest.mark.slow
def test_lfw_manifest(lfw_index, tmp_path):
    a = _manifest_in_subprocess(lfw_index, tmp_path / "a" / "m.parquet", 1)
    b = _manifest_in_subprocess(lfw_index, tmp_path / "b" / "m.parquet", 2)
    assert len(a) == 6616 and a["label"].nunique() == 122
    pd.testing.assert_frame_equal(a, b)
    g = _manifest_in_subprocess(lfw_index, tmp_path / "g" / "m.parquet", 3,
                                "--split-by", "group", "--group-by", "parent")
    assert (g.groupby("group")["split"].nunique() == 1).all()
    assert g["group"].nunique() == 1851
    report = json.loads((tmp_path / "g" / "data_report.json").read_text())
    assert report["images"] == 6616 and report["bad_inputs"] == {}
    # The split is balanced per name (assign_groups): a name of one person keeps that person
    # in train (LFW has 15 such names), and every name of two or more people has people on
    # both sides. So no name is left without train images.
    per = g.groupby("name").agg(people=("group", "nunique"),
                                train=("split", lambda s: (s == "train").sum()),
                                val=("split", lambda s: (s == "val").sum()))
    alone = per[per["people"] == 1]
    assert len(alone) == 15 and (alone["val"] == 0).all() and (alone["train"] > 0).all()
    several = per[per["people"] >= 2]
    assert (several["train"] > 0).all() and (several["val"] > 0).all()
    assert report["names_without_train_images"] == []
