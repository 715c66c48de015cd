"""The run folder: what rank 0 writes as training goes, so an early-stopped or killed run still
leaves its best model, predictions and summary behind.

    config.json  best_model.pth  predictions.npy  true_labels.npy  names.json  results.csv
    training_log.json  embeddings.npy  summary.md
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from raysys.metrics import accuracy_spread


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Write to a temp file beside `path`, then rename: a crash never leaves a half file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda t: Path(t).write_text(text))


def _save_npy(path: str, arr: np.ndarray) -> None:
    with open(path, "wb") as fh:  # np.save(str) would append a second ".npy" to the temp name
        np.save(fh, arr)


class RunWriter:
    def __init__(self, run_dir: Path, config: dict, names: list[str]):
        self.dir, self.config, self.names = Path(run_dir), config, names
        self.dir.mkdir(parents=True, exist_ok=True)
        self.table: pd.DataFrame | None = None

    def save_best(self, state_dict: dict, epoch: int, labels: np.ndarray, preds: np.ndarray,
                  embeddings: np.ndarray, table: pd.DataFrame) -> None:
        # Plain tensors, strings and dicts only: loadable with torch.load(weights_only=True).
        blob = {"state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
                "names": self.names, "config": self.config, "epoch": epoch}
        atomic_write(self.dir / "best_model.pth", lambda t: torch.save(blob, t))
        for name, arr in (("predictions", preds), ("true_labels", labels),
                          ("embeddings", embeddings)):
            atomic_write(self.dir / f"{name}.npy", lambda t, a=arr: _save_npy(t, a))
        _write_text(self.dir / "names.json", json.dumps(self.names, indent=1))
        atomic_write(self.dir / "results.csv", lambda t: table.to_csv(t, index=False))
        self.table = table

    def save_epoch(self, history: list[dict], info: dict) -> None:
        _write_text(self.dir / "training_log.json", json.dumps(history, indent=1))
        _write_text(self.dir / "summary.md", render_summary(history, self.table, info))


class NullWriter:
    """Stand-in on ranks > 0, so the loop has no `if rank == 0` around every write."""

    def save_best(self, *args, **kwargs) -> None:
        pass

    def save_epoch(self, *args, **kwargs) -> None:
        pass


def best_entry(history: list[dict], key: str = "val/top1") -> dict:
    finite = [h for h in history if not h.get("diverged") and np.isfinite(h.get(key, np.nan))]
    return max(finite, key=lambda h: h[key]) if finite else history[-1]


def render_summary(history: list[dict], table: pd.DataFrame | None, info: dict) -> str:
    best, last = best_entry(history), history[-1]
    n_names = len(table) if table is not None else "?"
    posthoc = "; ".join(f"tau {t}: {best[f'posthoc_tau{t}/top1']:.4f} / "
                        f"{best[f'posthoc_tau{t}/balanced_acc']:.4f} / "
                        f"{best[f'posthoc_tau{t}/pred_cv']:.3f}" for t in (0.5, 1.0))
    lines = [
        f"# {info.get('run_name', 'run')}: {info.get('arch', '')}, {n_names} names",
        "",
        f"- status: **{'diverged' if last.get('diverged') else info.get('status', 'running')}**, "
        f"{last['epoch']} of {info.get('epochs', '?')} epochs",
        f"- best val top-1: **{best['val/top1']:.4f}** at epoch {best['epoch']} "
        f"(top-5 {best['val/top5']:.4f})",
        f"- balanced accuracy: {best['val/balanced_acc']:.4f}; macro-F1 {best['val/macro_f1']:.4f}",
        f"- chance: uniform {best['chance/uniform']:.4f}, majority {best['chance/majority']:.4f}, "
        f"prior-matching {best['chance/prior_match']:.4f}",
        f"- prediction CV: {best['val/pred_cv']:.3f} (true val counts: {best['val/true_cv']:.3f};"
        " target < 0.30)",
        f"- post-hoc logit adjustment (top-1 / balanced / pred CV): {posthoc}",
        f"- training time: {sum(h['time/epoch_s'] for h in history) / 60:.1f} min; "
        f"throughput {np.mean([h['train/img_per_s'] for h in history]):.0f} img/s (global); "
        f"peak GPU memory {max(h['gpu/peak_mem_gb'] for h in history):.2f} GB",
        f"- bad images dropped: {last['data/bad_images']}",
    ]
    if table is not None:
        spread = accuracy_spread(table)
        lines.append("- per-class accuracy spread (best epoch): " +
                     ", ".join(f"{k} {v:.3f}" for k, v in spread.items()))
        ranked = table.sort_values(["f1", "support"], ascending=[False, False])
        for title, part in (("Top-5 names by F1", ranked.head(5)),
                            ("Bottom-5 names by F1", ranked.tail(5).iloc[::-1])):
            lines += ["", f"## {title}", "", "| name | F1 | precision | recall | support |",
                      "|---|---|---|---|---|"]
            lines += [f"| {r.name} | {r.f1:.3f} | {r.precision:.3f} | {r.recall:.3f} | "
                      f"{r.support} |" for r in part.itertuples()]
    lines += ["", "## Curves", "",
              "| epoch | lr | train loss | train acc | val top-1 | balanced | pred CV | img/s |",
              "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {h['epoch']} | {h['train/lr']:.2e} | {h['train/loss']:.4f} | "
              f"{h['train/acc']:.4f} | {h['val/top1']:.4f} | {h['val/balanced_acc']:.4f} | "
              f"{h['val/pred_cv']:.3f} | {h['train/img_per_s']:.0f} |" for h in history]
    return "\n".join(lines) + "\n"
