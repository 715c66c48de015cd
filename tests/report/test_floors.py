"""The floors' cache follows the manifest's content: a manifest rebuilt in place with another
split is scored again, never answered from the old split's file."""

from raysys.config import DataConfig
from raysys.data.manifest import build_manifest, write_manifest
from raysys.report.floors import compute_floors


def test_a_manifest_rebuilt_in_place_gets_its_own_floors(demo_index, tmp_path):
    out = tmp_path / "manifest.parquet"
    for split_by in ("group", "image"):
        df, report = build_manifest(DataConfig(index_dir=str(demo_index), split_by=split_by))
        write_manifest(df, report, str(out))
        floors = compute_floors(DataConfig(manifest=str(out), top_k=3))
        assert floors == compute_floors(DataConfig(manifest=str(out), top_k=3))  # cached
        val = int((df[df["label"] < 3]["split"] == "val").sum())
        assert floors["images"]["val"] == val, split_by  # this split's, not the last one's
    assert len(list(tmp_path.glob("floors-*.json"))) == 2


def test_the_floors_fit_on_a_bounded_sample_with_every_name_in_proportion():
    """At production size the floors' fit stops growing with the data (at most
    data.floor_sample rows), and a small name is never sampled away."""
    import numpy as np

    from raysys.report.floors import train_sample

    labels = np.repeat(np.arange(5), [6000, 3000, 900, 90, 10])
    keep = train_sample(labels, 2000, seed=0)
    counts = np.bincount(labels[keep], minlength=5)
    assert len(keep) <= 2000 and len(np.unique(keep)) == len(keep)
    assert counts.tolist() == [1200, 600, 180, 18, 2]
    assert np.array_equal(keep, train_sample(labels, 2000, seed=0))  # seeded
    assert np.array_equal(train_sample(labels[:50], 2000, seed=0), np.arange(50))  # all
