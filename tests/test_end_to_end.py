"""A tiny grid, end to end through the CLI: rows land in SQLite, a rerun trains nothing."""

from __future__ import annotations

import sqlite3

from click.testing import CliRunner

from kdbench.cli import main

TINY = [
    "--preset", "ci",
    "--set", "run.pairs=width",
    "--set", "run.seeds=0,1",
    "--set", "train.steps=4",
    "--set", "teacher.steps=4",
]


def test_tiny_grid_writes_rows_and_a_rerun_trains_nothing(tmp_path, monkeypatch, session_cache):
    monkeypatch.setenv("KDBENCH_CACHE", str(session_cache))
    store = tmp_path / "results.db"
    runner = CliRunner()
    first = runner.invoke(main, ["run", *TINY, "--results", str(store)])
    assert first.exit_code == 0, first.output
    assert "noisy input" in first.output and "teacher" in first.output
    with sqlite3.connect(store) as db:
        rows = db.execute("SELECT role, method, status, finished FROM trials ORDER BY id").fetchall()
        scores = db.execute("SELECT COUNT(*) FROM scores").fetchone()[0]
    students = [row for row in rows if row[0] == "student"]
    assert sorted((r[1], r[2]) for r in students) == [
        ("cosine", "done"), ("cosine", "done"), ("none", "done"), ("none", "done"),
    ]
    assert {row[0] for row in rows} == {"noisy", "teacher", "student"}
    assert scores == len(rows) * 4 * 3  # trials × test utterances × metrics
    assert len(list((tmp_path / "students").glob("*.pt"))) == 4

    second = runner.invoke(main, ["run", *TINY, "--results", str(store)])
    assert second.exit_code == 0, second.output
    assert "ran 0 trial(s)" in second.output
    with sqlite3.connect(store) as db:
        again = db.execute("SELECT role, method, status, finished FROM trials ORDER BY id").fetchall()
    assert again == rows


def test_a_changed_setting_makes_new_trials_instead_of_mixing_with_old_rows(
    tmp_path, monkeypatch, session_cache
):
    monkeypatch.setenv("KDBENCH_CACHE", str(session_cache))
    store = tmp_path / "results.db"
    runner = CliRunner()
    base = [*TINY, "--set", "run.seeds=0", "--results", str(store)]
    assert runner.invoke(main, ["run", *base]).exit_code == 0
    changed = runner.invoke(main, ["run", *base, "--set", "method.cosine.weight=0.5"])
    assert changed.exit_code == 0, changed.output
    assert "ran 1 trial(s)" in changed.output  # only cosine: none and references are reused
