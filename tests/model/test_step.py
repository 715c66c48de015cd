"""The per-worker code without Ray: train_one_epoch and evaluate on in-memory batches, the
divergence guards, and a checkpoint that resumes exactly and loads with weights_only=True."""

import copy
import pickle

import numpy as np
import pytest
import torch
from timm.utils import random_seed

from raysys.config import load_config
from raysys.model.augment import augment_uniforms
from raysys.model.checkpoint import load_state
from raysys.model.metrics import POST_HOC_TAUS
from raysys.model.step import (
    SYNC_EVERY,
    evaluate,
    make_trainee,
    restore_trainee,
    save_trainee,
    seed_epoch,
    train_one_epoch,
)

K = 4
CPU = torch.device("cpu")


def batches(epoch: int, steps: int = 3, batch: int = 8, seed: int = 0, train: bool = True):
    """Learnable in-memory batches: the class sets the image's brightness."""
    rng = np.random.default_rng(epoch)
    out = []
    for s in range(steps):
        labels = rng.integers(0, K, batch)
        images = (labels[:, None, None, None] * 60 + rng.integers(0, 20, (batch, 3, 32, 32)))
        rows = np.arange(s * batch, (s + 1) * batch)
        b = {"image": torch.from_numpy(images.astype(np.uint8)),
             "label": torch.from_numpy(labels), "row": torch.from_numpy(rows)}
        if train:
            b["aug"] = torch.from_numpy(augment_uniforms(seed, np.full(batch, epoch), rows))
        out.append(b)
    return out


def trainee(*sets, steps_per_epoch=3):
    cfg = load_config("micro", sets=["optim.epochs=4", "optim.warmup_epochs=0", *sets])
    random_seed(0, 0)
    return make_trainee(cfg, np.array([40.0, 30, 20, 10]), CPU, wrap=lambda m: m,
                        steps_per_epoch=steps_per_epoch)


def test_train_and_evaluate_on_in_memory_batches():
    t = trainee("optim.lr=3e-3")
    first = train_one_epoch(t, batches(1), CPU)
    for epoch in range(2, 6):
        last = train_one_epoch(t, batches(epoch), CPU)
    assert not last["diverged"] and last["images"] == 24 and t.step == 15
    assert last["train/loss"] < first["train/loss"]
    out = evaluate(t.raw, batches(0, train=False), t.augment, torch.zeros(K), None, CPU)
    assert set(out) >= {"row", "label", "feat", "top5", *(f"pred_tau{x}" for x in POST_HOC_TAUS)}
    assert out["feat"].shape == (24, 64) and (out["pred_tau0.0"] == out["label"]).mean() > 0.5


def test_huge_lr_diverges_and_stops():
    t = trainee("optim.lr=1e6")
    out = train_one_epoch(t, batches(1, steps=3 * SYNC_EVERY), CPU)
    assert out["diverged"] and t.step == SYNC_EVERY  # stopped at the first check
    short = trainee("optim.lr=1e6")  # fewer steps than a check: the end-of-epoch check
    assert train_one_epoch(short, batches(1, steps=5), CPU)["diverged"]


def test_fp16_overflow_steps_are_skipped_not_divergence():
    t = trainee("optim.precision=fp16")
    t.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**24)  # overflows for a few steps
    out = train_one_epoch(t, batches(1, steps=12), CPU)
    assert not out["diverged"] and t.scaler.get_scale() < 2.0**24  # it skipped, then trained
    stuck = trainee("optim.precision=fp16", "optim.max_skipped_steps=3")
    stuck.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**100, growth_interval=10**6)
    assert train_one_epoch(stuck, batches(1, steps=12), CPU)["diverged"]


def _epoch(t, epoch, rank=0):
    seed_epoch(0, epoch, rank)  # what the worker loop does per epoch
    train_one_epoch(t, batches(epoch), CPU)


