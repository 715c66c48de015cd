import json
import os
import subprocess
import sys
from pathlib import Path

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
    format_report,
    label_names,
    read_manifest,
    stable_fraction,
    write_manifest,
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
    with pytest.raises(ManifestError) as e:
        build_manifest(DataConfig(index_dir=str(idx), split_by="group"))
    assert str(e.value) == (
        f"{idx}: data.split_by=group with data.group_by=parent makes every name a single "
        "identity group (the folders are the names themselves?), so each name would land "
        "wholly in train or wholly in val. Use data.split_by=image, or a data.group_pattern "
        "that captures the person in the path")
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
                                "--split-by", "group", "--group-by", "parent",
                                "--test-fraction", "0")  # the default preset holds out 0.1
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


def test_written_manifest_reads_back_with_its_names_and_report(messy_index, tmp_path):
    df, report = build_manifest(DataConfig(index_dir=str(messy_index), split_by="group"))
    out = tmp_path / "m" / "manifest.parquet"
    write_manifest(df, report, str(out))
    back = read_manifest(str(out))
    pd.testing.assert_frame_equal(back, df.reset_index(drop=True), check_dtype=False)
    assert list(read_manifest(str(out), columns=["row", "label"]).columns) == ["row", "label"]
    names = json.loads((out.parent / "names.json").read_text())
    assert names == label_names(df) == ["ann", "bob"]
    assert json.loads((out.parent / "data_report.json").read_text()) == json.loads(
        json.dumps(report))


def test_label_names_follow_the_label_not_the_row_order():
    df = pd.DataFrame({"label": [2, 0, 1, 0, 2], "name": ["cy", "al", "bo", "al", "cy"]})
    assert label_names(df) == ["al", "bo", "cy"]


def test_format_report_lines():
    r = {"index_dir": "/d", "names": 3, "images": 10, "train": 8, "val": 2,
         "largest": [("al", 5), ("bo", 3)], "smallest": [("bo", 3), ("cy", 2)],
         "class_size_cv": 0.41234,
         "names_without_train_images": [], "bad_inputs": {}}
    assert format_report(r).splitlines() == [
        "index folder : /d", "names        : 3", "images       : 10  (train 8, val 2)",
        "largest      : al 5, bo 3", "smallest     : bo 3, cy 2",
        "class CV     : 0.412  (std/mean of images per name)", "bad inputs   : none"]
    r |= {"names_without_train_images": [f"n{i}" for i in range(10)],
          "bad_inputs": {"missing": {"count": 2}, "duplicate": {"count": 1}}}
    lines = format_report(r).splitlines()
    assert lines[-2] == ("no train imgs: 10 names (all their identities fell in val or test): "
                         "n0, n1, n2, n3, n4, n5, n6, n7  -> train with data.top_k, or another "
                         "split")
    assert lines[-1] == "bad inputs   : missing 2, duplicate 1"


