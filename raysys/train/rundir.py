"""The run folder: what rank 0 writes as training goes, so an early-stopped or killed run still
leaves its best model, predictions and summary behind (Tune kills a trial ASHA stops before
`fit()` returns). Every file is published whole (storage.write_with), on disk or S3.

    config.json  best_model.pth  predictions.npy  true_labels.npy  val_rows.npy
    confidences.npy  logits.npy  names.json  results.csv  training_log.json  embeddings.npy
    summary.md  val_predictions_by_epoch.npz
    test_predictions.npy  test_true_labels.npy  test_rows.npy  test_logits.npy  (a test split)

val_predictions_by_epoch.npz holds every epoch's val argmax (not only the best's), and its argmax
within each image's gender and gender x generation: the report's selection-free estimates pick
the epoch on one half of val and score it on the other. The test
files hold the held-out split scored once by the model val chose (train/loop.py score_test).
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import torch

from raysys import storage
from raysys.report.history import (
    BY_EPOCH,
    align_rows,
    by_epoch_bytes,
    read_by_epoch,
    within_key,
)
from raysys.report.summary import render_summary

NUMPY_OUTPUTS = ("predictions", "true_labels", "val_rows", "confidences", "embeddings",
                 "logits")


def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


class RunWriter:
    """Rank 0's writer of the run folder."""

    def __init__(self, run_dir: str, config: dict, names: list[str], start_epoch: int = 1,
                 strata: dict[str, np.ndarray] | None = None):
        self.dir, self.config, self.names = run_dir, config, names
        self.strata = strata or {}  # stratum kind -> each name's code (within-stratum argmax)
        storage.makedirs(run_dir)
        self.table: pd.DataFrame | None = None
        # Every epoch's val predictions (the argmax, and within each stratum kind), aligned to
        # one rows vector (val is the same rows every epoch, unless an image failed to decode
        # in one). A resumed run keeps the epochs before its checkpoint's, and replays the rest.
        self.val_rows: np.ndarray | None = None
        self.by_epoch: dict[int, dict[str, np.ndarray]] = {}
        self.dtype = np.int16 if len(names) < 2**15 else np.int32
        if start_epoch > 1 and storage.exists(self.path(BY_EPOCH)):
            old = read_by_epoch(self.dir)
            self.val_rows = old["rows"]
            kinds = ["preds", *(k for k in old if k.startswith("within_"))]
            self.by_epoch = {int(e): {k: old[k][i] for k in kinds}
                             for i, e in enumerate(old["epochs"]) if e < start_epoch}

    def path(self, name: str) -> str:
        return storage.join(self.dir, name)

    def save_best(self, state_dict: dict, epoch: int, arrays: dict[str, np.ndarray],
                  table: pd.DataFrame) -> None:
        """The best epoch's model, val (and test) predictions and per-name table
        (results.csv)."""
        # Plain tensors, strings and dicts only: loadable with torch.load(weights_only=True).
        blob = {"state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
                "names": self.names, "config": self.config, "epoch": epoch}
        storage.write_with(self.path("best_model.pth"), lambda t: torch.save(blob, t))
        for name, array in arrays.items():
            storage.write_bytes(self.path(f"{name}.npy"), npy_bytes(array))
        storage.write_json(self.path("names.json"), self.names)
        storage.write_text(self.path("results.csv"), table.to_csv(index=False))
        self.table = table

    def save_epoch(self, history: list[dict], info: dict, epoch: int, rows: np.ndarray,
                   preds: np.ndarray, within: dict[str, np.ndarray] | None = None) -> None:
        """training_log.json, the val predictions by epoch (`within`: per stratum kind, the
        argmax among the true name's stratum) and the live summary.md."""
        self._add_epoch(epoch, rows, {"preds": preds} | {
            within_key(by): w for by, w in (within or {}).items()})
        epochs = sorted(self.by_epoch)
        kinds = sorted({k for d in self.by_epoch.values() for k in d} - {"preds"})

        def stacked(kind: str) -> np.ndarray:  # -1: an epoch (before a resume) without it
            return np.stack([self.by_epoch[e].get(kind, np.full(len(self.val_rows), -1,
                                                                 self.dtype)) for e in epochs])

        storage.write_bytes(self.path(BY_EPOCH), by_epoch_bytes(
            epochs, self.val_rows, stacked("preds"),
            {by: stacked(within_key(by)) for by in self.strata if within_key(by) in kinds},
            {by: np.asarray(c) for by, c in self.strata.items()}))
        storage.write_json(self.path("training_log.json"), history)
        storage.write_text(self.path("summary.md"), render_summary(history, self.table, info))

    def _add_epoch(self, epoch: int, rows: np.ndarray, preds: dict[str, np.ndarray]) -> None:
        if self.val_rows is None:
            self.val_rows = rows
        elif not np.array_equal(rows, self.val_rows):  # rare: realign every epoch kept
            union = np.union1d(self.val_rows, rows)
            self.by_epoch = {e: {k: align_rows(self.val_rows, p, union) for k, p in d.items()}
                             for e, d in self.by_epoch.items()}
            self.val_rows = union
        self.by_epoch[epoch] = {k: align_rows(rows, np.asarray(p, self.dtype), self.val_rows)
                                for k, p in preds.items()}


class NullWriter:
    """Stand-in on ranks > 0, so the loop has no `if rank == 0` around every write."""

    def save_best(self, *args, **kwargs) -> None:
        pass

    def save_epoch(self, *args, **kwargs) -> None:
        pass
