"""What a run needs to resume: weights, optimiser, schedule position, grad scaler, EMA, epoch,
best score and history.

No RNG state is saved: every rank reseeds its global RNGs from (run seed, epoch, rank) at the
start of each epoch, and augmentation draws from (run seed, epoch, row), so a resumed rank draws
what it would have drawn uninterrupted, and ranks never share a stream. The file therefore holds
only tensors and plain Python values and loads with `weights_only=True`: a crafted pickle in its
place is refused, not executed.
"""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch

STATE_FILE = "state.pt"


def save_state(path: Path, *, model, optimizer, scaler, ema, step: int, epoch: int,
               best: float, history: list[dict]) -> None:
    torch.save({
        "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(), "ema": ema.state_dict() if ema is not None else None,
        "step": step, "epoch": epoch, "best": best, "history": history,
    }, path)


def load_state(path: Path, *, model, optimizer, scaler, ema) -> dict:
    """Load into the given objects in place; returns {step, epoch, best, history}.

    Loaded to the CPU: the modules' and optimiser's load methods copy tensors to wherever their
    parameters live (loading straight to CUDA breaks on a host with another device layout)."""
    s = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(s["model"])
    optimizer.load_state_dict(s["optimizer"])
    scaler.load_state_dict(s["scaler"])
    if ema is not None and s["ema"] is not None:
        ema.load_state_dict(s["ema"])
    return {k: s[k] for k in ("step", "epoch", "best", "history")}


@contextmanager
def checkpoint_dir(enabled: bool):
    """A temp folder for ray.train.report to upload (rank 0); None where nothing is saved."""
    if not enabled:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="raysys-ckpt-") as d:
        yield Path(d)
