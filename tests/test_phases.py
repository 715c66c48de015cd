"""Phase marks (raysys/phases.py) and the fixed-cost benchmark's reading of them."""

import json

from benchmarks.fixed_cost import first_batch_s, read_marks, timeline
from raysys.phases import ENV, mark, on_first


def test_marks_are_written_only_when_asked(tmp_path, monkeypatch):
    path = tmp_path / "phases"
    monkeypatch.delenv(ENV, raising=False)
    mark("off")
    assert not path.exists()
    monkeypatch.setenv(ENV, str(path))
    mark("a", "run1")
    mark("b")
    got = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(m["phase"], m["run"]) for m in got] == [("a", "run1"), ("b", "")]
    assert got[0]["t"] <= got[1]["t"]


def test_on_first_marks_once_when_the_first_item_arrives(tmp_path, monkeypatch):
    path = tmp_path / "phases"
    monkeypatch.setenv(ENV, str(path))
    items = on_first(iter([1, 2, 3]), "first batch", "r")
    assert not path.exists()  # nothing pulled yet
    assert next(items) == 1 and len(read_marks(path)) == 1
    assert list(items) == [2, 3] and len(read_marks(path)) == 1
    assert list(on_first([], "never")) == [] and len(read_marks(path)) == 1


def test_timeline_is_the_time_since_the_previous_phase():
    marks = [{"phase": "b", "t": 13.0}, {"phase": "a", "t": 10.5},
             {"phase": "streams started, first batch", "t": 20.0}]
    rows = timeline(marks, 10.0, 25.0)
    assert rows == [("a", 0.5), ("b", 2.5), ("streams started, first batch", 7.0),
                    ("process exit", 5.0)]
    assert first_batch_s(marks, 10.0) == 10.0
