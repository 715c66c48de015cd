"""`raysys report RUN_DIR` on a real (micro, demo-data) run: every section and every figure."""

import pytest
from PIL import Image

SECTIONS = ("## Success criteria", "## Against chance and the floors", "## Identity leakage",
            "## Accuracy by name frequency", "Calibration: ECE",
            "## Skew control: post-hoc logit adjustment", "## Top-5 names by F1",
            "## Bottom-5 names by F1", "## Curves", "## Figures")
FIGURES = ("curves.png", "f1_vs_train_images.png", "prediction_histogram.png",
           "confusion_top20.png", "reliability.png", "accuracy_by_frequency.png",
           "skew_control.png", "embeddings_pca.png", "attention_maps/contact_sheet.png")


@pytest.mark.slow
def test_raysys_report_rebuilds_every_section_and_figure(straight_run, tmp_path):
    """`raysys report RUN_DIR` on a micro demo run: every section, every PNG a valid image."""
    from raysys.cli import main

    run, _ = straight_run
    (run / "summary.md").unlink()
    assert main(["report", str(run)]) == 0
    summary = (run / "summary.md").read_text()
    for section in SECTIONS:
        assert section in summary, section
    for name in FIGURES:
        assert f"]({name})" in summary
        with Image.open(run / name) as im:
            im.verify()
    overlays = [p for p in (run / "attention_maps").glob("*.png")
                if p.name != "contact_sheet.png"]
    assert len(overlays) >= 2
    assert "pixel-linear floor: logistic regression on 32x32 grayscale" in summary
