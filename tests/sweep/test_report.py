"""The sweep report without Ray: trial rows and statuses from the trials' run folders, the
criteria each where it applies, the winner and the trial table."""

from types import SimpleNamespace

import pandas as pd

from raysys.sweep.experiments import label_smoothing
from raysys.sweep.report import render, sweep_criteria, trial_rows
from raysys.train.rundir import RunWriter
from tests.report.helpers import entry

FLOORS = {"pixel_linear": {"top1": 0.1, "balanced_acc": 0.09},
          "metadata_probe": {"top1": 0.05, "balanced_acc": 0.08},
          "chance": {"uniform": 1 / 12}, "features": {"pixels": "32x32 grayscale, PCA-100"}}


def _trial(sweep, trial_id, smoothing, history, error=None):
    if history:
        w = RunWriter(str(sweep / "runs" / trial_id), {}, [])
        w.save_epoch(history, {"metric": "val/top1"})
        (sweep / "runs" / trial_id / "config.json").write_text("{}")
    return SimpleNamespace(path=str(sweep / trial_id), error=error,
                           config={"loss.label_smoothing": smoothing})


def test_rows_statuses_criteria_and_winner(tmp_path):
    results = [
        _trial(tmp_path, "t_done", 0.0, [entry(e, **{"val/top1": 0.1 * e}) for e in (1, 2, 3)]),
        _trial(tmp_path, "t_asha", 0.1, [entry(1, **{"val/top1": 0.05})]),
        _trial(tmp_path, "t_nan", 0.2, [entry(1), entry(2, diverged=True)]),
        _trial(tmp_path, "t_err", 0.3, [], error=RuntimeError("boom\nmore")),
    ]
    rows, histories = trial_rows(results, str(tmp_path), max_t=3, metric="val/top1")
    status = {r["trial_id"]: r["status"] for r in rows}
    assert status == {"t_done": "finished", "t_asha": "stopped early", "t_nan": "diverged",
                      "t_err": "error"}
    assert rows[0]["best_epoch"] == 3 and rows[3]["error"] == "boom"
    assert len(histories["t_done"]) == 3 and histories["t_err"] == []
    df = pd.DataFrame(rows)
    crit = {c[0]: c for c in sweep_criteria(df, "val/top1", FLOORS)}
    assert crit["top-1 > 5% on 500 names"][3] is None  # 12 names: n/a, not failed
    assert "no trial with 500 names" in crit["top-1 > 5% on 500 names"][1]
    assert crit["winner beats the best chance guess"][1].endswith("(trial t_done)")
    assert crit["no divergence"][1] == "1 of 4 trials diverged" and not crit["no divergence"][3]
    text = render(label_smoothing(12), df, rows, "val/top1", 3, FLOORS)
    assert "Trial `t_done`: val/top1 0.3000 at epoch 3" in text
    assert "finished 1, stopped early 1, diverged 1, error 1" in text
    assert "| t_asha | loss.label_smoothing=0.1 | stopped early | 1 |" in text
