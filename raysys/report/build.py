"""`raysys report RUN_DIR`: the whole summary.md of a run, rebuilt from the run's own files
(training calls it at the end; a sweep calls it for every trial, ASHA-stopped ones included).

Adds to the live summary the training loop writes: plots (curves, F1 against train images,
prediction histogram, confusion of the 20 largest names, reliability diagram, accuracy by
name frequency, skew control, embedding PCA), attention-rollout maps, the floors (pixel-linear,
metadata probe), a class-balanced view, and identity leakage.
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pandas as pd
from scipy.stats import norm

from raysys import storage
from raysys.config import Config, apply_overrides
from raysys.data.decode import Crops
from raysys.data.manifest import read_manifest
from raysys.data.source import path_manifest
from raysys.keyed_random import derived_seed
from raysys.report import analysis, plots
from raysys.report.controls import (
    error_analysis,
    primary_endpoint,
    stratum_floor,
    within_chance,
    within_stratum,
)
from raysys.report.demographics import (
    STRATA,
    UNKNOWN,
    codes,
    name_demographics,
    source_line,
    strata,
    unisex,
)
from raysys.report.floors import compute_floors
from raysys.report.history import (
    BY_EPOCH,
    align_rows,
    best_entry,
    read_by_epoch,
    read_history,
    run_status,
    strata_key,
    within_key,
)
from raysys.report.intervals import (
    ClusterBootstrap,
    Interval,
    accuracy,
    clusters_of,
    cross_fitted,
    halves,
)
from raysys.report.permutation import PersonPermutation
from raysys.report.summary import REL_CV_TARGET, render_summary

ATTENTION_PER_SIDE = 3  # images from the top and from the bottom names by F1
ERRORS_STREAM = 3  # derived_seed stream of the error analysis' permutations


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


def build_report(run_dir: str, figures: bool | None = None, demographics: str | None = None
                 ) -> str:
    """Recompute every section (and, unless told not to, every figure) from the run folder;
    returns summary.md's path. `figures` defaults to the run's run.figures; `demographics`
    (a CSV) to its data.demographics."""
    cfg = Config.from_dict(storage.read_json(storage.join(run_dir, "config.json")))
    if demographics is not None:
        cfg = apply_overrides(cfg, {"data": {"demographics": demographics}})
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
        if storage.exists(storage.join(run_dir, "logits.npy")):  # runs before it had none
            arrays["logits"] = load_npy(run_dir, "logits")
        labels, preds = arrays["true_labels"], arrays["predictions"]
        extras["ece"], extras["ece_bins"] = analysis.ece(arrays["confidences"], preds == labels)
        extras["bands"] = analysis.band_accuracy(labels, preds, table["train_count"].to_numpy())
        extras["balanced_subset"] = analysis.balanced_subset(labels, preds, cfg.run.seed)
        manifest = read_manifest(path_manifest(cfg.data.manifest))
        group_of = dict(zip(manifest["row"], manifest["group"], strict=True))
        person = clusters_of(manifest["row"].to_numpy(), group_of)
        extras["design"] = analysis.people_per_name(
            manifest["label"].to_numpy(), manifest["split"].to_numpy(), person,
            table["name"].tolist())
        try:  # a finished run's report must not die on one analysis
            extras |= inference(cfg, run_dir, history, table, arrays, extras["floors"],
                                group_of)
            extras["inference"]["design"] = extras["design"]
            extras["inference"]["test"] = on_test(cfg, run_dir, table, group_of)
            storage.write_json(storage.join(run_dir, "inference.json"), inference_json(extras))
            storage.write_text(storage.join(run_dir, "demographics.csv"),
                               extras["inference"]["demographics"]["table"].to_csv(index=False))
        except Exception as e:  # said in summary.md, not swallowed
            extras["inference"] = {"error": f"{type(e).__name__}: {e}"}
        if manifest["group"].notna().any():
            train_groups = set(manifest.loc[manifest["split"] == "train", "group"])
            extras["leakage"] = analysis.identity_leakage(
                np.array([group_of[int(r)] for r in arrays["val_rows"]], dtype=object),
                train_groups, labels, preds,
                majority=int(np.argmax(table["train_count"].to_numpy())))
            extras["leakage"]["split_by"] = cfg.data.split_by
            seen = np.array([group_of[int(r)] in train_groups for r in arrays["val_rows"]])
            extras["leakage"]["within_name"] = analysis.within_name_gap(
                ClusterBootstrap(clusters_of(arrays["val_rows"], group_of), labels,
                                 seed=cfg.run.seed), seen, preds)
    extras["figures"] = {}
    if cfg.run.figures if figures is None else figures:
        extras["figures"] = draw_figures(cfg, run_dir, history, best, table, arrays, extras)
    for name, data in extras["figures"].items():
        storage.write_bytes(storage.join(run_dir, name), data)
    path = storage.join(run_dir, "summary.md")
    storage.write_text(path, render_summary(history, table, info, extras))
    return path


METRICS = (("top1", False), ("balanced_acc", True))
INTERVAL_WORK = 2e10


def inference(cfg: Config, run_dir: str, history: list[dict], table: pd.DataFrame,
              arrays: dict, floors: dict, group_of: dict) -> dict:
    """Person-level intervals of the model, the selection-free estimate with its paired
    differences from each floor, the permutation tests, the power, and the demographic
    controls (intervals.py, permutation.py, controls.py). Every verdict reads selection-free
    predictions or a test with the selection inside it; the selected epoch's numbers are
    descriptive. `group_of`: manifest row -> person id."""
    labels, preds, rows = arrays["true_labels"], arrays["predictions"], arrays["val_rows"]
    clusters = clusters_of(rows, group_of)
    boot = ClusterBootstrap(clusters, labels, seed=cfg.run.seed)
    people = int(sum(str(c).startswith("person:") for c in np.unique(clusters)))
    # Names with few val people: their recall moves with the people a resample draws.
    per_name = pd.Series(clusters).groupby(labels).nunique()
    out: dict = {"clusters": {"clusters": boot.c, "people": people, "images": len(labels),
                              "names_under_5": int((per_name < 5).sum()),
                              "names": int(len(per_name)), "draws": boot.n_boot},
                 "model": {m: boot.interval(preds, b) for m, b in METRICS},
                 "person_disjoint": cfg.data.split_by == "group"}
    # The pixel floor's predictions on the same images; one it could not score is its miss.
    pixel = align_rows(floors["val_rows"], floors["pixel_linear"]["preds"], rows)
    out["pixel_unscored"] = int((pixel < 0).sum())
    epochs = by_epoch_matrix(run_dir, history, rows)
    if epochs is None:
        out["selection_free_missing"] = ("the run has no val predictions by epoch (it predates "
                                         "them): no verdict can be read")
        out["vs"] = {}
    else:
        matrix, usable, covers, _ = epochs
        sides = halves(clusters, labels, cfg.run.seed)
        sf = selection_free(cfg, matrix, usable, labels, sides, boot,
                            {"pixel-linear floor": pixel})
        if sf is None:
            out["selection_free_missing"] = "no selectable epoch, or val has a single person"
            out["vs"] = {}
        else:
            out["vs"] = sf.pop("vs")
            out["selection_free"] = sf | {"covers": covers}
            out["power"] = power(sf["draws_sd"], per_name)
        out["signal"] = PersonPermutation(matrix[usable], labels, clusters,
                                          cfg.run.metric == "val/balanced_acc").test(
            seed=cfg.run.seed) if usable.any() else None
    out |= demographic_controls(cfg, table, arrays, clusters, epochs)
    return {"inference": out}


PRIMARY = "within-gender balanced accuracy - gender floor, on test"


def on_test(cfg: Config, run_dir: str, table: pd.DataFrame, group_of: dict) -> dict | None:
    """The held-out test split, scored once by the model val chose (train/loop.py score_test):
    nothing here was selected on it, so its intervals and tests read it directly. The model's
    accuracy, a person-level permutation test of any name signal, and the primary endpoint
    (PRIMARY): on the names with demographics, balanced accuracy with the model's argmax
    restricted to the true name's gender, minus the gender floor (every predictor that reads
    gender alone scores the floor in balanced accuracy), with its paired interval, its
    permutation test (names dealt among each gender's people) and its power. None without a
    test split."""
    if not storage.exists(storage.join(run_dir, "test_predictions.npy")):
        return None
    labels, preds, rows, logits = (load_npy(run_dir, f"test_{n}") for n in
                                   ("true_labels", "predictions", "rows", "logits"))
    if not len(labels):
        return None
    seed, clusters = cfg.run.seed, clusters_of(rows, group_of)
    boot = ClusterBootstrap(clusters, labels, seed=seed)
    out: dict = {"images": len(labels), "people": int(len(np.unique(clusters))),
                 "names": int(len(np.unique(labels))),
                 # A per-image split puts train's people in test: recognising them would pass
                 # for name signal, so the summary qualifies every verdict read there.
                 "person_disjoint": cfg.data.split_by == "group",
                 "model": {m: boot.interval(preds, b) for m, b in METRICS},
                 "signal": PersonPermutation(preds[None], labels, clusters, True).test(seed=seed),
                 "primary": {"endpoint": PRIMARY}}
    demo = name_demographics(table["name"].tolist(), cfg.data.demographics)
    on = (demo["source"] != UNKNOWN).to_numpy()[labels]
    if not on.any():
        out["primary"]["missing"] = "no test image's name has demographics"
        return out
    y = labels[on]
    got = primary_endpoint(logits[on], y, preds[on], clusters[on], strata(demo, "gender"),
                           table["train_count"].to_numpy(), seed)
    per_name = pd.Series(clusters[on]).groupby(y).nunique()
    out["primary"] |= {"images": int(on.sum()), **got, "power": power(got["sd"], per_name)}
    return out


def by_epoch_matrix(run_dir: str, history: list[dict], rows: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, str, dict] | None:
    """(every epoch's val predictions aligned to `rows`, -1 where an epoch did not score a
    row; which epochs a run may select; a line saying which; per stratum kind the loop saved,
    (its strata codes, every epoch's argmax within the true name's stratum, aligned the same)),
    or None for a run without them."""
    if not storage.exists(storage.join(run_dir, BY_EPOCH)):
        return None
    by_epoch = read_by_epoch(run_dir)
    matrix = align_rows(by_epoch["rows"], by_epoch["preds"], rows)
    within = {by: (by_epoch[strata_key(by)], align_rows(by_epoch["rows"],
                                                        by_epoch[within_key(by)], rows))
              for by in STRATA if within_key(by) in by_epoch}
    # Selectable: logged in the history (a kill can leave one file a step ahead) and finite.
    logged = {h["epoch"] for h in history if not h["diverged"]}
    usable = np.array([int(e) in logged for e in by_epoch["epochs"]])
    covered = by_epoch["epochs"][usable]
    covers = (f"epochs {covered.min()}-{covered.max()} ({len(covered)} of {len(history)} "
              "logged)") if len(covered) else "no epoch"
    return matrix, usable, covers, within


def selection_free(cfg: Config, matrix: np.ndarray, usable: np.ndarray, labels: np.ndarray,
                   sides: np.ndarray, boot: ClusterBootstrap, references: dict) -> dict | None:
    """The cross-fitted estimate (mean over the halvings) with intervals that redo every
    epoch choice in each resample, and its paired differences from each reference; None where
    it cannot be made."""
    balanced = cfg.run.metric == "val/balanced_acc"
    cf = cross_fitted(matrix, labels, usable, sides, balanced)
    if cf is None:
        return None
    # The interval redoes every halving's choices in every resample: resamples x people x
    # epochs x halvings. Past INTERVAL_WORK (about a minute on two cores; production's 9.5k
    # val people x 30 epochs x 20 halvings would take 4) it redoes fewer halvings, which only
    # widens it: one halving's own noise is in every draw.
    inside = int(np.clip(INTERVAL_WORK // max(boot.n_boot * boot.c * int(usable.sum()), 1),
                         2, len(sides)))
    got = boot.cross_fitted(matrix, usable, sides[:inside], balanced, cf, references)
    chosen = np.array(cf["epochs"])
    return {"metric": cfg.run.metric, "halvings": len(sides), "halvings_in_interval": inside,
            "epochs_chosen": [int(chosen.min()), int(np.median(chosen)), int(chosen.max())],
            "top1": got["top1"], "balanced_acc": got["balanced_acc"],
            "draws_sd": got["sd"], "vs": got.get("vs", {})}


def demographic_controls(cfg: Config, table: pd.DataFrame, arrays: dict,
                         clusters: np.ndarray, epochs: tuple | None) -> dict:
    """The gender and gender x generation floors, the model against them selection-free, the
    permutation test of name signal beyond each stratum, within-stratum accuracy (descriptive)
    and the error analysis, on the val images whose name has demographics: a stratum of
    unknown names would mix genders, and reading gender there would pass for name signal."""
    demo = name_demographics(table["name"].tolist(), cfg.data.demographics)
    known_names = (demo["source"] != UNKNOWN).to_numpy()
    labels, preds = arrays["true_labels"], arrays["predictions"]
    on = known_names[labels]
    out: dict = {"demographics": {"source": source_line(demo, cfg.data.demographics),
                                  "known": int(known_names.sum()), "names": len(demo),
                                  "images": int(on.sum()), "val_images": len(labels),
                                  "table": demo}}
    if not on.any():
        return out
    y, p, seed = labels[on], preds[on], cfg.run.seed
    boot = ClusterBootstrap(clusters[on], y, seed=seed)
    train_counts = table["train_count"].to_numpy()
    balanced = cfg.run.metric == "val/balanced_acc"
    out["vs_known"] = {"this model": {m: boot.interval(p, b) for m, b in METRICS}}
    floors = {}
    sides = halves(clusters, labels, seed)[:, on] if epochs is not None else None
    for by in STRATA:
        st = strata(demo, by)
        floors[f"{by} floor"] = floor = stratum_floor(y, st, train_counts)
        control = {"strata": len(np.unique(st[known_names])),
                   "floor": {m: accuracy(y, floor, b) for m, b in METRICS},
                   "chance": within_chance(y, st)}
        if "logits" in arrays:  # unknown names are in no known stratum: never candidates
            within = within_stratum(arrays["logits"][on], y, st, preds=p)
            control["within"] = {m: accuracy(y, within, b) for m, b in METRICS}
        if epochs is not None and epochs[1].any():
            control["beyond"] = PersonPermutation(
                epochs[0][epochs[1]][:, on], y, clusters[on], balanced).test(strata=st,
                                                                             seed=seed)
            control["within_free"] = within_free(cfg, epochs, by, st, on, y, sides, boot,
                                                 floor)
        out[by] = control
    out["soft_gender"] = soft_gender(demo, labels, clusters, epochs, balanced, seed,
                                     out["gender"].get("beyond"))
    if epochs is not None:
        sf = selection_free(cfg, epochs[0][:, on], epochs[1], y, sides, boot, floors)
        if sf is not None:
            out["vs_known_free"] = {"this model": {m: sf[m] for m, _ in METRICS}, **sf["vs"]}
    out["errors"] = error_analysis(labels, preds, clusters,
                                   demo["gender"].to_numpy(dtype=object),
                                   demo["birth_year"].to_numpy(float),
                                   derived_seed(seed, ERRORS_STREAM))
    return out


def within_free(cfg: Config, epochs: tuple, by: str, name_strata: np.ndarray, on: np.ndarray,
                labels: np.ndarray, sides: np.ndarray, boot: ClusterBootstrap,
                floor: np.ndarray) -> dict:
    """Within-stratum accuracy selection-free: the argmax within the true name's stratum that
    the loop saved every epoch, cross-fitted as the model's own (each half of val's people
    scored by the epoch best on the other half by this same accuracy), with its paired
    difference from the stratum floor, every choice redone in each resample. By gender it is
    the primary endpoint read on val. {"missing": why} where the run did not save it, or saved
    it for other strata than the report's (changed demographics)."""
    saved = epochs[3].get(by)
    if saved is None:
        return {"missing": "the run saved no within-stratum predictions by epoch (it predates "
                           "them)"}
    if not np.array_equal(saved[0], codes(name_strata)):
        return {"missing": "the run's strata differ from the report's (its demographics "
                           "changed since training)"}
    sf = selection_free(cfg, saved[1][:, on], epochs[1], labels, sides, boot,
                        {"floor": floor})
    if sf is None:
        return {"missing": "no selectable epoch, or val has a single person"}
    return {m: sf[m] for m, _ in METRICS} | {"vs_floor": sf["vs"]["floor"]}


