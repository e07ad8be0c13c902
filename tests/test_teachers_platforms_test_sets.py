"""An answer that survives machines and teachers: several teacher seeds nest the students,
every trial records its numeric platform and a cell that mixes two is flagged, and extra
test sets score every model on another corpus, also when added after the grid ran."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas.testing as pd_testing
import pytest
import torch
from kdbench_plugins.executors.local import LocalExecutor
from rich.console import Console
from test_runner import TINY

from kdbench.config import load_config
from kdbench.plugin.registry import get_registry
from kdbench.report.leaderboard import (
    PLATFORM_MARK,
    collect,
    format_anchor,
    legend,
    render_terminal,
    select,
)
from kdbench.run import platform
from kdbench.run.grid import build_grid, teacher_settings
from kdbench.run.runner import run_grid
from kdbench.run.store import Store


@pytest.fixture
def with_test_plugins(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("KDBENCH_PLUGINS", "runner_plugins")
    yield get_registry(reload=True)
    monkeypatch.delenv("KDBENCH_PLUGINS")
    get_registry(reload=True)


def _grid(cache: Path, results: Path, overrides=(), methods="cosine", seeds=(0, 1), data="prepare"):
    registry = get_registry()
    config = load_config("ci", [*TINY, "run.jobs=1", *overrides], registry)
    grid = build_grid(
        config, registry, cache, results, methods=methods, seeds=list(seeds),
        data=data,
    )
    return config, grid


def test_several_teacher_seeds_nest_the_student_seeds(tmp_path: Path) -> None:
    _, grid = _grid(tmp_path, tmp_path, ["teacher.seeds=0,1"], seeds=range(4), data="skip")
    teachers = {t.teacher_seed: t for t in grid.anchors if t.role == "teacher"}
    assert sorted(teachers) == [0, 1] and teachers[0].id != teachers[1].id
    for student in grid.students:
        assert student.teacher_seed == student.seed % 2
        assert student.teacher_settings == teachers[student.teacher_seed].teacher_settings
    by_seed = {}
    for student in grid.students:  # every method of a student seed distils from one teacher
        by_seed.setdefault(student.seed, set()).add(student.teacher_seed)
    assert all(len(found) == 1 for found in by_seed.values())
    assert {s.method for s in grid.students} == {"none", "cosine"}


def test_one_teacher_seed_keeps_the_identity_a_single_seed_setting_had(tmp_path: Path) -> None:
    config, grid = _grid(tmp_path, tmp_path, data="skip")
    settings = teacher_settings(config, 0)
    assert "seeds" not in settings and settings["seed"] == 0
    assert set(settings) == set(config.teacher) - {"seeds"} | {"seed"}
    teacher = next(t for t in grid.anchors if t.role == "teacher")
    assert teacher.teacher_settings == settings


def test_trials_record_their_platform_and_a_mixed_cell_is_flagged(tmp_path: Path) -> None:
    cache, results = tmp_path / "cache", tmp_path / "results"
    config, grid = _grid(cache, results, methods="none")
    store = Store(results / "results.db")
    run_grid(grid, store, LocalExecutor(), {}, 1, console=Console(file=io.StringIO()))
    here = platform.describe("cpu")
    trials = store.trials()
    assert set(trials["platform"]) == {here["fingerprint"]}
    assert trials["details"].iloc[0]["platform"]["cpu_isa"] == here["cpu_isa"]
    assert not collect(grid, store, config).mixes_platforms("width", "none")

    threads = torch.get_num_threads()
    torch.set_num_threads(grid.students[0].threads + 3)  # the parent's count is not a trial's
    try:
        rerun = io.StringIO()
        run_grid(grid, store, LocalExecutor(), {}, 1, console=Console(file=rerun, width=300))
    finally:
        torch.set_num_threads(threads)
    rerun_words = " ".join(rerun.getvalue().split())
    assert "skipped" in rerun_words and "another numeric platform" not in rerun_words

    other = grid.students[1].id
    store.connection.execute("UPDATE trials SET platform = 'elsewhere' WHERE id = ?", (other,))
    data = collect(grid, store, config)
    assert data.mixes_platforms("width", "none")
    assert any(line.startswith(PLATFORM_MARK) and "width/none" in line for line in legend(data))
    out = io.StringIO()
    render_terminal(data, Console(file=out, width=200))
    assert PLATFORM_MARK in out.getvalue()

    said = io.StringIO()
    run_grid(grid, store, LocalExecutor(), {}, 1, console=Console(file=said, width=300))
    words = " ".join(said.getvalue().split())  # rich wraps it where the CPU's name ends
    assert "made on another numeric platform" in words
    assert "not part of its id" in words


def test_the_fingerprint_records_onednn_switched_off_and_only_then(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Switching oneDNN off changes Conv2d's bits (BENCHMARKS §7) but no environment
    variable says so; recording the switch must not change the fingerprint of a platform
    that leaves it on, or every existing store would read as made elsewhere."""
    for name in platform.KERNEL_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    default = platform.describe("cpu", threads=1)
    assert default["kernel_settings"] == {}
    monkeypatch.setattr(torch.backends.mkldnn, "enabled", False)
    off = platform.describe("cpu", threads=1)
    assert off["kernel_settings"] == {"torch.backends.mkldnn.enabled": "False"}
    assert off["fingerprint"] != default["fingerprint"]
    assert "torch.backends.mkldnn.enabled=False" in platform.label(off)