def test_resume_is_exact_and_loads_weights_only(tmp_path):
    sets = ["model.drop_path_rate=0.2", "augment.mixup=0.8", "augment.cutmix=1.0"]
    t = trainee(*sets)
    _epoch(t, 1)
    save_trainee(t, tmp_path / "s.pt", epoch=1, best=0.5, history=[{"epoch": 1, "val/top1": 0.5}])
    for epoch in (2, 3):
        _epoch(t, epoch)
    expected = copy.deepcopy(t.raw.state_dict())

    torch.manual_seed(123)  # a fresh process: other RNG state, other init
    np.random.seed(7)
    t2 = trainee(*sets)
    meta = restore_trainee(t2, tmp_path / "s.pt")  # what the worker loop does on resume
    assert meta == {"step": 3, "epoch": 1, "best": 0.5,
                    "history": [{"epoch": 1, "val/top1": 0.5}]} and t2.step == 3
    for epoch in (2, 3):
        _epoch(t2, epoch)
    assert t2.optimizer.param_groups[0]["lr"] == t.optimizer.param_groups[0]["lr"]
    for k, v in t2.raw.state_dict().items():
        torch.testing.assert_close(v, expected[k], rtol=0, atol=0)


@pytest.mark.slow
def test_compiled_model_trains_and_resumes(tmp_path):
    """optim.compile=true on CPU (inductor): it trains, its checkpoint holds the plain module's
    keys (the report loads them into an uncompiled model), and a compiled run restored from it
    continues as the uninterrupted compiled run does."""
    t = trainee("optim.compile=true", "optim.lr=3e-3")
    assert t.model is not t.raw  # the step runs on the compiled module
    first = train_one_epoch(t, batches(1), CPU)
    save_trainee(t, tmp_path / "s.pt", epoch=1, best=0.0, history=[])
    second = train_one_epoch(t, batches(2), CPU)
    assert np.isfinite(first["train/loss"]) and not second["diverged"]
    state = torch.load(tmp_path / "s.pt", map_location="cpu", weights_only=True)["model"]
    assert not any("_orig_mod" in k for k in state)
    plain = trainee()
    plain.raw.load_state_dict(state)

    t2 = trainee("optim.compile=true", "optim.lr=3e-3")
    assert restore_trainee(t2, tmp_path / "s.pt")["epoch"] == 1 and t2.step == 3
    again = train_one_epoch(t2, batches(2), CPU)
    assert again["train/loss"] == pytest.approx(second["train/loss"], rel=1e-5)
    for k, v in t2.raw.state_dict().items():
        torch.testing.assert_close(v, t.raw.state_dict()[k], rtol=1e-5, atol=1e-6)


def test_epoch_seeding_separates_ranks_and_epochs_and_repeats():
    def draw(epoch, rank):
        seed_epoch(0, epoch, rank)
        return torch.cat([torch.rand(2), torch.from_numpy(np.random.rand(2)).float()])

    assert torch.equal(draw(3, 0), draw(3, 0))  # a resumed rank draws what it would have
    assert not torch.equal(draw(3, 0), draw(3, 1))  # ranks never share a stream
    assert not torch.equal(draw(3, 0), draw(4, 0))


class Exploit:
    def __reduce__(self):
        return (print, ("pwned",))


def test_crafted_pickle_is_refused(tmp_path):
    path = tmp_path / "best_model.pth"
    path.write_bytes(pickle.dumps({"state_dict": Exploit()}))
    t = trainee()
    with pytest.raises(pickle.UnpicklingError):
        load_state(path, model=t.raw, optimizer=t.optimizer, scaler=t.scaler, ema=None)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_resume(tmp_path):
    cfg = load_config("micro")
    gpu = torch.device("cuda")
    counts = np.array([40.0, 30, 20, 10])
    t = make_trainee(cfg, counts, gpu, wrap=lambda m: m, steps_per_epoch=3)
    seed_epoch(0, 1, 0)
    train_one_epoch(t, [{k: v.to(gpu) for k, v in b.items()} for b in batches(1)], gpu)
    save_trainee(t, tmp_path / "s.pt", epoch=1, best=0.0, history=[])
    seed_epoch(0, 2, 0)
    want = train_one_epoch(t, [{k: v.to(gpu) for k, v in b.items()} for b in batches(2)], gpu)
    t2 = make_trainee(cfg, counts, gpu, wrap=lambda m: m, steps_per_epoch=3)
    restore_trainee(t2, tmp_path / "s.pt")  # RNG tensors saved on CPU load back fine
    seed_epoch(0, 2, 0)
    got = train_one_epoch(t2, [{k: v.to(gpu) for k, v in b.items()} for b in batches(2)], gpu)
    assert next(t2.raw.parameters()).device.type == "cuda"
    assert got["train/loss"] == pytest.approx(want["train/loss"], rel=1e-5)
