"""Leaderboard outputs on a real, tiny grid: every shown number is traced back to the store.

One module fixture trains the grid once (1 pair × {none, cosine} × 2 seeds, 3 steps); the
tests only read the store, except the one that deletes a trial, which works on a copy.
`run.baseline=cosine` puts a baseline in the grid without training a third method.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
import sqlite3
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from kdbench.cli import main
from kdbench.report.stats import METHODOLOGY
from kdbench.run.store import Store

GRID = [
    "--preset", "ci",
    "--set", "train.steps=3",
    "--set", "teacher.steps=4",
    "--set", "run.seeds=0,1",
    "--set", "run.pairs=width",
    "--set", "run.baseline=cosine",
]
METRICS = ["pesq_wb", "stoi", "si_sdr"]


@dataclasses.dataclass
class GridRun:
    root: Path
    store: Path


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory: pytest.TempPathFactory, session_cache: Path):
    root = tmp_path_factory.mktemp("leaderboard")
    store = root / "results.db"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KDBENCH_CACHE", str(session_cache))
        result = CliRunner().invoke(main, ["run", *GRID, "--results", str(store)])
        assert result.exit_code == 0, result.output
        yield GridRun(root, store)


def leaderboard(store: Path, *args: str) -> str:
    """stdout of `kdbench leaderboard` on the test grid, on a 120-column terminal."""
    result = CliRunner(env={"COLUMNS": "120"}).invoke(
        main, ["leaderboard", *GRID, "--results", str(store), *args]
    )
    assert result.exit_code == 0, result.output
    return result.stdout


def per_seed_means(store: Path, method: str, metric: str) -> dict[int, float]:
    """The store's own numbers, recomputed without any kdbench summary code."""
    db = Store(store)
    try:
        trials = db.trials()
        trials = trials[(trials["role"] == "student") & (trials["method"] == method)]
        scores = db.scores(trials["id"])
    finally:
        db.close()
    scores = scores[scores["metric"] == metric].merge(trials, left_on="trial_id", right_on="id")
    return {int(seed): value for seed, value in scores.groupby("seed")["value"].mean().items()}


@pytest.fixture(scope="module")
def published(grid_run: GridRun) -> Path:
    leaderboard(grid_run.store, "--publish", str(grid_run.root / "pages"))
    return grid_run.root / "pages" / "procedural-ci"


