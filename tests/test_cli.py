"""The `raysys` command line: help on every command, thin sweep scripts, clear errors, and a
manifest command that loads neither torch nor Ray."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from raysys.cli import build_parser, main
from raysys.config import RESULTS_ROOT, load_config

COMMANDS = ["demo-data", "manifest", "pack", "train", "sweep", "report"]
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args([command, "--help"] if command else ["--help"])
    assert e.value.code == 0
    assert "usage" in capsys.readouterr().out


def test_sweep_list_shows_the_four_experiments(capsys):
    assert main(["sweep", "--list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out] == ["baseline", "mixup", "label_smoothing",
                                                 "subset"]


def test_sweep_scripts_are_thin_entry_points():
    for script in (ROOT / "sweeps").glob("*.py"):
        text = script.read_text()
        assert f'main(["sweep", "{script.stem}", *sys.argv[1:]])' in text


def test_console_script_makes_demo_data_and_its_manifest(tmp_path):
    exe = [sys.executable, "-m", "raysys.cli"]
    subprocess.run([*exe, "demo-data", "--out", str(tmp_path / "d"), "--size", "32",
                    "--images", "120", "--names", "4"], check=True)
    r = subprocess.run([*exe, "manifest", "--index-dir", str(tmp_path / "d" / "index_files"),
                        "--out", str(tmp_path / "m.parquet"), "--split-by", "group"],
                       check=True, capture_output=True, text=True)
    assert "names        : 4" in r.stdout and "images       : 120" in r.stdout
    assert len(json.loads((tmp_path / "names.json").read_text())) == 4
    assert pd.read_parquet(tmp_path / "m.parquet").shape[0] == 120


def test_config_errors_are_clear(capsys):
    assert main(["train", "--preset", "nope"]) == 2
    assert "unknown preset" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--preset", "micro", "--epochs", "x"])
    assert "optim.epochs: expected int, got 'x'" in capsys.readouterr().err
    assert main(["sweep", "label_smoothing", "--preset", "micro", "--set", "optim.lr=-1"]) == 2
    assert "optim.lr must be > 0" in capsys.readouterr().err


def test_manifest_loads_neither_torch_nor_ray(tmp_path):
    """`raysys manifest` reads headers and writes Parquet: importing torch (and timm) or Ray
    cost it ~3 s per call, 4x its whole run on LFW."""
    from raysys.data.demo import generate

    index = generate(tmp_path / "d", names=3, size=32, images=60)
    code = ("import json, sys; from raysys.cli import main; rc = main(sys.argv[1:]); "
            "print(json.dumps(sorted(m for m in ('torch', 'timm', 'ray') if m in sys.modules)));"
            " sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code, "manifest", "--index-dir", str(index),
                        "--out", str(tmp_path / "m.parquet")],
                       capture_output=True, text=True, check=True)
    assert json.loads(r.stdout.splitlines()[-1]) == []
    assert "images       : 60" in r.stdout


def test_make_demo_path_resolves_the_demo_data_and_the_micro_preset(tmp_path, monkeypatch,
                                                                    capsys):
    """`make demo` runs `sweeps/label_smoothing.py` with no data flags: the embedded demo data
    is drawn once, its manifest built into the sweep folder, and the label-smoothing sweep
    handed the micro preset on it. (Ray and the sweep itself are stubbed: the sweep's own run
    is tested in test_job.py.)"""
    import runpy

    from raysys.sweep import runner
    from raysys.train import cluster, connect

    monkeypatch.chdir(tmp_path)  # results/ (demo data and sweep folder) lands here
    monkeypatch.setattr(connect, "init_ray", lambda *a, **k: None)
    monkeypatch.setattr(cluster, "check_shared", lambda *a, **k: None)
    calls = []
    monkeypatch.setattr(runner, "run_sweep", lambda exp, cfg, sweep_dir, **kw: calls.append(
        (exp, cfg, sweep_dir)) or f"{sweep_dir}/summary.md")
    script = Path(__file__).resolve().parents[1] / "sweeps" / "label_smoothing.py"
    monkeypatch.setattr(sys, "argv", [str(script)])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(script), run_name="__main__")
    assert done.value.code == 0
    (exp, cfg, sweep_dir), = calls
    assert exp.name == "label_smoothing" and len(exp.points) == 3
    assert cfg.model.arch == load_config("micro").model.arch and cfg.data.split_by == "group"
    assert sweep_dir == str((tmp_path / RESULTS_ROOT / "sweeps" / "label_smoothing").resolve())
    assert cfg.data.manifest.startswith(sweep_dir) and Path(cfg.data.manifest).exists()
    assert len(list((tmp_path / "results" / "demo" / "index_files").glob("index_*.json"))) == 12
    assert f"sweep report: {sweep_dir}/summary.md" in capsys.readouterr().out
