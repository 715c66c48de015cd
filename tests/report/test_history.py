"""How a run ended and which epoch was best: the one rule the loop, the run report, fit() and
the sweep report share."""

import pytest

from raysys.report.history import best_entry, run_status
from tests.report.helpers import entry


@pytest.mark.parametrize("epochs, diverged, error, running, want", [
    ([1, 2, 3], False, None, False, "finished"),
    ([1, 2, 3], False, None, True, "finished"),
    ([1], False, None, False, "stopped early"),
    ([1], False, None, True, "running"),
    ([1, 2], True, None, False, "diverged"),
    ([1], False, RuntimeError("x"), False, "error"),
    ([], False, None, False, "error"),
])
def test_run_status(epochs, diverged, error, running, want):
    history = [entry(e) for e in epochs]
    if history:
        history[-1]["diverged"] = diverged
    assert run_status(history, 3, error=error, running=running) == want


def test_best_entry_skips_diverged_and_nan_and_prefers_the_later_tie():
    """Ray Train's checkpoint manager ranks a tie as the later checkpoint: the summary (and
    rank 0's best_model.pth) must name the same epoch as fit()'s Result."""
    h = [entry(1, **{"val/top1": 0.2}), entry(2, **{"val/top1": 0.4}),
         entry(3, **{"val/top1": 0.4}), entry(4, **{"val/top1": float("nan")}),
         entry(5, **{"val/top1": 0.9, "diverged": True})]
    assert best_entry(h, "val/top1")["epoch"] == 3
    only_bad = [entry(1, **{"val/top1": float("nan"), "diverged": True})]
    assert best_entry(only_bad, "val/top1")["epoch"] == 1


def test_align_rows_reindexes_and_fills_rows_it_lacks():
    import numpy as np

    from raysys.report.history import align_rows

    src, values = np.array([7, 3, 5]), np.array([[1, 2, 3], [4, 5, 6]], np.int16)
    out = align_rows(src, values, np.array([3, 4, 5, 7]))
    np.testing.assert_array_equal(out, [[2, -1, 3, 1], [5, -1, 6, 4]])
    assert out.dtype == np.int16
    np.testing.assert_array_equal(align_rows(np.zeros(0, int), np.zeros(0), np.array([1])),
                                  [-1])
