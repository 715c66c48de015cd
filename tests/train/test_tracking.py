"""W&B's one mode rule, for runs and sweeps: offline without a key, online with one, off when
asked, and never fatal."""

import time

from raysys.config import load_config
from raysys.train.tracking import NoWandb, start_wandb, wandb_mode


def test_wandb_offline_without_a_key(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc key
    cfg = load_config("micro", sets=["run.wandb=true"])
    assert wandb_mode(cfg) == "offline"
    run = start_wandb(cfg, "t", str(tmp_path), rank=0)
    assert not isinstance(run, NoWandb)
    run.log({"val/top1": 0.5}, step=1)
    run.finish()
    (log,) = (tmp_path / "wandb").glob("offline-run-*/*.wandb")
    deadline = time.time() + 20  # W&B's service process may still be writing the log
    while b"val/top1" not in log.read_bytes() and time.time() < deadline:
        time.sleep(0.5)
    assert b"val/top1" in log.read_bytes()  # the metric itself, in W&B's offline log
    assert isinstance(start_wandb(cfg, "t", str(tmp_path), rank=1), NoWandb)


def test_the_mode_rule(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("WANDB_MODE", raising=False)
    on, off = (load_config("micro", sets=[f"run.wandb={v}"]) for v in ("true", "false"))
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert wandb_mode(on) == "online" and wandb_mode(off) == "disabled"
    monkeypatch.delenv("WANDB_API_KEY")
    (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password k\n")
    assert wandb_mode(on) == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode(on) == "disabled"


def test_wandb_off_or_failing_is_never_fatal(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    cfg = load_config("micro", sets=["run.wandb=true"])
    assert isinstance(start_wandb(cfg, "t", None, rank=0), NoWandb)
    monkeypatch.setenv("WANDB_MODE", "bogus-mode")  # wandb.init raises: the run goes on
    assert isinstance(start_wandb(cfg, "t", str(tmp_path), rank=0), NoWandb)
