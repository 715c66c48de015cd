"""`raysys report RUN_DIR`: the whole summary.md of a run, rebuilt from the run's own files
(training calls it at the end; a sweep calls it for every trial, ASHA-stopped ones included).

Adds to the live summary the training loop writes: plots (curves, F1 against train images,
prediction histogram, confusion of the 20 largest names, reliability diagram, accuracy by
name frequency, skew control, embedding PCA), attention-rollout maps, the floors (pixel-linear,
metadata probe), a class-balanced view, and identity leakage.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from raysys import storage
from raysys.config import Config
from raysys.data.decode import Crops
from raysys.data.manifest import read_manifest
from raysys.data.source import path_manifest
from raysys.report import analysis, plots
from raysys.report.floors import compute_floors
from raysys.report.history import best_entry, read_history, run_status
from raysys.report.summary import REL_CV_TARGET, render_summary

ATTENTION_PER_SIDE = 3  # images from the top and from the bottom names by F1


def load_npy(run_dir: str, name: str) -> np.ndarray:
    return np.load(io.BytesIO(storage.read_bytes(storage.join(run_dir, f"{name}.npy"))))


def attention_figures(cfg: Config, run_dir: str, table: pd.DataFrame, rows: np.ndarray,
                      labels: np.ndarray) -> tuple[dict[str, bytes], list[str]]:
    """Rollout overlays for one val image of each of the top and bottom names by F1, from the
    best model: attention_maps/<name>_<row>.png and a contact sheet."""
    import torch  # only here: a report without figures builds no model (no timm)

    from raysys.model.augment import BatchAugment
    from raysys.model.vit import attention_maps, attention_rollout, build_model

    blob = torch.load(io.BytesIO(storage.read_bytes(storage.join(run_dir, "best_model.pth"))),
                      map_location="cpu", weights_only=True)
    model = build_model(cfg.model, len(table), cfg.data.img_size)
    model.load_state_dict(blob["state_dict"])
    model.eval()
    present = table[table["support"] > 0].sort_values("f1", ascending=False)
    picks = [*present.head(ATTENTION_PER_SIDE).index,
             *present.tail(ATTENTION_PER_SIDE).index[::-1]]
    picks = list(dict.fromkeys(picks))  # a tiny data set may have fewer names than 6
    manifest = read_manifest(path_manifest(cfg.data.manifest)).set_index("row")
    chosen = [int(rows[np.flatnonzero(labels == label)[0]]) for label in picks]
    units = manifest.loc[chosen]
    crops = Crops(cfg.data, cfg.augment, cfg.run.seed, train=False)
    images, ok, _ = crops([None] * len(chosen), units["path"].tolist(),
                          np.minimum(units["width"], units["height"]).to_numpy(),
                          np.zeros(len(chosen), np.int64), np.array(chosen))
    images, kept = images[ok], np.array(chosen)[ok]
    labels_kept = units["label"].to_numpy()[ok]
    x = BatchAugment(cfg.augment, cfg.data.mean, cfg.data.std, torch.device("cpu"))(
        torch.from_numpy(images))  # no draws: normalisation only, as at evaluation
    roll = attention_rollout(attention_maps(model, x))  # (B, patches)
    side = int(round(np.sqrt(roll.shape[1])))
    heat = roll[:, : side * side].view(-1, side, side).numpy()
    heat = heat / np.maximum(heat.max(axis=(1, 2), keepdims=True), 1e-12)
    files, titles = {}, []
    pics = [img.transpose(1, 2, 0) for img in images]
    for i, (row, label) in enumerate(zip(kept, labels_kept, strict=True)):
        name = table.loc[int(label), "name"]
        side_label = "top" if int(label) in picks[:ATTENTION_PER_SIDE] else "bottom"
        title = f"{name} ({side_label}, F1 {table.loc[int(label), 'f1']:.2f})"
        titles.append(title)
        files[f"attention_maps/{name}_{int(row)}.png"] = plots.contact_sheet(
            [pics[i]], [heat[i]], [title])
    files["attention_maps/contact_sheet.png"] = plots.contact_sheet(pics, list(heat), titles)
    return files, titles


def build_report(run_dir: str, figures: bool | None = None) -> str:
    """Recompute every section (and, unless told not to, every figure) from the run folder;
    returns summary.md's path. `figures` defaults to the run's run.figures."""
    cfg = Config.from_dict(storage.read_json(storage.join(run_dir, "config.json")))
    history = read_history(run_dir)
    metric = cfg.run.metric
    best = best_entry(history, metric)
    info = {"run_name": cfg.run.name, "arch": cfg.model.arch, "epochs": cfg.optim.epochs,
            "metric": metric, "status": run_status(history, cfg.optim.epochs),
            "device": "cuda" if any(h["gpu/peak_mem_gb"] > 0 for h in history) else "cpu",
            "class_weights": cfg.loss.class_weights,
            "logit_adjust_tau": cfg.loss.logit_adjust_tau}
    extras: dict = {"floors": compute_floors(cfg.data, cfg.run.seed)}
    # The floors at this run's own names (data.top_k): a sweep over subsets reads each trial
    # against these, not against the base config's.
    storage.write_json(storage.join(run_dir, "floors.json"), extras["floors"])
    table, arrays = None, {}
    if storage.exists(storage.join(run_dir, "results.csv")):
        table = pd.read_csv(io.StringIO(storage.read_text(storage.join(run_dir,
                                                                       "results.csv"))))
        arrays = {name: load_npy(run_dir, name) for name in
                  ("true_labels", "predictions", "val_rows", "confidences")}
        labels, preds = arrays["true_labels"], arrays["predictions"]
        extras["ece"], extras["ece_bins"] = analysis.ece(arrays["confidences"], preds == labels)
        extras["bands"] = analysis.band_accuracy(labels, preds, table["train_count"].to_numpy())
        extras["balanced_subset"] = analysis.balanced_subset(labels, preds, cfg.run.seed)
        manifest = read_manifest(path_manifest(cfg.data.manifest))
        if manifest["group"].notna().any():
            train_groups = set(manifest.loc[manifest["split"] == "train", "group"])
            group_of = dict(zip(manifest["row"], manifest["group"], strict=True))
            extras["leakage"] = analysis.identity_leakage(
                np.array([group_of[int(r)] for r in arrays["val_rows"]], dtype=object),
                train_groups, labels, preds,
                majority=int(np.argmax(table["train_count"].to_numpy())))
            extras["leakage"]["split_by"] = cfg.data.split_by
    extras["figures"] = {}
    if cfg.run.figures if figures is None else figures:
        extras["figures"] = draw_figures(cfg, run_dir, history, best, table, arrays, extras)
    for name, data in extras["figures"].items():
        storage.write_bytes(storage.join(run_dir, name), data)
    path = storage.join(run_dir, "summary.md")
    storage.write_text(path, render_summary(history, table, info, extras))
    return path


def draw_figures(cfg: Config, run_dir: str, history: list[dict], best: dict,
                 table: pd.DataFrame | None, arrays: dict, extras: dict) -> dict[str, bytes]:
    """Every PNG of the report, by file name. The slow part of a report (about 7 s on two
    cores, plus torch and timm for the attention maps), so a sweep of short trials may leave
    it to `raysys report`."""
    figures = {"curves.png": plots.curves(history, cfg.run.metric, best["epoch"])}
    if table is not None:
        labels, preds = arrays["true_labels"], arrays["predictions"]
        figures["f1_vs_train_images.png"] = plots.f1_vs_count(table)
        figures["prediction_histogram.png"] = plots.prediction_histogram(labels, preds,
                                                                         len(table))
        figures["confusion_top20.png"] = plots.confusion_top(labels, preds,
                                                             table["name"].tolist())
        figures["reliability.png"] = plots.reliability(extras["ece_bins"], extras["ece"])
        figures["accuracy_by_frequency.png"] = plots.bands(extras["bands"])
        figures["embeddings_pca.png"] = plots.embeddings_pca(
            load_npy(run_dir, "embeddings"), labels, table["name"].tolist())
        attention, _ = attention_figures(cfg, run_dir, table, arrays["val_rows"], labels)
        figures.update(attention)
    figures["skew_control.png"] = plots.tau_tradeoff(
        analysis.tau_tradeoff(best, REL_CV_TARGET).rows, REL_CV_TARGET)
    return figures
