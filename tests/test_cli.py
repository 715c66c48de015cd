"""The `raysys` command line: help on every command, thin sweep scripts, clear errors, and a
manifest command that loads neither torch nor Ray."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from raysys.cli import build_parser, main

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


def test_console_script_and_report(tmp_path):
    exe = [sys.executable, "-m", "raysys.cli"]
    subprocess.run([*exe, "demo-data", "--out", str(tmp_path / "d"), "--size", "32",
                    "--images", "120", "--names", "4"], check=True)
    r = subprocess.run([*exe, "manifest", "--index-dir", str(tmp_path / "d" / "index_files"),
                        "--out", str(tmp_path / "m.parquet"), "--split-by", "group"],
                       check=True, capture_output=True, text=True)
    assert "names        : 4" in r.stdout and "images       : 120" in r.stdout
    assert (tmp_path / "names.json").exists() and (tmp_path / "data_report.json").exists()


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