def test_extra_test_sets_score_every_model_and_are_added_without_retraining(
    tmp_path: Path, with_test_plugins
) -> None:
    cache, results = tmp_path / "cache", tmp_path / "results"
    _, before = _grid(cache, results)
    store = Store(results / "results.db")
    run_grid(before, store, LocalExecutor(), {}, 1, console=Console(file=io.StringIO()))
    finished = dict(zip(store.trials()["id"], store.trials()["finished"]))

    config, grid = _grid(cache, results, ["run.test_datasets=test_tones"])
    assert [t.id for t in grid.trials] == [t.id for t in before.trials]  # not in the ids
    report = run_grid(grid, store, LocalExecutor(), {}, 1, console=Console(file=io.StringIO()))
    assert report.ran == len(grid.trials) and not report.failed  # each scored, none trained
    trials = store.trials()
    assert dict(zip(trials["id"], trials["finished"])) == finished
    scored = store.test_sets_scored(finished)
    assert all(found == {"procedural", "test_tones"} for found in scored.values())
    tones = store.scores(finished)
    assert set(tones[tones["test_set"] == "test_tones"]["utterance"]) == {"tone0", "tone1"}

    data = collect(grid, store, config)
    assert data.datasets == ["procedural", "procedural → test_tones"]
    assert set(data.summary["dataset"]) == set(data.datasets)
    assert data.anchor("procedural → test_tones", "teacher", "si_sdr") is not None
    out = io.StringIO()
    render_terminal(data, Console(file=out, width=200))
    assert "procedural → test_tones (tones-v1)" in out.getvalue()
    again = run_grid(grid, store, LocalExecutor(), {}, 1, console=Console(file=io.StringIO()))
    assert again.ran == 0


def test_status_names_each_cells_platforms(tmp_path: Path) -> None:
    from kdbench.run.status import grid_status, render_status

    cache, results = tmp_path / "cache", tmp_path / "results"
    _, grid = _grid(cache, results, methods="none", seeds=(0,))
    store = Store(results / "results.db")
    run_grid(grid, store, LocalExecutor(), {}, 1, console=Console(file=io.StringIO()))
    status = grid_status(grid, store)
    here = platform.label(platform.describe("cpu"))
    assert status.platforms[("procedural", "width", "none")] == {here: 1}
    out = io.StringIO()
    render_status(status, Console(file=out, width=300))
    assert here in out.getvalue()


