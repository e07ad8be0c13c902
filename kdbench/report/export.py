"""A published page's own export, read back as the leaderboard of its grid.

A page ships the numbers it was computed from (`trials.csv`: one row per trial with its
per-seed means; `results.csv`: every cell's statistics; `across_pairs.csv`). When the
store is gone, that is enough to render the page again with newer presentation code,
and nothing has to be recomputed that needs per-utterance scores: those statistics (the
per-pair Wilcoxon p, Holm, Cliff's delta) are carried over from `results.csv` as
published. What is recomputed needs only per-seed means, which `trials.csv` holds exactly:
the across-pairs test, the seed-level confidence intervals and the ranks; the teacher-level
comparison and the variance shares are carried over from their CSV files. The
recomputed across-pairs table must equal the published one, a check that the export is
whole and read right.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from kdbench.config import Config
from kdbench.errors import KdbenchError
from kdbench.plugin.registry import get_registry
from kdbench.report import hierarchy, stats
from kdbench.report.leaderboard import (
    LeaderboardData,
    blocks_of,
    control_and_baseline,
    mismatch_levels,
    missing_trials,
)
from kdbench.run.grid import Grid, teacher_seed_of

EXPORT_FILES = ("trials.csv", "results.csv", "across_pairs.csv")
PER_SEED_UTTERANCE = "(per-seed mean)"
"""The `utterance` of a score row that stands for a whole trial's mean."""

_TOLERANCE = 1e-9


def _read(directory: Path, name: str) -> pd.DataFrame:
    path = directory / name
    try:
        return pd.read_csv(path, keep_default_na=True)
    except FileNotFoundError:
        raise KdbenchError(
            f"{path}: missing; a page's export is {', '.join(EXPORT_FILES)}"
        ) from None


CARRIED_FILES = {
    "teacher_level.csv": ("teacher_level", hierarchy.COMPARISON_COLUMNS),
    "variance_components.csv": ("variance", hierarchy.VARIANCE_COLUMNS),
}
"""Statistics that need per-utterance scores, carried over as published like results.csv's
per-pair tests; an export from before they were written gives empty tables."""


def _carried(directory: Path) -> dict[str, pd.DataFrame]:
    carried = {}
    for name, (field, columns) in CARRIED_FILES.items():
        path = directory / name
        carried[field] = (
            pd.read_csv(path) if path.is_file()
            else pd.DataFrame(columns=["dataset", "test_set", *columns])
        )
    return carried


def read_export(directory: Path, grid: Grid, config: Config) -> LeaderboardData:
    """The leaderboard of `grid` from the export in `directory` (a published page's folder).

    The export must be of this grid: its trial ids are the grid's ids, else the error names
    the ones that differ.
    """
    directory = Path(directory)
    trials = _read(directory, "trials.csv")
    results = _read(directory, "results.csv")
    published_across = _read(directory, "across_pairs.csv")
    expected = {trial.id for trial in grid.trials}
    foreign = sorted(set(trials["id"]) - expected)
    if foreign:
        raise KdbenchError(
            f"{directory / 'trials.csv'}: {len(foreign)} trial id(s) not in this grid "
            f"(e.g. {', '.join(foreign[:3])}); give the grid options the page was made with"
        )
    registry = get_registry()
    metrics = list(config.run["metrics"])
    higher = {name: registry.get("metrics", name).higher_is_better for name in metrics}
    control, baseline = control_and_baseline(grid, config)
    comparisons = [ref for ref in dict.fromkeys([control, baseline]) if ref]
    done = trials[trials["status"] == "done"]
    students = done[done["role"] == "student"]
    scores = students.melt(
        id_vars=["dataset", "pair", "method", "seed"], value_vars=metrics,
        var_name="metric", value_name="value",
    ).assign(utterance=PER_SEED_UTTERANCE).astype({"seed": int})
    scores = scores.assign(test_set=scores["dataset"], teacher=[
        teacher_seed_of(seed, config.teacher["seeds"]) for seed in scores["seed"]
    ])
    scores = scores[
        ["dataset", "test_set", "pair", "method", "teacher", "seed", "utterance", "metric", "value"]
    ]
    mismatch = mismatch_levels(grid.pairs)
    across = stats.across_pairs(scores, higher, references=comparisons, mismatch=mismatch)
    _check_across(across, published_across, directory)
    summary = _summary(results, scores, comparisons)
    n_test = {name: len(prepared.splits["test"]) for name, prepared in grid.datasets.items()}
    anchors = results[results["role"] != "student"]
    # Exports written before the teacher spread was recorded have no such columns.
    anchors = anchors.reindex(
        columns=["dataset", "role", "metric", "mean", "std", "n_trials", "std_over_trials"]
    )
    anchors = anchors.assign(count=anchors["dataset"].map(n_test)).reset_index(drop=True)
    teacher = done[done["role"] == "teacher"]
    return LeaderboardData(
        grid=grid,
        config=config,
        trials=_trial_rows(trials),
        scores=scores,
        anchors=anchors,
        summary=summary,
        ranks=stats.rank_summary(summary, higher, references=comparisons),
        across_pairs=across,
        mismatch=mismatch,
        higher_is_better=higher,
        reference_methods=comparisons,
        control=control,
        baseline=baseline,
        student_size={(row.pair, row.method): _size(row) for row in students.itertuples()},
        teacher_size=_size(next(teacher.itertuples())) if len(teacher) else {},
        missing=missing_trials(grid, set(done["id"])),
        undefined=_undefined(results, done, n_test, metrics),
        trial_means=done.set_index(["id", "dataset"])[metrics],
        datasets=list(grid.datasets),
        pairs=list(grid.pairs),
        methods=list(grid.methods),
        metrics=metrics,
        blocks={name: block for name, block in blocks_of(grid).items() if name in grid.datasets},
        **_carried(directory),
    )


