"""A run's history (training_log.json: one entry per epoch; val_predictions_by_epoch.npz: every
epoch's val argmax, and its argmax within each image's gender and gender x generation), and the
two things every reader takes from it: the best epoch and how the run ended. The loop,
`raysys report`, `fit()` and the sweep report all ask these functions, so they never disagree."""

from __future__ import annotations

import io
import json

import numpy as np

from raysys import storage

BY_EPOCH = "val_predictions_by_epoch.npz"

# How a run ended, as every report names it.
STATUSES = ("finished", "stopped early", "diverged", "error", "running")


def read_history(run_dir: str) -> list[dict]:
    return json.loads(storage.read_text(storage.join(run_dir, "training_log.json")))


def best_entry(history: list[dict], key: str) -> dict:
    """The epoch with the highest `key`; the later one on a tie, as Ray Train ranks ties."""
    finite = [h for h in history if not h["diverged"] and np.isfinite(h[key])]
    return max(reversed(finite), key=lambda h: h[key]) if finite else history[-1]


def run_status(history: list[dict], epochs: int, *, error: object = None,
               running: bool = False) -> str:
    """One of STATUSES. `running`: the run is still going (the loop asks mid-run), so an
    epoch before the last is not a stop."""
    if error is not None or not history:
        return "error"
    if history[-1]["diverged"]:
        return "diverged"
    if history[-1]["epoch"] >= epochs:
        return "finished"
    return "running" if running else "stopped early"


def within_key(by: str) -> str:
    """The by-epoch file's key of the within-stratum argmax: "gender x generation" ->
    "within_gender_x_generation"."""
    return "within_" + by.replace(" ", "_")


def strata_key(by: str) -> str:
    """The key of the strata codes that argmax used: "strata_gender", ..."""
    return "strata_" + by.replace(" ", "_")


def by_epoch_bytes(epochs: list[int], rows: np.ndarray, preds: np.ndarray,
                   within: dict[str, np.ndarray] | None = None,
                   strata: dict[str, np.ndarray] | None = None) -> bytes:
    """{epochs (E,), rows (N,), preds (E, N), -1 where an epoch did not score a row; per
    stratum kind, within_<kind> (E, N), the argmax among the true name's stratum, and
    strata_<kind> (K,), the codes it used}. Not compressed: rank 0 rewrites it every epoch
    (17 MB per array at 100 epochs x 87k val images, int16)."""
    buf = io.BytesIO()
    extra = {within_key(by): w for by, w in (within or {}).items()}
    extra |= {strata_key(by): c for by, c in (strata or {}).items()}
    np.savez(buf, epochs=np.asarray(epochs, np.int64), rows=rows, preds=preds, **extra)
    return buf.getvalue()


def read_by_epoch(run_dir: str) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(storage.read_bytes(storage.join(run_dir, BY_EPOCH)))) as z:
        return {k: z[k] for k in z.files}


def align_rows(src_rows: np.ndarray, values: np.ndarray, rows: np.ndarray, fill: int = -1
               ) -> np.ndarray:
    """`values` (..., len(src_rows)), one per manifest row of src_rows, re-indexed onto `rows`
    along the last axis; `fill` where a row is not in src_rows (an image not scored then)."""
    src_rows, values = np.asarray(src_rows), np.asarray(values)
    if not len(src_rows):
        return np.full(values.shape[:-1] + (len(rows),), fill, values.dtype)
    order = np.argsort(src_rows, kind="stable")
    idx = order[np.minimum(np.searchsorted(src_rows, rows, sorter=order), len(src_rows) - 1)]
    return np.where(src_rows[idx] == rows, values[..., idx], fill).astype(values.dtype)
