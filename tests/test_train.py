"""Training on a local Ray: learning above chance, outputs, resume, divergence, DDP sync."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from raysys.cli import main as cli
from raysys.config import load_config
from raysys.train import fit


def micro(manifest, out, *sets):
    return load_config("micro", sets=[f"data.manifest={manifest}", f"run.out={out}", *sets])


OUTPUTS = ("config.json", "best_model.pth", "predictions.npy", "true_labels.npy", "names.json",
           "results.csv", "training_log.json", "embeddings.npy", "summary.md")


def test_micro_vit_learns_names_and_writes_every_output(ray_local, demo_manifest, tmp_path):
    r = fit(micro(demo_manifest, tmp_path / "run", "optim.epochs=6"))
    run = tmp_path / "run"
    history = r["history"]
    k = len(json.loads((run / "names.json").read_text()))
    best_bal = max(h["val/balanced_acc"] for h in history)
    assert best_bal >= 2.0 / k, f"balanced accuracy {best_bal:.3f} < 2x chance {2 / k:.3f}"
    assert history[-1]["train/loss"] < history[0]["train/loss"]
    for name in OUTPUTS:
        assert (run / name).is_file(), name
    blob = torch.load(run / "best_model.pth", weights_only=True)
    assert blob["names"] == json.loads((run / "names.json").read_text())
    assert blob["epoch"] == r["best_epoch"]
    preds, labels = np.load(run / "predictions.npy"), np.load(run / "true_labels.npy")
    assert preds.shape == labels.shape and (preds == labels).mean() == pytest.approx(
        r["best_val_top1"])
    emb = np.load(run / "embeddings.npy")
    assert emb.shape == (len(labels), 64)
    table = pd.read_csv(run / "results.csv")
    assert list(table.columns[:6]) == ["name", "precision", "recall", "f1", "support",
                                       "train_count"] and len(table) == k
    assert json.loads((run / "config.json").read_text())["model"]["embed_dim"] == 64
    summary = (run / "summary.md").read_text()
    assert "best val top-1" in summary and "Bottom-5 names by F1" in summary
    assert [h["epoch"] for h in json.loads((run / "training_log.json").read_text())] == \
        list(range(1, 7))


def test_stopped_run_resumes_at_next_epoch(ray_local, demo_manifest, tmp_path):
    out = tmp_path / "run"
    first = fit(micro(demo_manifest, out, "optim.epochs=4", "run.stop_after=2"))
    assert [h["epoch"] for h in first["history"]] == [1, 2]
    # Started again through the CLI with the same --out.
    assert cli(["train", "--manifest", str(demo_manifest), "--preset", "micro", "--epochs", "4",
                "--out", str(out)]) == 0
    history = json.loads((out / "training_log.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    # Epochs 1-2 come from the checkpoint, not from training again.
    assert history[:2] == first["history"]
    assert history[3]["train/lr"] < history[2]["train/lr"]


def test_huge_lr_ends_as_diverged(ray_local, demo_manifest, tmp_path):
    r = fit(micro(demo_manifest, tmp_path / "run", "optim.epochs=3", "optim.lr=1e4",
                  "optim.warmup_epochs=0"))
    assert r["diverged"] is True
    assert r["history"][-1]["diverged"] is True and len(r["history"]) < 3
    assert "diverged" in (tmp_path / "run" / "summary.md").read_text()


def test_ddp_gradients_are_synchronised(ray_local, tmp_path):
    """Two CPU workers (gloo), different data per rank: after a step, parameters are identical."""
    import ray.train
    import ray.train.torch

    from raysys.checkpoint import checkpoint_dir
    from raysys.config import ModelConfig
    from raysys.model import build_model

    def loop(_):
        import torch.distributed as dist

        rank = ray.train.get_context().get_world_rank()
        torch.manual_seed(0)  # same init on both ranks, as DDP requires
        cfg = ModelConfig(arch="vit_tiny_patch16_224", patch_size=4, embed_dim=32, depth=1,
                          num_heads=2, drop_rate=0.0, drop_path_rate=0.0)
        model = ray.train.torch.prepare_model(build_model(cfg, 5, 16))
        before = torch.cat([p.detach().flatten() for p in model.parameters()]).clone()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        torch.manual_seed(100 + rank)  # different batches per rank
        x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 5, (8,))
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        after = torch.cat([p.detach().flatten() for p in model.parameters()])
        parts = [torch.zeros_like(after) for _ in range(2)]
        dist.all_gather(parts, after)
        metrics = {"max_diff": float((parts[0] - parts[1]).abs().max()),
                   "moved": float((after - before).abs().max()), "world": dist.get_world_size()}
        # V2 keeps metrics with checkpoints: report one so Result.metrics carries them.
        with checkpoint_dir(rank == 0) as d:
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d)
                             if d else None)

    result = ray.train.torch.TorchTrainer(
        loop, scaling_config=ray.train.ScalingConfig(num_workers=2,
                                                     resources_per_worker={"CPU": 1}),
        run_config=ray.train.RunConfig(storage_path=str(tmp_path), name="ddp")).fit()
    assert result.metrics["world"] == 2
    assert result.metrics["moved"] > 0
    assert result.metrics["max_diff"] == 0.0
