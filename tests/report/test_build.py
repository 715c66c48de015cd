"""`raysys report RUN_DIR` on a real (micro, demo-data) run: every section and every figure."""

import pytest
from PIL import Image

SECTIONS = ("## Success criteria", "## Against chance and the floors", "## Identity leakage",
            "## Accuracy by name frequency", "Calibration: ECE",
            "## Skew control: post-hoc logit adjustment", "## Top-5 names by F1",
            "## Bottom-5 names by F1", "## Curves",
            "## Intervals: selected on val, selection-free, and against the floors",
            "this model, **selection-free**",
            "| this model - gender floor (selection-free, paired) |",
            "**Any name signal**", "**Power**",
            "## Beyond gender and generation", "Source: US SSA baby names",
            "**Name signal beyond gender**",
            "within stratum, selection-free: balanced (95%)",
            "- Within-gender balanced accuracy minus the gender floor, selection-free",
            "## Figures")
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


@pytest.mark.slow
def test_a_report_without_figures_has_every_table_and_no_png(straight_run, tmp_path):
    """run.figures=false (a sweep of short trials): every section but the figures, no PNG
    written, and no model (timm) built to write it."""
    import shutil
    import subprocess
    import sys

    run, _ = straight_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("*.png", "checkpoints"))
    code = ("import sys; from raysys.report.build import build_report; "
            f"build_report({str(copy)!r}, figures=False); "
            "assert 'timm' not in sys.modules, 'timm imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    summary = (copy / "summary.md").read_text()
    for section in SECTIONS[:-1]:
        assert section in summary, section
    assert "## Figures" not in summary and not list(copy.rglob("*.png"))
