"""Training on a local Ray: learning above chance with every output, and an exact resume with
one worker (the same config twice gives the same numbers). Two workers, a worker killed
mid-epoch and bad input are in test_reliability.py; divergence in test_sweep.py."""

import json
import time

import numpy as np
import pandas as pd
import pytest
import torch

from raysys.cli import main as cli
from raysys.data.manifest import read_manifest
from raysys.train.run import fit
from tests.conftest import RAY_DATA_ACTORS, micro, ray_leftovers

OUTPUTS = ("config.json", "best_model.pth", "predictions.npy", "true_labels.npy", "val_rows.npy",
           "names.json", "results.csv", "training_log.json", "embeddings.npy", "summary.md",
           "logits.npy", "val_predictions_by_epoch.npz", "inference.json", "demographics.csv",
           "test_predictions.npy", "test_true_labels.npy", "test_rows.npy", "test_logits.npy")
EXACT = ("train/loss", "val/top1", "val/balanced_acc", "val/rel_pred_cv", "train/lr")

pytestmark = pytest.mark.slow


def _log(run):
    return json.loads((run / "training_log.json").read_text())


def _runs_leftovers() -> tuple[dict, list]:
    actors, groups = ray_leftovers()
    return {k: v for k, v in actors.items() if k not in RAY_DATA_ACTORS}, groups


def _leak_a_group(cpus: float) -> str:
    """A placement group whose creator actor is dead: Ray keeps it as long as the job lives."""
    import ray
    from ray.util.placement_group import placement_group

    @ray.remote(num_cpus=0)
    class Squatter:
        def hold(self) -> str:
            self.group = placement_group([{"CPU": cpus}], strategy="STRICT_PACK")
            ray.get(self.group.ready())
            return self.group.id.hex()

    squatter = Squatter.remote()
    group = ray.get(squatter.hold.remote())
    ray.kill(squatter)
    return group


def test_learns_with_every_output_and_resumes_exactly(straight_run, ray_local, demo_manifest,
                                                     tmp_path, capfd, reliability_log):
    """One worker, 4 epochs straight, against 2 epochs + a resume through the CLI with the same
    --out: the same numbers every epoch (seeded data path, per-epoch reseeding). Three fits in
    one driver leave nothing behind in Ray: after each, it holds what it held after the first
    (or, where other tests restarted Ray since, before the second), Ray Data's per-cluster
    actors aside. The second starts beside a placement group whose owner died holding 3.5 of
    the 4 CPUs (Ray keeps such a group while the job lives): the run removes it, says so, and
    trains."""
    run, r = straight_run
    after_first = _runs_leftovers()
    leaked = _leak_a_group(3.5)
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
    assert (preds == labels).mean() == pytest.approx(r["best_val_top1"])  # same argmax
    rows = np.load(run / "val_rows.npy")
    df = read_manifest(str(demo_manifest))
    assert rows.tolist() == sorted(df.loc[df.split == "val", "row"])  # each val row, once
    # the held-out test split, scored by the best epoch's model, each row once, never logged
    test_rows = np.load(run / "test_rows.npy")
    assert test_rows.tolist() == sorted(df.loc[df.split == "test", "row"])
    assert np.load(run / "test_true_labels.npy").tolist() == \
        df.set_index("row").loc[test_rows, "label"].tolist()
    assert np.array_equal(np.load(run / "test_predictions.npy"),
                          np.load(run / "test_logits.npy").astype(np.float32).argmax(axis=1))
    assert not any(key.startswith("test") for h in history for key in h)
    assert json.loads((run / "inference.json").read_text())["test"]["images"] == len(test_rows)
    assert np.load(run / "embeddings.npy").shape == (len(labels), 64)
    table = pd.read_csv(run / "results.csv")
    assert list(table.columns[:6]) == ["name", "precision", "recall", "f1", "support",
                                       "train_count"] and len(table) == k
    summary = (run / "summary.md").read_text()
    assert "Success criteria" in summary and "Bottom-5 names by F1" in summary
    assert "GPU memory" not in summary  # a CPU run has none to report

    out = tmp_path / "resumed"
    capfd.readouterr()
    started = time.time()
    first = fit(micro(demo_manifest, out, "optim.epochs=4", "run.stop_after=2"))
    assert [h["epoch"] for h in first["history"]] == [1, 2]
    said = capfd.readouterr().out
    assert f"raysys: removed placement group {leaked[:12]} (STRICT_PACK, 1 x {{CPU: 3.5}}) " \
           "left by Squatter" in said, said[-3000:]
    assert _runs_leftovers() == after_first
    reliability_log.append({
        "id": "leaked-group", "fault": "a placement group left by a dead actor, holding 3.5 "
        "of the node's 4 CPUs, when a run starts", "tries": 1,
        "outcome": f"the run removed it, said so in one line, and trained its 2 epochs in "
                   f"{time.time() - started:.0f} s", "lost": "-"})
    assert cli(["train", "--manifest", str(demo_manifest), "--preset", "micro", "--epochs", "4",
                "--out", str(out)]) == 0
    assert _runs_leftovers() == after_first
    resumed = _log(out)
    assert [h["epoch"] for h in resumed] == [1, 2, 3, 4]
    console = (out / "console.log").read_text()  # both attempts' lines, in order
    assert console.count("Ray's logs: ") == 2
    assert console.index("epoch 2/4") < console.index("resumed at epoch 3") < console.index(
        "epoch 4/4")
    assert resumed[:2] == first["history"]  # epochs 1-2 come from the checkpoint
    for a, b in zip(history, resumed, strict=True):
        for key in EXACT:
            assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-9), (a["epoch"], key)
    # Every epoch's val predictions, kept across the resume: the same as the straight run's.
    straight, again = (np.load(d / "val_predictions_by_epoch.npz") for d in (run, out))
    assert straight["epochs"].tolist() == again["epochs"].tolist() == [1, 2, 3, 4]
    np.testing.assert_array_equal(straight["preds"], again["preds"])
    best = np.flatnonzero(straight["epochs"] == r["best_epoch"])[0]
    np.testing.assert_array_equal(straight["preds"][best], preds)
    # the resumed run's best model scored test as the straight run's did
    np.testing.assert_array_equal(np.load(out / "test_predictions.npy"),
                                  np.load(run / "test_predictions.npy"))
    logits = np.load(run / "logits.npy")
    assert logits.dtype == np.float16 and logits.shape == (len(labels), k)
