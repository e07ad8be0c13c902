"""A tiny grid, end to end through the CLI: rows land in SQLite, a rerun trains nothing."""

from __future__ import annotations

import sqlite3

from click.testing import CliRunner

from kdbench.cli import main
from kdbench.config import load_config
from kdbench.plugin.registry import get_registry

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


def test_dry_run_counts_the_paper_grid_and_estimates_it_without_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner(env={"COLUMNS": "200"}).invoke(
        main, ["run", "--preset", "paper", "--method", "all", "--dry-run"]
    )
    assert result.exit_code == 0, result.output
    registry = get_registry()
    config = load_config("paper", registry=registry)
    pairs = [n for n in registry.names("pairs") if registry.get("pairs", n).suite == "paper"]
    students = len(pairs) * len(registry.names("methods")) * len(config.run["seeds"])
    teacher_specs = {repr(registry.get("pairs", n).teacher.to_json()) for n in pairs}
    teachers = len(teacher_specs) * len(config.teacher["seeds"])
    assert f"{students} student trial(s), {teachers} teacher(s)" in result.output
    assert "GPU-hours at an assumed effective 4 TFLOP/s" in result.output
    assert "paper_width_depth" in result.output
    assert not (tmp_path / "kdbench-results").exists()


def test_all_pairs_means_the_presets_suite():
    from kdbench.config import load_config
    from kdbench.plugin.registry import get_registry
    from kdbench.run.grid import select_pairs

    registry = get_registry()
    quick = select_pairs(load_config("quick"), registry, "all")
    paper = select_pairs(load_config("paper"), registry, "all")
    assert quick == ["width", "kernel", "depth", "width8", "width_depth"]
    assert paper == [f"paper_{name}" for name in quick]


def test_a_cross_family_grid_runs_and_its_leaderboard_shows_the_students_cost(
    tmp_path, monkeypatch, session_cache
):
    """UNet teacher → GTCRN student on the tiny preset: every method trains, the table
    shows the GTCRN's size and cost beside its scores. One thread per trial (`--jobs 2`),
    as GTCRN trials should run."""
    monkeypatch.setenv("KDBENCH_CACHE", str(session_cache))
    store = tmp_path / "results.db"
    args = [*TINY, "--set", "run.pairs=unet_gtcrn", "--set", "run.seeds=0", "--jobs", "2"]
    result = CliRunner(env={"COLUMNS": "200"}).invoke(
        main, ["run", *args, "--method", "output", "--results", str(store)]
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    row = next(line for line in lines if line.lstrip().startswith("unet_gtcrn"))
    assert "23.7k" in row and "26.5M" in row
    with sqlite3.connect(store) as db:
        students = db.execute(
            "SELECT method, status FROM trials WHERE role = 'student' ORDER BY method"
        ).fetchall()
        finite = db.execute(
            "SELECT COUNT(*) FROM scores JOIN trials ON trials.id = scores.trial_id "
            "WHERE trials.role = 'student' AND scores.value IS NOT NULL"
        ).fetchone()[0]
    assert students == [("none", "done"), ("output", "done")]
    assert finite == 2 * 4 * 3  # students × test utterances × metrics
