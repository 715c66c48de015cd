"""A checkpoint holds everything needed to resume exactly: continuing from it gives the very
same weights, learning rate and random draws as never having stopped."""

import copy

import numpy as np
import torch

from raysys.augment import BatchAugment
from raysys.checkpoint import load_state, save_state
from raysys.config import load_config
from raysys.losses import ClassWeightedCE
from raysys.model import build_model
from raysys.train import build_optimizer, build_scheduler


def _setup(cfg):
    model = build_model(cfg.model, 4, cfg.data.img_size)
    opt = build_optimizer(model, 1e-3, 0.05)
    return (model, opt, build_scheduler(opt, cfg, steps_per_epoch=5),
            torch.amp.GradScaler("cpu", enabled=False),
            BatchAugment(cfg.augment, cfg.data.mean, cfg.data.std, torch.device("cpu")))


def _step(model, opt, sched, aug, crit, step):
    images = torch.randint(0, 255, (8, 3, 32, 32), dtype=torch.uint8)
    x, y = aug(images), torch.randint(0, 4, (8,))
    x = x + 0.01 * torch.randn_like(x) + float(np.random.rand())  # every RNG matters
    opt.zero_grad()
    crit(model(x), y).backward()
    opt.step()
    sched.step_update(step)


def test_resume_is_exact(tmp_path):
    cfg = load_config("micro", sets=["model.drop_path_rate=0.1", "optim.epochs=2"])
    crit = ClassWeightedCE(cfg.loss, np.array([10.0, 5, 3, 1]))
    torch.manual_seed(0)
    model, opt, sched, scaler, aug = _setup(cfg)
    for s in (1, 2, 3):
        _step(model, opt, sched, aug, crit, s)
    save_state(tmp_path / "s.pt", model=model, optimizer=opt, scaler=scaler, ema=None, step=3,
               epoch=1, best=0.5, history=[{"epoch": 1}], augment_gen=aug.gen)
    for s in (4, 5):
        _step(model, opt, sched, aug, crit, s)
    expected = copy.deepcopy(model.state_dict())
    lr = opt.param_groups[0]["lr"]

    torch.manual_seed(123)  # a fresh process: other RNG state, other init
    np.random.seed(7)
    model2, opt2, sched2, scaler2, aug2 = _setup(cfg)
    meta = load_state(tmp_path / "s.pt", model=model2, optimizer=opt2, scaler=scaler2, ema=None,
                      augment_gen=aug2.gen, device=torch.device("cpu"))
    assert meta == {"step": 3, "epoch": 1, "best": 0.5, "history": [{"epoch": 1}]}
    sched2.step_update(meta["step"])
    for s in (4, 5):
        _step(model2, opt2, sched2, aug2, crit, s)
    assert opt2.param_groups[0]["lr"] == lr
    for k, v in model2.state_dict().items():
        torch.testing.assert_close(v, expected[k], rtol=0, atol=0)
