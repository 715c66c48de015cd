"""The run folder: what rank 0 writes as training goes, so an early-stopped or killed run still
leaves its best model, predictions and summary behind (Tune kills a trial ASHA stops before
`fit()` returns). Every file is published whole (storage.write_with), on disk or S3.

    config.json  best_model.pth  predictions.npy  true_labels.npy  val_rows.npy
    confidences.npy  names.json  results.csv  training_log.json  embeddings.npy  summary.md
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import torch

from raysys import storage
from raysys.report.summary import render_summary

NUMPY_OUTPUTS = ("predictions", "true_labels", "val_rows", "confidences", "embeddings")


def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


class RunWriter:
    """Rank 0's writer of the run folder."""

    def __init__(self, run_dir: str, config: dict, names: list[str]):
        self.dir, self.config, self.names = run_dir, config, names
        storage.makedirs(run_dir)
        self.table: pd.DataFrame | None = None

    def path(self, name: str) -> str:
        return storage.join(self.dir, name)

    def save_best(self, state_dict: dict, epoch: int, arrays: dict[str, np.ndarray],
                  table: pd.DataFrame) -> None:
        """The best epoch's model, val predictions and per-name table (results.csv)."""
        # Plain tensors, strings and dicts only: loadable with torch.load(weights_only=True).
        blob = {"state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
                "names": self.names, "config": self.config, "epoch": epoch}
        storage.write_with(self.path("best_model.pth"), lambda t: torch.save(blob, t))
        for name in NUMPY_OUTPUTS:
            storage.write_bytes(self.path(f"{name}.npy"), npy_bytes(arrays[name]))
        storage.write_json(self.path("names.json"), self.names)
        storage.write_text(self.path("results.csv"), table.to_csv(index=False))
        self.table = table

    def save_epoch(self, history: list[dict], info: dict) -> None:
        """training_log.json and the live summary.md, after every epoch."""
        storage.write_json(self.path("training_log.json"), history)
        storage.write_text(self.path("summary.md"), render_summary(history, self.table, info))


class NullWriter:
    """Stand-in on ranks > 0, so the loop has no `if rank == 0` around every write."""

    def save_best(self, *args, **kwargs) -> None:
        pass

    def save_epoch(self, *args, **kwargs) -> None:
        pass
