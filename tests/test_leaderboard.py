"""Leaderboard outputs on a real, tiny grid: every shown number is traced back to the store.

One module fixture trains the grid once (1 pair × {none, cosine} × 2 seeds, 3 steps); the
tests only read the store, except the one that deletes a trial, which works on a copy.
`run.baseline=cosine` puts a baseline in the grid without training a third method.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import re
import sqlite3
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from kdbench.cli import main
from kdbench.report import publish as publish_module
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
    for metric in METRICS:
        for png in [f"forest-{metric}.png", f"cost-{metric}.png"]:
            assert (published / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert f"]({png})" in readme
    assert "](site/index.html)" in readme and (published / "site" / "index.html").is_file()


def test_publishing_from_a_dirty_checkout_warns_and_says_so_on_the_page(
    grid_run: GridRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
):
    dirty = {"commit": "0" * 40, "dirty": "yes (3 changed or untracked file(s))"}
    monkeypatch.setattr(publish_module, "git_state", lambda: dirty)
    with caplog.at_level(logging.WARNING, logger=publish_module.__name__):
        leaderboard(grid_run.store, "--publish", str(tmp_path / "pages"))
    assert "uncommitted changes (3 changed or untracked file(s))" in caplog.text
    assert "commit first" in caplog.text
    readme = (tmp_path / "pages" / "procedural-ci" / "README.md").read_text()
    assert "dirty tree: yes (3 changed or untracked file(s))" in readme


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
    assert re.search(r"scipy [\d.]+, statsmodels [\d.]+, pandas [\d.]+", readme)


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


def test_a_narrow_terminal_folds_names_never_a_score(grid_run: GridRun):
    cell = re.compile(r"-?\d+\.\d{3}±\d+\.\d{3}")
    wide = cell.findall(leaderboard(grid_run.store))
    narrow = CliRunner(env={"COLUMNS": "72"}).invoke(
        main, ["leaderboard", *GRID, "--results", str(grid_run.store)]
    )
    assert narrow.exit_code == 0, narrow.output
    assert wide and cell.findall(narrow.stdout) == wide


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
    # The copy has no students/ folder: the site says which clips it cannot play.
    site = (pages / "procedural-ci" / "site" / "index.html").read_text()
    assert "Not playable here" in site
    assert site.count("no checkpoint at") == 2  # none and cosine; the teacher is cached
    assert "incomplete: 1/2 seeds" in site


def site_page(published: Path) -> str:
    return (published / "site" / "index.html").read_text()


def test_site_shows_the_pages_numbers(grid_run: GridRun, published: Path):
    html = site_page(published)
    results = pd.read_csv(published / "results.csv")
    cell = results[(results["method"] == "cosine") & (results["metric"] == "stoi")].iloc[0]
    assert f'data-sort="{cell["mean"]}"' in html
    assert f'data-sort="{cell["ci_low_none"]}"' in html
    differences = (pd.Series(per_seed_means(grid_run.store, "cosine", "stoi"))
                   - pd.Series(per_seed_means(grid_run.store, "none", "stoi")))
    assert cell["ci_low_none"] < differences.mean() < cell["ci_high_none"]
    for metric in METRICS:
        for kind in ("forest", "cost"):
            svg = (published / "site" / "plots" / f"{kind}-{metric}.svg").read_text()
            assert svg.lstrip().startswith("<?xml") and "<svg" in svg
            assert f'src="plots/{kind}-{metric}.svg"' in html
    assert "http://" not in html.replace("http://www.w3.org", "")
    assert "https://" not in html
    assert "Provenance" in html and METHODOLOGY in html


def test_site_plays_the_scored_students(grid_run: GridRun, published: Path):
    """Every clip of a trial was recomputed from its checkpoint and scored as stored."""
    html = site_page(published)
    audio = sorted((published / "site" / "audio").glob("*.mp3"))
    assert audio and html.count("<audio ") == len(audio)
    for clip in audio:
        head = clip.read_bytes()[:3]
        assert head == b"ID3" or head[0] == 0xFF, clip
        assert clip.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    examples = html.count('<article class="example">')
    assert examples >= 1
    # Per example: clean reference, noisy input, teacher, none, cosine.
    assert len(audio) == 5 * examples
    assert html.count('title="recomputed = stored"') == 4 * examples
    assert "differs from the stored scores" not in html
    assert "Not playable here" not in html
    for method in ("none", "cosine"):  # two seeds: the lower one is the median
        seed, value = min(per_seed_means(grid_run.store, method, "pesq_wb").items(),
                          key=lambda item: (item[1], item[0]))
        assert f"seed {seed}: median pesq_wb over seeds ({value:.3f})" in html
    size = sum(path.stat().st_size for path in (published / "site").rglob("*"))
    assert size < 2_000_000


def test_site_keeps_its_bytes_when_republished(grid_run: GridRun, published: Path, tmp_path: Path):
    leaderboard(grid_run.store, "--publish", str(tmp_path))
    again = tmp_path / "procedural-ci" / "site"
    for path in (published / "site").rglob("*"):
        if path.is_file() and path.name != "index.html":  # the page carries the date
            assert (again / path.relative_to(published / "site")).read_bytes() == path.read_bytes(), path


def test_publish_options_are_checked(grid_run: GridRun, tmp_path: Path):
    result = CliRunner().invoke(main, [
        "leaderboard", *GRID, "--results", str(grid_run.store), "--publish", str(tmp_path),
        "--audio-pair", "depth",
    ])
    assert result.exit_code == 2 and "--audio-pair depth" in result.output and "width" in result.output
    result = CliRunner().invoke(main, [
        "leaderboard", *GRID, "--results", str(grid_run.store), "--audio-pair", "width",
    ])
    assert result.exit_code == 2 and "go with --publish" in result.output
    claims = tmp_path / "claims.md"
    claims.write_text("| claim | verdict |\n|---|---|\n| cosine helps | cannot decide |\n\n"
                      "See [the notes](notes.md) and [above](#claims).\n")
    leaderboard(grid_run.store, "--publish", str(tmp_path), "--claims", str(claims))
    html = (tmp_path / "procedural-ci" / "site" / "index.html").read_text()
    assert '<section id="claims">' in html and "<td>cannot decide</td>" in html
    # The site is two folders below the claims file: its relative links follow it there.
    assert '<a href="../../notes.md">the notes</a>' in html and '<a href="#claims">' in html


_PAGE_STATE = """(async () => {
  await Promise.all(Array.from(document.images).map(i => i.decode().catch(() => null)));
  const clips = Array.from(document.querySelectorAll("audio"));
  await Promise.all(clips.map(a => a.readyState >= 1 ? null : new Promise(done => {
    a.addEventListener("loadedmetadata", done, {once: true});
    a.addEventListener("error", done, {once: true});
    setTimeout(done, 15000);
  })));
  const images = Array.from(document.images);
  return {
    tables: Object.fromEntries(Array.from(document.querySelectorAll("table.sortable"))
      .map(t => [t.id, t.tBodies[0].rows.length])),
    images: images.length,
    broken: images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src),
    svgs: images.filter(i => i.src.endsWith(".svg") && i.naturalWidth > 300).length,
    audio: clips.map(a => ({ready: a.readyState, error: a.error && a.error.code,
                            seconds: a.duration})),
    mp3: document.createElement("audio").canPlayType("audio/mpeg"),
  };
})()"""

_SORT = """(() => {
  const table = document.getElementById("results");
  const headers = Array.from(table.tHead.rows[0].cells);
  const column = headers.findIndex(h => h.textContent.startsWith("Δ vs"));
  const values = () => Array.from(table.tBodies[0].rows).map(r => r.cells[column].dataset.sort);
  headers[column].click();
  const up = values();
  const upMark = headers[column].getAttribute("aria-sort");
  headers[column].click();
  return {up: up, upMark: upMark, down: values(),
          downMark: headers[column].getAttribute("aria-sort")};
})()"""

_FILTER = """(() => {
  const bar = document.querySelector('[data-filters-for="results"]');
  const select = Array.from(bar.querySelectorAll("select"))
    .find(s => s.parentElement.textContent.startsWith("metric"));
  select.value = "stoi";
  select.dispatchEvent(new Event("input"));
  const rows = Array.from(document.getElementById("results").tBodies[0].rows);
  return {shown: rows.filter(r => !r.hidden).map(r => r.cells[3].textContent),
          count: bar.querySelector(".count").textContent};
})()"""


def test_site_works_in_a_real_browser(published: Path):
    """Chromium opens the site from disk: tables, plots and audio render, sorting and
    filtering work, nothing is logged as an error and nothing leaves the disk."""
    from browser import Browser, find_chromium

    binary = find_chromium()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run the browser test but finds no chromium; tox's "
                        "commands_pre (.ci/chromium) installs it as root")
        pytest.skip("no chromium on PATH: `apt-get install chromium` (tox does it when root) "
                    "or set KDBENCH_CHROMIUM to run the browser test")
    results = pd.read_csv(published / "results.csv")
    clips = len(list((published / "site" / "audio").glob("*.mp3")))
    with Browser(binary) as browser:
        browser.open((published / "site" / "index.html").as_uri())
        state = browser.evaluate(_PAGE_STATE)
        assert state["tables"] == {"results": len(results), "across": 3 * 2, "ranks": 3 * 2}
        assert state["broken"] == []
        assert state["svgs"] == 2 * len(METRICS) + 1  # forest and cost per metric, pooled
        assert state["images"] == 2 * len(METRICS) + 1 + clips
        assert state["mp3"] in ("probably", "maybe")
        assert len(state["audio"]) == clips
        assert all(a["ready"] >= 1 and a["error"] is None and a["seconds"] > 0.5
                   for a in state["audio"]), state["audio"]
        order = browser.evaluate(_SORT)
        numbers = [float(v) for v in order["up"] if v != ""]
        assert numbers == sorted(numbers) and order["upMark"] == "ascending"
        down = [float(v) for v in order["down"] if v != ""]
        assert down == sorted(numbers, reverse=True) and order["downMark"] == "descending"
        assert order["up"][-1] == order["down"][-1] == ""  # undefined cells stay last
        filtered = browser.evaluate(_FILTER)
        expected = int((results["metric"] == "stoi").sum())
        assert filtered["shown"] == ["stoi"] * expected
        assert filtered["count"] == f"{expected} of {len(results)} rows"
        assert browser.problems() == []
        requests = browser.requests()
        assert requests and all(url.startswith(("file://", "data:")) for url in requests), requests


def test_a_page_rerendered_from_its_export_shows_the_same_numbers(
    grid_run: GridRun, published: Path, tmp_path: Path
):
    """Without per-utterance scores: per-pair tests carried over, the rest recomputed from
    the per-seed means, and the tables come out the same."""
    leaderboard(grid_run.store, "--from-export", str(published), "--publish", str(tmp_path))
    again = tmp_path / "procedural-ci"
    before = (published / "README.md").read_text().split("## Provenance")[0]
    assert (again / "README.md").read_text().split("## Provenance")[0] == before
    assert (again / "results.csv").read_bytes() == (published / "results.csv").read_bytes()
    assert "**source**: re-rendered from the export" in (again / "README.md").read_text()
    key = ["metric", "method", "reference"]
    ours = pd.read_csv(again / "across_pairs.csv").sort_values(key).reset_index(drop=True)
    theirs = pd.read_csv(published / "across_pairs.csv").sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(ours, theirs, rtol=1e-12)
    assert site_page(again).count('title="recomputed = stored"') == site_page(published).count(
        'title="recomputed = stored"')


def test_an_export_of_another_grid_is_refused(grid_run: GridRun, published: Path, tmp_path: Path):
    export = tmp_path / "export"
    export.mkdir()
    for name in ("results.csv", "across_pairs.csv"):
        (export / name).write_bytes((published / name).read_bytes())
    trials = pd.read_csv(published / "trials.csv")
    trials.loc[trials["role"] == "student", "id"] = "0123456789abcdef"
    trials.to_csv(export / "trials.csv", index=False)
    result = CliRunner().invoke(main, ["leaderboard", *GRID, "--results", str(grid_run.store),
                                       "--from-export", str(export)])
    assert result.exit_code != 0 and "not in this grid" in result.output
    assert "trials.csv" in result.output


def test_the_site_never_plays_a_trial_other_than_the_pages(
    grid_run: GridRun, published: Path, tmp_path: Path
):
    """A store whose teacher scores differ from the page's (a re-run elsewhere) is not played."""
    export = tmp_path / "export"
    export.mkdir()
    for name in ("results.csv", "across_pairs.csv"):
        (export / name).write_bytes((published / name).read_bytes())
    trials = pd.read_csv(published / "trials.csv")
    trials.loc[trials["role"] == "teacher", "stoi"] += 0.01
    trials.to_csv(export / "trials.csv", index=False)
    leaderboard(grid_run.store, "--from-export", str(export), "--publish", str(tmp_path / "out"))
    html = (tmp_path / "out" / "procedural-ci" / "site" / "index.html").read_text()
    assert "teacher: trial" in html and "not the page&#x27;s trial" in html
    examples = html.count('<article class="example">')
    assert examples >= 1 and html.count('title="recomputed = stored"') == 3 * examples
