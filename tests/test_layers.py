"""The import-linter contracts of pyproject.toml hold, and they can fail: a copy of the package
with `import ray` planted in a model module breaks them."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
        "sys.exit(lint_imports_command())"]


def lint(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*LINT, "--no-cache"], cwd=cwd, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(cwd)})


def test_contracts_hold_and_catch_a_planted_ray_import(tmp_path):
    shutil.copytree(ROOT / "raysys", tmp_path / "raysys",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    ok = lint(tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    vit = tmp_path / "raysys" / "model" / "vit.py"
    vit.write_text(vit.read_text() + "\nimport ray  # noqa\n")
    broken = lint(tmp_path)
    assert broken.returncode != 0
    assert "the model, the report and pure decoding run without Ray BROKEN" in broken.stdout
