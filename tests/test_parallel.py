"""The report's imports in a background thread: only once the run trains, never after
cancel()."""

import sys
import time

from raysys.parallel import BackgroundImport


def test_imports_wait_for_go_and_stop_at_cancel(tmp_path, monkeypatch):
    for name in ("bg_first", "bg_second"):
        (tmp_path / f"{name}.py").write_text("import time\ntime.sleep(0.2)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    waiting = BackgroundImport("bg_first")
    time.sleep(0.3)
    assert "bg_first" not in sys.modules and waiting.thread.is_alive()
    waiting.go.set()
    waiting.thread.join(10)
    assert "bg_first" in sys.modules

    cancelled = BackgroundImport("bg_second")
    cancelled.cancel()
    assert "bg_second" not in sys.modules and not cancelled.thread.is_alive()

    # cancelled mid-import: cancel() returns once that import is done, none left running
    (tmp_path / "bg_third.py").write_text("import time\ntime.sleep(0.5)\n")
    underway = BackgroundImport("bg_third", "bg_fourth")
    underway.go.set()
    time.sleep(0.2)
    underway.cancel()
    assert not underway.thread.is_alive() and "bg_third" in sys.modules
    assert "bg_fourth" not in sys.modules
    for name in ("bg_first", "bg_second", "bg_third"):
        sys.modules.pop(name, None)
