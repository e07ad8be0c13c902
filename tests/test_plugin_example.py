"""A third-party plugin, installed for real: examples/kdbench-plugin-example is built and
installed by pip, found through its entry point, passes the kit, and runs in a grid."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "kdbench-plugin-example"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(EXAMPLE)],
        check=True,
    )
    return target


def _environment(installed: Path, cache: Path) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(installed), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "KDBENCH_CACHE": str(cache), "COLUMNS": "200"}


def _kdbench(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "from kdbench.cli import main; main()", *args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=600,
    )


def test_the_installed_plugin_is_listed_with_its_distribution(installed, session_cache, tmp_path):
    listed = _kdbench(["list", "plugins"], _environment(installed, session_cache), tmp_path)
    assert listed.returncode == 0, listed.stderr
    line = next(row for row in listed.stdout.splitlines() if "relational" in row)
    assert "kdbench-plugin-example" in line and "kdbench_register_methods" in line


def test_the_plugins_own_conformance_test_passes(installed, session_cache, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
        env=_environment(installed, session_cache), cwd=tmp_path, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_tiny_grid_runs_the_plugins_method(installed, session_cache, tmp_path):
    store = tmp_path / "results.db"
    result = _kdbench(
        ["run", "--preset", "ci", "--method", "relational", "--set", "run.pairs=width",
         "--set", "run.seeds=0", "--set", "train.steps=3", "--set", "teacher.steps=4",
         "--results", str(store)],
        _environment(installed, session_cache), tmp_path,
    )
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(store) as db:
        rows = db.execute("SELECT method, status FROM trials WHERE role = 'student'").fetchall()
    assert sorted(rows) == [("none", "done"), ("relational", "done")]
