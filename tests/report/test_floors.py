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