def test_the_leaderboard_treats_the_teacher_as_a_random_factor(tmp_path: Path) -> None:
    from kdbench.report import hierarchy
    from kdbench.report.formats import render

    cache, results = tmp_path / "cache", tmp_path / "results"
    config, grid = _grid(cache, results, ["teacher.seeds=0,1"], methods="output", seeds=range(4))
    store = Store(results / "results.db")
    run_grid(grid, store, LocalExecutor(), {}, 1, console=Console(file=io.StringIO()))
    data = collect(grid, store, config)
    assert sorted(data.scores["teacher"].unique()) == [0, 1]
    expected = hierarchy.teacher_level_comparison(
        data.scores, data.higher_is_better, references=data.comparisons
    )
    pd_testing.assert_frame_equal(data.teacher_level, expected)
    pooled = data.teacher_level[data.teacher_level["pair"] == hierarchy.POOLED]
    assert set(pooled["n_teachers"]) == {2} and set(pooled["n_units"]) == {4}
    assert set(data.variance["n_teachers"]) == {2}
    # The teacher row pools both teachers and shows the spread between them.
    block = data.datasets[0]
    teacher_ids = [trial.id for trial in grid.anchors if trial.role == "teacher"]
    means = data.trial_means.xs(block, level="dataset").loc[teacher_ids]
    for metric in data.metrics:
        anchor = data.anchor(block, "teacher", metric)
        assert anchor["n_trials"] == 2
        assert anchor["std_over_trials"] == pytest.approx(means[metric].std(ddof=1))
        assert anchor["mean"] == pytest.approx(means[metric].mean())  # same utterances each
    noisy = data.anchor(block, "noisy", data.metrics[0])
    assert noisy["n_trials"] == 1 and noisy["std_over_trials"] != noisy["std_over_trials"]
    out = io.StringIO()
    render_terminal(data, Console(file=out, width=250))
    spread = format_anchor(data.anchor(block, "teacher", data.metrics[0]))
    assert "±" in spread and spread in out.getvalue()
    assert spread in render(data, "md") and "std_over_trials" in render(data, "csv")
    assert "teacher as a random factor, 2 teacher(s)" in out.getvalue()
    assert "where the spread of student scores comes from" in out.getvalue()
    document = json.loads(render(data, "json"))
    assert len(document["teacher_level"]) == len(expected) and document["variance_components"]


def test_the_gain_per_mismatch_level_is_tested_when_the_pairs_span_levels(tmp_path: Path) -> None:
    from scipy import stats as sps

    from kdbench.report.formats import render

    cache, results = tmp_path / "cache", tmp_path / "results"
    config, grid = _grid(cache, results, ["run.pairs=width,depth"], methods="output")
    store = Store(results / "results.db")
    run_grid(grid, store, LocalExecutor(), {}, 1, console=Console(file=io.StringIO()))
    data = collect(grid, store, config)
    assert data.mismatch == {"width": 1, "depth": 2}  # as the pair plugins declare them
    block = data.datasets[0]
    means = data.scores.groupby(["pair", "seed", "method"])["value"].mean().unstack("method")
    diff = means["output"] - means["none"]
    levels = [data.mismatch[pair] for pair in diff.index.get_level_values("pair")]
    found = data.across(block, "si_sdr", "output", "none")
    assert found["trend"] == pytest.approx(sps.linregress(levels, diff.to_numpy()).slope)
    out = io.StringIO()
    render_terminal(data, Console(file=out, width=250))
    title = "does the gain grow with mismatch? slope of Δ per level (width 1, depth 2)"
    assert "does the gain grow with mismatch?" in out.getvalue()  # the title wraps there
    assert "Δ/level vs none" in out.getvalue() and title in render(data, "md")
    one_pair = select(data, pairs=["width"])
    out = io.StringIO()
    render_terminal(one_pair, Console(file=out, width=250))
    assert "does the gain grow with mismatch" not in out.getvalue()  # one level: no slope
