"""The Quick start's two commands install what each needs, and no more."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def planned_commands(tmp_path: Path, target: str) -> str:
    """What ``make TARGET`` would run in a fresh clone (no .venv yet), without running it."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    (tmp_path / "pyproject.toml").write_text("")
    return subprocess.run(["make", "-n", target], cwd=tmp_path, capture_output=True, text=True,
                          check=True, timeout=30).stdout


def test_demo_installs_the_runtime_only(tmp_path):
    """`make demo` installs the package without the test extras (moto, mypy, helm, ...)."""
    commands = planned_commands(tmp_path, "demo")
    assert "pip install --quiet -e ." in commands
    assert "[test]" not in commands


def test_test_installs_the_test_extras(tmp_path):
    commands = planned_commands(tmp_path, "test")
    assert "pip install --quiet -e '.[test]'" in commands


def test_unit_runs_the_fast_directories_only(tmp_path):
    """`make unit` installs the test extras and runs pytest on the fast directories, which
    exist: no system packages and no lint steps (those are `make test`'s)."""
    commands = planned_commands(tmp_path, "unit")
    assert "pip install --quiet -e '.[test]'" in commands
    runs = [line.split()[1:] for line in commands.splitlines() if line.startswith(".venv/bin/")
            and "/pip" not in line]
    assert runs == [["tests/unit", "tests/simulator", "tests/hygiene"]]
    assert all((ROOT / directory).is_dir() for directory in runs[0])
    assert "apt-get" not in commands
