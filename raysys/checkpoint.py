"""Everything a run needs to resume exactly: weights, optimiser, schedule position, grad scaler,
EMA, epoch, best score, history and every RNG (python, numpy, torch CPU/CUDA, augmentation)."""

from __future__ import annotations

import random
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

STATE_FILE = "state.pt"


def capture_rng(augment_gen: torch.Generator) -> dict:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "augment": augment_gen.get_state(),
    }


def restore_rng(state: dict, augment_gen: torch.Generator) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    augment_gen.set_state(state["augment"])


def save_state(path: Path, *, model, optimizer, scaler, ema, step: int, epoch: int,
               best: float, history: list[dict], augment_gen: torch.Generator) -> None:
    torch.save({
        "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(), "ema": ema.state_dict() if ema is not None else None,
        "step": step, "epoch": epoch, "best": best, "history": history,
        "rng": capture_rng(augment_gen),
    }, path)


def load_state(path: Path, *, model, optimizer, scaler, ema, augment_gen: torch.Generator,
               device: torch.device) -> dict:
    """Load into the given objects in place; returns {step, epoch, best, history}."""
    # Our own file, with numpy RNG state inside: weights_only=False is needed and safe here.
    s = torch.load(path, map_location=device, weights_only=False)
    model.load_state_dict(s["model"])
    optimizer.load_state_dict(s["optimizer"])
    scaler.load_state_dict(s["scaler"])
    if ema is not None and s["ema"] is not None:
        ema.load_state_dict(s["ema"])
    restore_rng(s["rng"], augment_gen)
    return {k: s[k] for k in ("step", "epoch", "best", "history")}


@contextmanager
def checkpoint_dir(enabled: bool):
    """A temp folder for ray.train.report to upload (rank 0); None where nothing is saved."""
    if not enabled:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="raysys-ckpt-") as d:
        yield Path(d)

