"""The run-folder writer, without Ray: what rank 0 leaves after every epoch and at every new
best, each file loadable, and nothing from the stand-in other ranks use."""

import json

import numpy as np
import pandas as pd
import torch

from raysys.train.rundir import NUMPY_OUTPUTS, NullWriter, RunWriter
from tests.report.helpers import entry


def _table(names):
    return pd.DataFrame({"name": names, "precision": [1.0, 0.5], "recall": [1.0, 0.5],
                         "f1": [1.0, 0.5], "support": [3, 2], "train_count": [9, 4],
                         "predicted": [3, 2]})


def test_writer_leaves_every_output_loadable(tmp_path):
    run = tmp_path / "run"
    w = RunWriter(str(run), {"run": {"name": "t"}}, ["ann", "bob"])
    w.save_epoch([entry(1, k=2)], {"metric": "val/top1", "status": "running", "epochs": 2})
    assert not (run / "best_model.pth").exists()  # nothing best yet
    arrays = {"predictions": np.array([0, 1, 1]), "true_labels": np.array([0, 1, 0]),
              "val_rows": np.array([4, 7, 9]), "confidences": np.array([0.9, 0.6, 0.5]),
              "embeddings": np.ones((3, 8), np.float32)}
    model = torch.nn.Linear(8, 2)
    w.save_best(model.state_dict(), 2, arrays, _table(["ann", "bob"]))
    history = [entry(1, k=2), entry(2, k=2)]
    w.save_epoch(history, {"metric": "val/top1", "status": "finished", "epochs": 2,
                           "run_name": "t"})
    blob = torch.load(run / "best_model.pth", weights_only=True)
    assert blob["epoch"] == 2 and blob["names"] == ["ann", "bob"]
    torch.testing.assert_close(blob["state_dict"]["weight"], model.weight.detach())
    for name in NUMPY_OUTPUTS:
        np.testing.assert_array_equal(np.load(run / f"{name}.npy"), arrays[name])
    assert json.loads((run / "names.json").read_text()) == ["ann", "bob"]
    assert pd.read_csv(run / "results.csv")["name"].tolist() == ["ann", "bob"]
    assert json.loads((run / "training_log.json").read_text()) == history
    summary = (run / "summary.md").read_text()
    assert "status: **finished**, 2 of 2 epochs" in summary and "| ann |" in summary
    assert not list(run.glob(".*"))  # no temp file left behind


def test_null_writer_writes_nothing(tmp_path):
    w = NullWriter()
    w.save_best({}, 1, {}, None)
    w.save_epoch([entry()], {})
    assert not list(tmp_path.iterdir())
