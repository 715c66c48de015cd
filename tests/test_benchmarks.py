"""The GPU check runs end to end as a CPU dry run, so the script a lent GPU machine runs once
is known to work before that machine exists."""

import json
import time

import numpy as np
import pytest
from PIL import Image


@pytest.mark.slow
def test_gpu_check_dry_run(ray_local, tmp_path):
    from benchmarks.gpu_check import main
    from raysys.config import load_config

    t0 = time.perf_counter()
    report = main(["--device", "cpu", "--preset", "micro", "--steps", "3", "--images", "128",
                   "--epochs", "2", "--out", str(tmp_path)])
    elapsed = time.perf_counter() - t0
    assert json.loads((tmp_path / "gpu_check.json").read_text()) == report
    (synthetic,) = report["synthetic"]
    # 3 steps of the preset's batch, timed inside this call
    assert synthetic["images"] == 3 * load_config("micro").global_batch
    assert 0 < synthetic["seconds"] < elapsed
    assert synthetic["img_per_s"] == pytest.approx(synthetic["images"] / synthetic["seconds"])
    assert not synthetic["diverged"] and np.isfinite(synthetic["loss"])
    full = report["full_path"]
    # An epoch trains one step of 64 (about 100 of the 128 images are train): at the measured
    # train rate they take no longer than the whole epoch.
    assert full["img_per_s"] * full["epoch_s"] >= 64
    assert 0 <= full["data_wait_frac"] < 1
    assert full["resume"] == {"epochs_first": [1], "epochs_after": [1, 2], "ok": True}


@pytest.mark.slow
def test_gpu_check_runs_the_production_step_on_cpu(tmp_path):
    """ViT-B/16 at 224 px with 500 names: two real optimiser steps of the production model, and
    its FLOPs counted on the model (forward + backward of one image, ~3x 17.6 GMAC x 2)."""
    from benchmarks.gpu_check import main

    report = main(["--device", "cpu", "--preset", "vit_base", "--steps", "2", "--batch", "2",
                   "--out", str(tmp_path)])
    (step,) = report["synthetic"]
    assert step["images"] == 2 * 2 and not step["diverged"]  # --steps 2 of --batch 2
    assert step["img_per_s"] == pytest.approx(step["images"] / step["seconds"])
    assert abs(step["loss"] - np.log(500)) < 1.5  # an untrained head over 500 names
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
    assert s["sizes"][-1] >= 9_000 and s["val_scored_once"]
    # every stage timed at every size, and some stage long enough to be judged for slope
    assert all(len(s["stages"][k]["s"]) == 2 and min(s["stages"][k]["s"]) > 0 for k in STAGES)
    assert any(v["judged"] for v in s["stages"].values())
    assert s["linear"], {k: round(v["slope"], 2) for k, v in s["stages"].items()}
    # Bounded: 7.5k more images add at most ~27 KB each to the driver (measured: ~8 KB, RSS
    # noise included). It catches the driver holding ~27 KB or more per image (a 96 px RGB
    # image; scale's own are 32 px, 3 KB, too few to tell from the noise).
    grew = s["driver_peak_gb"][1] - s["driver_peak_gb"][0]
    assert grew <= 0.2, s["driver_peak_gb"]
    with Image.open(tmp_path / "out" / "scale.png") as png:
        assert png.size[0] > 400 and len(png.getcolors(2**16) or range(2**16)) > 20
