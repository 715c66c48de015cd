"""The GPU check runs end to end as a CPU dry run, so the script a lent GPU machine runs once
is known to work before that machine exists."""

import numpy as np
import pytest


@pytest.mark.slow
def test_gpu_check_dry_run(ray_local, tmp_path):
    from benchmarks.gpu_check import main

    report = main(["--device", "cpu", "--preset", "micro", "--steps", "3", "--images", "128",
                   "--epochs", "2", "--out", str(tmp_path)])
    assert (tmp_path / "gpu_check.json").exists()
    (synthetic,) = report["synthetic"]
    assert synthetic["img_per_s"] > 0 and not synthetic["diverged"]
    full = report["full_path"]
    assert full["img_per_s"] > 0 and 0 <= full["data_wait_frac"] <= 1
    assert full["resume"]["ok"] and full["resume"]["epochs_first"] == [1]


@pytest.mark.slow
def test_gpu_check_runs_the_production_step_on_cpu(tmp_path):
    """ViT-B/16 at 224 px with 500 names: two real optimiser steps of the production model, and
    its FLOPs counted on the model (forward + backward of one image, ~3x 17.6 GMAC x 2)."""
    from benchmarks.gpu_check import main

    report = main(["--device", "cpu", "--preset", "vit_base", "--steps", "2", "--batch", "2",
                   "--out", str(tmp_path)])
    (step,) = report["synthetic"]
    assert step["names"] == 500 and not step["diverged"]
    assert step["img_per_s"] > 0 and np.isfinite(step["loss"])
    assert 90 < step["gflop_per_train_image"] < 120
    assert report["full_path"] is None


@pytest.mark.slow
def test_scale_quick_is_linear_bounded_and_scores_every_val_image_once(tmp_path):
    """benchmarks/scale.py --quick: the production profile at N = 2.5k and 10k, every stage from
    the manifest to the report, with the invariants the full run reports: linear, bounded,
    every val image scored once. Bounded is checked on the measured peak: extrapolating
    2.5k -> 10k to 434,528 images multiplies ~50 MB of RSS noise by 43 (the full run's
    extrapolation uses 150k and 434,528)."""
    from benchmarks.scale import STAGES, main

    s = main(["--quick", "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out")])
    assert s["sizes"][-1] >= 9_000 and set(s["stages"]) == set(STAGES)
    assert s["val_scored_once"]
    assert max(s["driver_peak_gb"]) <= 2.0, s["driver_peak_gb"]
    assert s["linear"], {k: round(v["slope"], 2) for k, v in s["stages"].items()}
    assert (tmp_path / "out" / "scale.png").stat().st_size > 0