def test_published_numbers_match_the_store(grid_run: GridRun, published: Path):
    readme = (published / "README.md").read_text()
    for method in ("none", "cosine"):
        for metric in METRICS:
            seeds = pd.Series(per_seed_means(grid_run.store, method, metric))
            assert len(seeds) == 2
            assert f"{seeds.mean():.3f} ± {seeds.std(ddof=1):.3f}" in readme
    results = pd.read_csv(published / "results.csv")
    row = results[(results["method"] == "cosine") & (results["metric"] == "stoi")].iloc[0]
    expected = pd.Series(per_seed_means(grid_run.store, "cosine", "stoi")).mean()
    assert row["mean"] == pytest.approx(expected, rel=1e-12)
    trials = pd.read_csv(published / "trials.csv")
    assert sorted(trials["role"]) == ["noisy", *["student"] * 4, "teacher"]
    cosine0 = trials[(trials["method"] == "cosine") & (trials["seed"] == 0)].iloc[0]
    assert cosine0["stoi"] == pytest.approx(per_seed_means(grid_run.store, "cosine", "stoi")[0])
    assert (trials["status"] == "done").all()
    assert "\\begin{tabular}" in (published / "results.tex").read_text()
    across = pd.read_csv(published / "across_pairs.csv")
    unit = across[(across["method"] == "cosine") & (across["reference"] == "none")
                  & (across["metric"] == "stoi")].iloc[0]
    differences = (pd.Series(per_seed_means(grid_run.store, "cosine", "stoi"))
                   - pd.Series(per_seed_means(grid_run.store, "none", "stoi")))
    assert unit["n_units"] == 2 and unit["delta"] == pytest.approx(differences.mean(), rel=1e-12)
    assert unit["n_better"] == int((differences > 0).sum())
    assert "Is it real or seed noise?" in readme and f"{int(unit['n_better'])} / 2" in readme
    for png in ["seeds-pesq_wb.png", "seeds-stoi.png", "seeds-si_sdr.png", "cost.png"]:
        assert (published / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({png})" in readme


def test_published_page_has_provenance(grid_run: GridRun, published: Path):
    readme = (published / "README.md").read_text()
    command = re.search(r"\*\*command\*\*: `([^`]*)`", readme).group(1)
    assert command.startswith("kdbench leaderboard --preset ci")
    assert "--set run.pairs=width" in command and "--publish" in command
    assert re.search(r"\*\*date\*\*: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", readme)
    assert re.search(r"\*\*machine \(this page\)\*\*: .+, \d+ cores, GPU: ", readme)
    head = subprocess.run(
        ["git", "-C", str(Path(__file__).parent), "rev-parse", "HEAD"],
        capture_output=True, text=True,
    )
    if head.returncode == 0:
        assert f"git commit `{head.stdout.strip()}`, dirty tree: " in readme
    assert "**seeds**: 0, 1" in readme
    assert "mode=wb" in readme and "extended=false" in readme and "zero_mean=true" in readme
    assert "`train.checkpoint = last`" in readme and "`teacher.checkpoint = best_valid`" in readme
    assert METHODOLOGY in readme
    assert "With 2 seed(s)" in readme
    assert re.search(r"\*\*compute\*\*: \d+ s", readme)
    assert re.search(r"torch [\d.]+.*pesq [\d.]+.*pystoi [\d.]+", readme)


@pytest.mark.parametrize("fmt", ["md", "csv", "latex", "html", "json"])
def test_every_format_renders(grid_run: GridRun, fmt: str):
    text = leaderboard(grid_run.store, "--format", fmt)
    if fmt == "csv":
        frame = pd.read_csv(io.StringIO(text))
        assert len(frame) == len(METRICS) * (2 + 2)  # noisy, teacher, none, cosine
        assert {"mean", "std", "delta_none", "p_holm_none", "dz_cosine"} <= set(frame.columns)
    elif fmt == "json":
        document = json.loads(text)
        assert document["control"] == "none" and document["baseline"] == "cosine"
        methods = {row["method"] for row in document["results"]}
        assert methods == {"noisy", "teacher", "none", "cosine"}
        assert document["ranks"]
        across = document["across_pairs"]
        assert {(r["method"], r["reference"]) for r in across} == {("none", "cosine"), ("cosine", "none")}
        assert all(r["n_units"] == 2 for r in across)  # one pair × two seeds
        assert {row["metric"] for row in document["variance_components"]} == set(METRICS)
    elif fmt == "latex":  # a table per metric, then ranks, across pairs and variance shares
        assert text.count("\\begin{tabular}") == text.count("\\end{tabular}") == len(METRICS) + 3
    elif fmt == "html":
        assert text.count("<table>") == len(METRICS) + 3
    else:
        assert "| pair | method |" in text and "rank summary" in text


def test_terminal_table_shows_references_and_ranks(grid_run: GridRun):
    text = leaderboard(grid_run.store)
    for needle in ("noisy input", "teacher", "MAC/s", "rank summary", "W/T/L vs none",
                   "each (pair, seed) one unit", "better/units"):
        assert needle in text


def test_filters_hide_rows(grid_run: GridRun):
    frame = pd.read_csv(io.StringIO(leaderboard(
        grid_run.store, "--format", "csv", "--metric", "stoi", "--only-method", "cosine"
    )))
    assert set(frame["metric"]) == {"stoi"}
    assert set(frame.loc[frame["role"] == "student", "method"]) == {"cosine"}
    both = pd.read_csv(io.StringIO(
        leaderboard(grid_run.store, "--format", "csv", "--metric", "stoi,si_sdr", "--pair", "width")
    ))
    assert set(both["metric"]) == {"stoi", "si_sdr"}
    full = pd.read_csv(io.StringIO(leaderboard(grid_run.store, "--format", "csv")))
    shown = frame[frame["role"] == "student"].iloc[0]
    same = full[(full["method"] == "cosine") & (full["metric"] == "stoi")].iloc[0]
    assert shown["p_holm_none"] == pytest.approx(same["p_holm_none"], nan_ok=True)
    result = CliRunner().invoke(
        main, ["leaderboard", *GRID, "--results", str(grid_run.store), "--metric", "pesq_nb"]
    )
    assert result.exit_code == 2 and "not in this grid" in result.output


def test_missing_trial_is_flagged_not_averaged(grid_run: GridRun, tmp_path: Path):
    store = tmp_path / "partial.db"
    with sqlite3.connect(grid_run.store) as source, sqlite3.connect(store) as copy:
        source.backup(copy)
        (victim,) = copy.execute(
            "SELECT id FROM trials WHERE role='student' AND method='none' AND seed=1"
        ).fetchone()
        copy.execute("DELETE FROM scores WHERE trial_id = ?", (victim,))
        copy.execute("DELETE FROM trials WHERE id = ?", (victim,))
    frame = pd.read_csv(io.StringIO(leaderboard(store, "--format", "csv")))
    cell = frame[(frame["method"] == "none") & (frame["metric"] == "stoi")].iloc[0]
    assert not cell["complete"] and cell["n_seeds"] == 1 and cell["missing_trials"] == 1
    assert cell["mean"] == pytest.approx(per_seed_means(store, "none", "stoi")[0])
    markdown = leaderboard(store, "--format", "md")
    rows = [line for line in markdown.splitlines() if line.startswith("| width | none (1 missing)")]
    assert len(rows) == len(METRICS)
    assert all("(incomplete: 1/2 seeds)" in row and "**" not in row for row in rows)
    terminal = leaderboard(store)
    assert "none (1 missing)" in terminal and "(1/2 seeds)" in terminal
    pages = tmp_path / "pages"
    leaderboard(store, "--publish", str(pages))
    readme = (pages / "procedural-ci" / "README.md").read_text()
    assert "**Incomplete:** 1 student trial(s)" in readme
