"""The sweep's own verdicts, with the choice of the trial inside them (issue 27 item 3).

A sweep's winner is chosen among its trials on the same val that scores it, so each trial's
selection-free estimate (which redoes only its own epoch choice) is optimistic for the winner:
with 20 trials of pure noise the winner's scored 0.073 against a truth of 0.050. Here every
(trial, epoch) of the trials over the same names is one candidate: the cross-fitted estimate
picks trial and epoch together on one half of val's people and scores the other half (mean
over the halvings; every resample redoes every choice), and the permutation tests take the
max over all candidates. These are the verdicts the sweep summary prints for a number of names
with more than one trial.
"""

from __future__ import annotations

import numpy as np

from raysys import storage
from raysys.config import Config, apply_overrides
from raysys.data.manifest import read_manifest
from raysys.data.source import path_manifest
from raysys.report.build import by_epoch_matrix, load_npy, selection_free
from raysys.report.demographics import UNKNOWN, name_demographics, strata
from raysys.report.history import align_rows, read_history
from raysys.report.intervals import N_BOOT, ClusterBootstrap, clusters_of, halves
from raysys.report.permutation import PersonPermutation

# Resamples x people x candidates x halvings one sweep-level interval may cost (~1 min on two
# cores); past it the draws shrink below N_BOOT and the Monte Carlo SE, which every verdict
# needs its bound to clear twice, grows to say so.
WORK_BUDGET = 4e10


def sweep_inference(run_dirs: list[str], metric: str) -> dict | None:
    """Over the trials at one number of names (`run_dirs`, each with val predictions by epoch):
    the selection-free estimate with trial and epoch chosen together, its paired difference
    from the pixel floor, and the permutation tests (any name signal; beyond gender). None
    when fewer than two trials have predictions by epoch."""
    have = [d for d in run_dirs if storage.exists(storage.join(d, "val_predictions_by_epoch.npz"))
            and storage.exists(storage.join(d, "val_rows.npy"))]
    if len(have) < 2:
        return None
    cfg = Config.from_dict(storage.read_json(storage.join(have[0], "config.json")))
    rows, labels = load_npy(have[0], "val_rows"), load_npy(have[0], "true_labels")
    mats, usable = [], []
    for d in have:
        got = by_epoch_matrix(d, read_history(d), rows)
        mats.append(got[0])
        usable.append(got[1])
    matrix, usable = np.concatenate(mats), np.concatenate(usable)
    manifest = read_manifest(path_manifest(cfg.data.manifest))
    clusters = clusters_of(rows, dict(zip(manifest["row"], manifest["group"], strict=True)))
    sides = halves(clusters, labels, cfg.run.seed)
    work = len(np.unique(clusters)) * max(int(usable.sum()), 1) * len(sides)
    boot = ClusterBootstrap(clusters, labels, seed=cfg.run.seed,
                            n_boot=int(min(N_BOOT, max(1000, WORK_BUDGET // work))))
    floors = storage.read_json(storage.join(have[0], "floors.json"))
    pixel = align_rows(floors["val_rows"], floors["pixel_linear"]["preds"], rows)
    cfg = apply_overrides(cfg, {"run": {"metric": metric}})  # the sweep's, for the selection
    balanced = metric == "val/balanced_acc"
    out = {"trials": len(have), "candidates": int(usable.sum()), "draws": boot.n_boot}
    sf = selection_free(cfg, matrix, usable, labels, sides, boot, {"pixel-linear floor": pixel})
    if sf is not None:
        out |= {"top1": sf["top1"], "balanced_acc": sf["balanced_acc"],
                "pixel_diff": sf["vs"]["pixel-linear floor"]["balanced_acc"]}
    if usable.any():
        out["signal"] = PersonPermutation(matrix[usable], labels, clusters, balanced).test(
            seed=cfg.run.seed)
        demo = name_demographics(storage.read_json(storage.join(have[0], "names.json")),
                                 cfg.data.demographics)
        on = (demo["source"] != UNKNOWN).to_numpy()[labels]
        if on.any():
            out["beyond_gender"] = PersonPermutation(
                matrix[usable][:, on], labels[on], clusters[on], balanced).test(
                strata=strata(demo, "gender"), seed=cfg.run.seed)
    return out
