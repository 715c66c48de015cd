import subprocess
import sys

import pytest

from raysys.cli import build_parser, main

COMMANDS = ["demo-data", "manifest", "pack", "train", "sweep"]


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
    from pathlib import Path

    for script in (Path(__file__).parents[1] / "sweeps").glob("*.py"):
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
