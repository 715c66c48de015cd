from raysys.config import load_config
from raysys.worker import NoWandb, start_wandb


def test_wandb_offline_without_a_key(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc key
    cfg = load_config("micro", sets=["run.wandb=true"])
    run = start_wandb(cfg, {"run_name": "t", "wandb_dir": str(tmp_path)}, rank=0)
    assert not isinstance(run, NoWandb)
    run.log({"val/top1": 0.5}, step=1)
    run.finish()
    assert list((tmp_path / "wandb").glob("offline-run-*"))
    assert isinstance(start_wandb(cfg, {}, rank=1), NoWandb)


def test_wandb_off_or_failing_is_never_fatal(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    cfg = load_config("micro", sets=["run.wandb=true"])
    assert isinstance(start_wandb(cfg, {"run_name": "t"}, rank=0), NoWandb)
    monkeypatch.setenv("WANDB_MODE", "bogus-mode")  # wandb.init raises: the run goes on
    assert isinstance(start_wandb(cfg, {"run_name": "t", "wandb_dir": str(tmp_path)}, rank=0),
                      NoWandb)