def _size(row: object) -> dict[str, float]:
    return {key: float(getattr(row, key)) for key in ("params", "macs_per_second")
            if not math.isnan(getattr(row, key))}


def _trial_rows(trials: pd.DataFrame) -> pd.DataFrame:
    """Rows shaped like `Store.trials()`: what the export keeps of a trial's record."""
    rows = trials.copy()
    rows["model"] = [_size(row) for row in trials.itertuples()]
    rows["details"] = [{} for _ in range(len(rows))]
    rows["started"] = 0.0
    rows["finished"] = rows["seconds"].fillna(0.0)
    rows["error"] = rows["error"].where(rows["error"].notna(), None)
    for column in ("teacher_seed", "platform"):  # exports from before kdbench recorded them
        if column not in rows:
            rows[column] = None
    return rows


def _summary(results: pd.DataFrame, scores: pd.DataFrame, refs: list[str]) -> pd.DataFrame:
    """The published cells, with their seed-level confidence intervals added."""
    cells = results[results["role"] == "student"].drop(
        columns=["role", "params", "macs_per_second", "expected_seeds", "missing_trials"]
    ).reset_index(drop=True)
    cells["complete"] = cells["complete"].astype(bool)
    cells["seeds_missing"] = [() for _ in range(len(cells))]
    per_seed = scores.pivot_table(index=["dataset", "pair", "metric", "seed"], columns="method",
                                  values="value")
    for ref in refs:
        lows, highs = [], []
        for cell in cells.itertuples():
            key = (cell.dataset, cell.pair, cell.metric)
            if cell.method == ref or key not in per_seed.index.droplevel("seed"):
                lows.append(math.nan)
                highs.append(math.nan)
                continue
            table = per_seed.loc[key]
            diff = (table[cell.method] - table[ref]).dropna().to_numpy()
            low, high = stats.mean_ci(diff)
            lows.append(low)
            highs.append(high)
        cells[f"ci_low_{ref}"], cells[f"ci_high_{ref}"] = lows, highs
        cells[f"better_{ref}"] = cells[f"better_{ref}"].astype("boolean")
    return cells


def _undefined(results: pd.DataFrame, done: pd.DataFrame, n_test: dict[str, int],
               metrics: list[str]) -> pd.DataFrame:
    """Undefined / scored counts per metric and role: every done trial scored the whole
    test split; the students' undefined counts are in the published cells, the references'
    are not exported and shown as 0 only where their means are defined."""
    rows = []
    for metric in metrics:
        for role in ("student", "noisy", "teacher"):
            trials = done[done["role"] == role]
            scored = int(sum(n_test.get(ds, 0) for ds in trials["dataset"]))
            chosen = results[(results["role"] == role) & (results["metric"] == metric)]
            if role == "student":
                undefined = int(chosen["n_undefined"].fillna(0).sum())
            else:
                undefined = 0 if chosen["mean"].notna().all() else scored
            rows.append({"metric": metric, "role": role, "n_undefined": undefined,
                         "n_scores": scored})
    return pd.DataFrame(rows)


def _check_across(ours: pd.DataFrame, published: pd.DataFrame, directory: Path) -> None:
    key = ["dataset", "metric", "method", "reference"]
    merged = ours.merge(published, on=key, suffixes=("", "_published"), how="outer",
                        indicator=True)
    for column in ("delta", "n_units", "n_better", "p_wilcoxon", "p_holm"):
        a = merged[column].to_numpy(dtype=float)
        b = merged[f"{column}_published"].to_numpy(dtype=float)
        if (merged["_merge"] != "both").any() or not np.allclose(
            a, b, rtol=_TOLERANCE, atol=_TOLERANCE, equal_nan=True
        ):
            raise KdbenchError(
                f"{directory / 'across_pairs.csv'}: the across-pairs test recomputed from "
                f"trials.csv differs from the published one ({column}); the export is not "
                "whole or not of this grid"
            )