SOFT_CUT = 0.8


def soft_gender(demo: pd.DataFrame, labels: np.ndarray, clusters: np.ndarray,
                epochs: tuple | None, balanced: bool, seed: int, at_half: dict | None) -> dict:
    """Gender is a name's majority (P(female) cut at 0.5); a unisex name's majority says little
    about a face. The permutation test beyond gender again on the names whose P(female) is at
    least SOFT_CUT from either side, and the names it leaves out."""
    p = demo["p_female"].to_numpy(float)
    sure = (np.maximum(p, 1 - p) >= SOFT_CUT) & (demo["source"] != UNKNOWN).to_numpy()
    on = sure[labels]
    out = {"cut": SOFT_CUT, "names": int(sure.sum()), "images": int(on.sum()),
           "unisex": unisex(demo, SOFT_CUT),
           "unknown": demo.loc[demo["source"] == UNKNOWN, "name"].tolist(),
           "beyond_at_half": at_half}
    if epochs is not None and epochs[1].any() and on.any():
        out["beyond"] = PersonPermutation(epochs[0][epochs[1]][:, on], labels[on], clusters[on],
                                          balanced).test(strata=strata(demo, "gender"),
                                                         seed=seed)
    return out


def power(sd: float, people_per_name: pd.Series) -> dict:
    """The smallest difference from a floor the selection-free balanced accuracy detects with
    80% power at alpha 0.05 (two-sided), from its resampling SD, and how many val people per
    name +0.01 and +0.02 would need: the SD shrinks as 1/sqrt(people per name), a rule of
    thumb that ignores the floor's own share of the paired SD."""
    z = float(norm.ppf(0.975) + norm.ppf(0.8))
    mde = z * sd
    median = float(people_per_name.median())
    return {"mde": mde, "sd": sd, "median_people_per_name": median,
            "people_for": {str(d): int(np.ceil(median * (mde / d) ** 2)) for d in (0.01, 0.02)}}


def inference_json(extras: dict) -> dict:
    """inference.json: the intervals as {estimate, lo, hi}, for the sweep report."""
    def plain(v: object) -> object:
        if isinstance(v, Interval):
            return dataclasses.asdict(v)
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items() if not isinstance(x, pd.DataFrame)}
        return v
    return plain(extras["inference"])


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
