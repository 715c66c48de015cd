"""The run-folder writer, without Ray: what rank 0 leaves after every epoch and at every new
best, each file loadable, and nothing from the stand-in other ranks use."""

import json

import numpy as np
import pandas as pd
import torch

from raysys.report.history import read_by_epoch
from raysys.train.rundir import NUMPY_OUTPUTS, NullWriter, RunWriter
from tests.report.helpers import entry


def _table(names):
    return pd.DataFrame({"name": names, "precision": [1.0, 0.5], "recall": [1.0, 0.5],
                         "f1": [1.0, 0.5], "support": [3, 2], "train_count": [9, 4],
                         "predicted": [3, 2]})


def test_writer_leaves_every_output_loadable(tmp_path):
    run = tmp_path / "run"
    w = RunWriter(str(run), {"run": {"name": "t"}}, ["ann", "bob"])
    rows = np.array([4, 7, 9])
    w.save_epoch([entry(1, k=2)], {"metric": "val/top1", "status": "running", "epochs": 2},
                 1, rows, np.array([1, 1, 1]))
    assert not (run / "best_model.pth").exists()  # nothing best yet
    arrays = {"predictions": np.array([0, 1, 1]), "true_labels": np.array([0, 1, 0]),
              "val_rows": np.array([4, 7, 9]), "confidences": np.array([0.9, 0.6, 0.5]),
              "embeddings": np.ones((3, 8), np.float32),
              "logits": np.array([[2, 1], [0, 3], [1, 2]], np.float16)}
    model = torch.nn.Linear(8, 2)
    w.save_best(model.state_dict(), 2, arrays, _table(["ann", "bob"]))
    history = [entry(1, k=2), entry(2, k=2)]
    w.save_epoch(history, {"metric": "val/top1", "status": "finished", "epochs": 2,
                           "run_name": "t"}, 2, rows, arrays["predictions"])
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
    by_epoch = read_by_epoch(str(run))
    np.testing.assert_array_equal(by_epoch["epochs"], [1, 2])
    np.testing.assert_array_equal(by_epoch["preds"], [[1, 1, 1], [0, 1, 1]])


def test_resumed_writer_keeps_earlier_epochs_and_replays_the_rest(tmp_path):
    """A resume from epoch 2's checkpoint at epoch 3 keeps epochs 1-2, drops the 3 that the
    lost node had written, and a row that one epoch could not score stays -1 there."""
    run, rows = str(tmp_path / "run"), np.array([1, 2, 3])
    w = RunWriter(run, {}, ["a", "b"])
    for e in (1, 2, 3):
        w.save_epoch([entry(e, k=2)], {}, e, rows, np.full(3, e % 2))
    w = RunWriter(run, {}, ["a", "b"], start_epoch=3)
    w.save_epoch([entry(3, k=2)], {}, 3, rows[1:], np.array([1, 1]))
    by_epoch = read_by_epoch(run)
    np.testing.assert_array_equal(by_epoch["epochs"], [1, 2, 3])
    np.testing.assert_array_equal(by_epoch["rows"], rows)
    np.testing.assert_array_equal(by_epoch["preds"], [[1, 1, 1], [0, 0, 0], [-1, 1, 1]])


def test_null_writer_writes_nothing(tmp_path, monkeypatch):
    """Ranks but 0 write nothing: not even into the working folder (a default `results/`)."""
    monkeypatch.chdir(tmp_path)
    w = NullWriter()
    w.save_best({}, 1, {}, None)
    w.save_epoch([entry()], {}, 1, np.zeros(0), np.zeros(0))
    assert not list(tmp_path.iterdir())


def test_an_epoch_with_a_row_the_others_lack_realigns_them(tmp_path):
    run = str(tmp_path / "run")
    w = RunWriter(run, {}, ["a", "b"])
    w.save_epoch([entry(1, k=2)], {}, 1, np.array([1, 3]), np.array([0, 1]))
    w.save_epoch([entry(2, k=2)], {}, 2, np.array([1, 2, 3]), np.array([1, 1, 0]))
    by_epoch = read_by_epoch(run)
    np.testing.assert_array_equal(by_epoch["rows"], [1, 2, 3])
    np.testing.assert_array_equal(by_epoch["preds"], [[0, -1, 1], [1, 1, 0]])
    assert by_epoch["preds"].dtype == np.int16


def test_within_stratum_predictions_are_saved_every_epoch_and_kept_on_resume(tmp_path):
    """Each epoch's argmax within the true name's stratum goes beside the argmax, with the
    strata codes it used; a resume keeps the earlier epochs' and an epoch from before the loop
    saved them reads -1."""
    run, rows = str(tmp_path / "run"), np.array([1, 2, 3])
    strata = {"gender": np.array([0, 1]), "gender x generation": np.array([0, 1])}
    w = RunWriter(run, {}, ["a", "b"], strata=strata)
    for e in (1, 2):
        w.save_epoch([entry(e, k=2)], {}, e, rows, np.full(3, e % 2),
                     {"gender": np.full(3, e), "gender x generation": np.zeros(3)})
    got = read_by_epoch(run)
    np.testing.assert_array_equal(got["within_gender"], [[1, 1, 1], [2, 2, 2]])
    np.testing.assert_array_equal(got["within_gender_x_generation"], np.zeros((2, 3)))
    np.testing.assert_array_equal(got["strata_gender"], [0, 1])
    w = RunWriter(run, {}, ["a", "b"], start_epoch=2, strata=strata)
    w.save_epoch([entry(2, k=2)], {}, 2, rows, np.ones(3), {"gender": np.full(3, 5),
                                                             "gender x generation": np.ones(3)})
    got = read_by_epoch(run)
    np.testing.assert_array_equal(got["within_gender"], [[1, 1, 1], [5, 5, 5]])
    old = str(tmp_path / "old")  # written before the loop saved within-stratum predictions
    RunWriter(old, {}, ["a", "b"]).save_epoch([entry(1, k=2)], {}, 1, rows, np.zeros(3))
    w = RunWriter(old, {}, ["a", "b"], start_epoch=2, strata=strata)
    w.save_epoch([entry(2, k=2)], {}, 2, rows, np.ones(3), {"gender": np.ones(3),
                                                             "gender x generation": np.ones(3)})
    np.testing.assert_array_equal(read_by_epoch(old)["within_gender"], [[-1, -1, -1],
                                                                         [1, 1, 1]])
