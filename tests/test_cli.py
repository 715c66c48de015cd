import subprocess
import sys

import pytest

from raysys.cli import build_parser, main

COMMANDS = ["demo-data", "manifest", "pack", "train"]


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args([command, "--help"] if command else ["--help"])
    assert e.value.code == 0
    assert "usage" in capsys.readouterr().out


def test_console_script_and_report(tmp_path):
    exe = [sys.executable, "-m", "raysys.cli"]
    subprocess.run([*exe, "demo-data", "--out", str(tmp_path / "d"), "--size", "32",
                    "--images", "120", "--names", "4"], check=True)
    r = subprocess.run([*exe, "manifest", "--index-dir", str(tmp_path / "d" / "index_files"),
                        "--out", str(tmp_path / "m.parquet"), "--split-by", "group"],
                       check=True, capture_output=True, text=True)
    assert "names        : 4" in r.stdout and "images       : 120" in r.stdout
    assert (tmp_path / "names.json").exists() and (tmp_path / "data_report.json").exists()


def test_train_config_errors_are_clear(capsys):
    assert main(["train", "--preset", "nope"]) == 2
    assert "unknown preset" in capsys.readouterr().err
