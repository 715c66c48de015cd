"""The GPU check runs end to end as a CPU dry run, so the script a lent GPU machine runs once
is known to work before that machine exists."""

import pytest


@pytest.mark.slow
def test_gpu_check_dry_run(ray_local, tmp_path):
    from benchmarks.gpu_check import main

    report = main(["--device", "cpu", "--preset", "micro", "--steps", "3", "--images", "128",
                   "--epochs", "2", "--no-compile", "--out", str(tmp_path)])
    assert (tmp_path / "gpu_check.json").exists()
    (synthetic,) = report["synthetic"]
    assert synthetic["img_per_s"] > 0 and not synthetic["diverged"]
    full = report["full_path"]
    assert full["img_per_s"] > 0 and 0 <= full["data_wait_frac"] <= 1
    assert full["resume"]["ok"] and full["resume"]["epochs_first"] == [1]