def test_read_header_names_each_kind_with_size_and_bytes(tmp_path):
    from raysys.data.manifest import read_header

    ok = tmp_path / "ok.jpg"
    Image.new("RGB", (30, 20), (1, 2, 3)).save(ok, format="JPEG")
    n = ok.stat().st_size
    assert read_header(str(ok), 600) == ("ok", 30, 20, n)  # exactly the pixel limit
    assert read_header(str(ok), 599) == ("too_large", 30, 20, n)
    png = tmp_path / "ok.png"
    Image.new("L", (5, 7)).save(png)
    assert read_header(str(png), 100) == ("ok", 5, 7, png.stat().st_size)
    big = tmp_path / "big.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (150, 200, 3), np.uint8)).save(
        big, format="JPEG")
    cut = tmp_path / "cut.jpg"  # the header reads, the end marker is gone
    cut.write_bytes(big.read_bytes()[: big.stat().st_size * 2 // 3])
    assert read_header(str(cut), 10**6) == ("truncated", 200, 150, cut.stat().st_size)
    stub = tmp_path / "stub.jpg"  # too short for a header, but a JPEG's start
    stub.write_bytes(ok.read_bytes()[:12])
    assert read_header(str(stub), 600) == ("truncated", 0, 0, 12)
    text = tmp_path / "text.jpg"
    text.write_text("not an image")
    assert read_header(str(text), 600) == ("not_image", 0, 0, 12)
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert read_header(str(tmp_path / "empty.jpg"), 600) == ("empty", 0, 0, 0)
    assert read_header(str(tmp_path), 600) == ("not_a_file", 0, 0, 0)
    assert read_header(str(tmp_path / "gone.jpg"), 600) == ("missing", 0, 0, 0)
    os.symlink(tmp_path / "b", tmp_path / "a")
    os.symlink(tmp_path / "a", tmp_path / "b")
    assert read_header(str(tmp_path / "a"), 600) == ("unreadable", 0, 0, 0)


def test_group_of_by_pattern_folder_or_none():
    import re

    from raysys.data.manifest import group_of

    path = "/data/ann/ann_p7/3.jpg"
    assert group_of(path, "parent", None) == "ann_p7" and group_of(path, "none", None) is None
    assert group_of(path, "none", re.compile(r"_(p\d+)/")) == "p7"  # the first group
    assert group_of(path, "parent", re.compile(r"p\d+")) == "p7"  # no group: the match
    assert group_of(path, "parent", re.compile(r"q\d+")) is None


def test_assign_groups_walks_digest_order_towards_the_target():
    from raysys.data.manifest import assign_groups, stable_fraction

    sizes = {"a": 10, "b": 10, "c": 10, "d": 10, "e": 60}
    order = sorted(sizes, key=stable_fraction)
    val = assign_groups(sizes, 0.2)  # target 20 of 100 images: two of the small groups
    assert "e" not in val and sum(sizes[g] for g in val) == 20
    assert val == set([g for g in order if g != "e"][:2])
    assert assign_groups(sizes, 0.0) == set() and assign_groups({"x": 5}, 0.5) == set()
    assert assign_groups({"x": 5}, 0.6) == {"x"}  # 5 is nearer 3 than 0 is


def test_data_report_fields():
    from raysys.data.manifest import BadInputs, data_report

    names = ["al", "bo", "cy", "di", "ed", "fy"]
    counts = {"al": 6, "bo": 5, "cy": 4, "di": 3, "ed": 2, "fy": 1}
    rows = [(n, "val" if n == "fy" or (n == "al" and i == 0) else "train")
            for n, c in counts.items() for i in range(c)]
    df = pd.DataFrame(rows, columns=["name", "split"])
    bad = BadInputs()
    bad.add("missing", "x.jpg")
    r = data_report(df, names, bad, tmp_index := Path("/idx"))
    sizes = np.array(list(counts.values()), float)
    assert r == {"index_dir": str(tmp_index), "names": 6, "images": 21, "train": 19, "val": 2,
                 "test": 0,
                 "largest": [["al", 6], ["bo", 5], ["cy", 4], ["di", 3], ["ed", 2]],
                 "smallest": [["bo", 5], ["cy", 4], ["di", 3], ["ed", 2], ["fy", 1]],
                 "class_size_cv": pytest.approx(sizes.std() / sizes.mean()),
                 "names_without_train_images": ["fy"],
                 "bad_inputs": {"missing": {"count": 1, "meaning": r["bad_inputs"]["missing"][
                     "meaning"], "examples": ["x.jpg"]}}}


def test_each_bad_kind_names_its_file(messy_index):
    _, report = build_manifest(DataConfig(index_dir=str(messy_index)))
    ex = {k: v["examples"] for k, v in report["bad_inputs"].items()}
    idx = str(messy_index)
    assert ex["malformed_json"] == [f"{idx}/index_cat.json: Expecting property name enclosed in "
                                    "double quotes: line 1 column 2 (char 1)"]
    assert ex["empty_json"] == [f"{idx}/index_dan.json"]
    assert ex["no_good_key"] == [f"{idx}/index_eve.json"]
    assert len(ex["duplicate"]) == 1 and ex["duplicate"][0].endswith(
        "ann_p1/0.jpg (twice in index_ann.json)")
    assert all("shared.jpg (under 2 names, incl. " in e for e in ex["conflict"])


def test_the_image_split_is_the_digest_of_each_path(demo_index):
    data = DataConfig(index_dir=str(demo_index), split_by="image", val_fraction=0.3)
    df, _ = build_manifest(data)
    rel = [os.path.relpath(p, demo_index) for p in df["path"]]
    want = ["val" if stable_fraction(r) < 0.3 else "train" for r in rel]
    assert df["split"].tolist() == want and 0.2 < (df["split"] == "val").mean() < 0.4


def test_group_pattern_names_the_person(tmp_path):
    img, idx = tmp_path / "images", tmp_path / "index_files"
    idx.mkdir()
    for name in ("ann", "bob"):
        for person in range(4):
            for i in range(2):
                _jpeg(img / name / f"{name}_p{person}_{i}.jpg")
        _jpeg(img / name / f"{name}-loose.jpg")  # the pattern does not match: no person
        (idx / f"index_{name}.json").write_text(json.dumps({"good": [
            f"../images/{name}/{name}_p{p}_{i}.jpg" for p in range(4) for i in range(2)]
            + [f"../images/{name}/{name}-loose.jpg"]}))
    df, _ = build_manifest(DataConfig(index_dir=str(idx), split_by="group", group_by="none",
                                      group_pattern=r"(\w+_p\d+)_", val_fraction=0.25))
    loose = df[df["group"].isna()]
    assert len(loose) == 2 and loose["split"].tolist() == [  # their per-image split
        "val" if stable_fraction(os.path.relpath(p, idx)) < 0.25 else "train"
        for p in loose["path"]]
    assert sorted(df["group"].dropna().unique()) == [f"{n}_p{p}" for n in ("ann", "bob")
                                                     for p in range(4)]
    assert df.groupby("group")["split"].nunique().max() == 1  # a person on one side
    assert set(df["split"]) == {"train", "val"}


def test_manifest_errors_name_the_folder_and_the_fix(tmp_path):
    def error(index_dir):
        with pytest.raises(ManifestError) as e:
            build_manifest(DataConfig(index_dir=str(index_dir)))
        return str(e.value)

    assert error(tmp_path / "nope") == (
        f"{tmp_path / 'nope'}: not a folder; data.index_dir (--index-dir) must hold the "
        "index_<name>.json files")
    assert error(tmp_path) == (
        f"{tmp_path}: no index_<name>.json files found; point data.index_dir (--index-dir) at "
        "the folder that holds them")
    (tmp_path / "index_ann.json").write_text(json.dumps({"good": ["gone.jpg"]}))
    assert error(tmp_path) == (
        f"{tmp_path}: no usable images (bad inputs: {{'missing': 1}}); check that the index "
        "paths point at readable image files, or set data.path_map (--path-map OLD=NEW) for "
        "index files written on another machine")


def test_index_files_read_in_order_past_bad_ones(tmp_path):
    """Bad index files sort first here: each is counted, and the good ones after it still
    read; invalid UTF-8 is a malformed index, not a crash; a kind keeps at most MAX_EXAMPLES
    example paths."""
    from raysys.data.manifest import MAX_EXAMPLES, SCHEMA

    idx = tmp_path / "index_files"
    idx.mkdir()
    (idx / "index_a0.json").write_text(json.dumps({"good": []}))
    (idx / "index_a1.json").write_text(json.dumps({"bad": []}))
    (idx / "index_a2.json").write_bytes(b'{"good": ["\xff"]')
    (idx / "index_a3.json").write_text("")
    paths = [f"../images/zed/{i}.jpg" for i in range(4)]
    for p in paths:
        _jpeg(idx / p)
    gone = [f"../images/gone/{i}.jpg" for i in range(MAX_EXAMPLES + 3)]
    (idx / "index_zed.json").write_text(json.dumps({"good": gone[:2] + paths + paths[:1]
                                                    + gone[2:]}))
    (idx / "index_zoe.json").write_text(json.dumps({"good": paths[1:2]}))
    df, report = build_manifest(DataConfig(index_dir=str(idx)))
    bad = report["bad_inputs"]
    assert {k: v["count"] for k, v in bad.items()} == {
        "missing": MAX_EXAMPLES + 3, "duplicate": 1, "conflict": 2, "malformed_json": 1,
        "empty_json": 1, "no_good_key": 1, "no_images": 1}
    assert bad["no_images"]["examples"] == [str(idx / "index_a0.json")]
    assert len(bad["missing"]["examples"]) == MAX_EXAMPLES
    assert sorted(df["name"].unique()) == ["zed"] and len(df) == 3
    assert report["index_dir"] == str(idx)
    assert list(df.columns) == SCHEMA.names and df.index.equals(pd.RangeIndex(len(df)))
    write_manifest(df, report, str(tmp_path / "m.parquet"))
    import pyarrow.parquet as pq

    assert pq.read_schema(tmp_path / "m.parquet").remove_metadata() == SCHEMA


def test_path_map_entries_split_at_the_first_equals():
    from raysys.data.manifest import parse_path_map

    assert parse_path_map(["/a=/b=c", "/x="]) == [("/a", "/b=c"), ("/x", "")]
    for item in ("nonsense", "=b"):
        with pytest.raises(ValueError) as e:
            parse_path_map([item])
        assert str(e.value) == f"path map {item!r}: expected OLD=NEW, e.g. /mnt/old=/data/faces"


def test_a_test_split_is_held_out_by_image_and_leaves_val_as_it_was(demo_index):
    """Per image: test is the lowest data.test_fraction of the digest, val the next
    val_fraction; with test_fraction 0 the split is exactly what it was before test existed."""
    before, _ = build_manifest(DataConfig(index_dir=str(demo_index), val_fraction=0.3))
    rel = [os.path.relpath(p, demo_index) for p in before["path"]]
    assert before["split"].tolist() == ["val" if stable_fraction(r) < 0.3 else "train"
                                        for r in rel]
    df, report = build_manifest(DataConfig(index_dir=str(demo_index), val_fraction=0.3,
                                           test_fraction=0.1))
    u = np.array([stable_fraction(os.path.relpath(p, demo_index)) for p in df["path"]])
    want = np.where(u < 0.1, "test", np.where(u < 0.4, "val", "train"))
    assert df["split"].tolist() == want.tolist()
    assert report["test"] == int((want == "test").sum()) > 0
    assert "test " in format_report(report)


def test_a_test_split_by_group_is_person_disjoint_and_balanced_per_name(tmp_path):
    """Test takes its people first, then val from the rest: every person on one side, every
    name near its fractions of images, and val unchanged where test_fraction is 0."""
    img, idx = tmp_path / "images", tmp_path / "index_files"
    idx.mkdir()
    for name in ("ann", "bob", "cat"):
        paths = []
        for person in range(20):
            for i in range(3):
                _jpeg(img / f"{name}_p{person}" / f"{i}.jpg")
                paths.append(f"../images/{name}_p{person}/{i}.jpg")
        (idx / f"index_{name}.json").write_text(json.dumps({"good": paths}))
    base = DataConfig(index_dir=str(idx), split_by="group", val_fraction=0.2)
    before, _ = build_manifest(base)
    df, _ = build_manifest(DataConfig(**{**base.__dict__, "test_fraction": 0.2}))
    assert df.groupby("group")["split"].nunique().max() == 1  # a person on one side
    shares = df.groupby("name")["split"].value_counts(normalize=True).unstack()
    assert ((shares["test"] - 0.2).abs() < 0.03).all(), shares
    assert ((shares["val"] - 0.2).abs() < 0.03).all(), shares
    # test and val walk different digest orders, so test does not take val's people
    assert set(before.loc[before["split"] == "val", "group"]) != set(
        df.loc[df["split"] == "test", "group"])
    with pytest.raises(Exception, match="test_fraction"):
        from raysys.config import Config, validate

        validate(Config.from_dict({"data": {"val_fraction": 0.6, "test_fraction": 0.4}}))
