"""The leaderboard of one grid: what the store holds for exactly that grid's trial ids.

Reading by id, never by (pair, method, seed) alone, means rows made with another config
can never be mixed in; trials the grid expects but the store lacks make their cell
incomplete, shown as such rather than silently averaged.
"""

from __future__ import annotations

import dataclasses
import math

import pandas as pd
from rich.console import Console
from rich.table import Table

from kdbench import stats
from kdbench.config import Config
from kdbench.grid import Grid
from kdbench.registry import get_registry
from kdbench.store import Store


@dataclasses.dataclass
class LeaderboardData:
    """Everything a table needs, gathered once from the store."""

    grid: Grid
    config: Config
    trials: pd.DataFrame
    scores: pd.DataFrame
    references: pd.DataFrame
    summary: pd.DataFrame
    higher_is_better: dict[str, bool]
    reference_methods: list[str]
    student_size: dict[tuple[str, str], dict[str, float]]
    teacher_size: dict[str, float]
    missing: dict[tuple[str, str, str], int]


def _reference_methods(grid: Grid, config: Config) -> list[str]:
    wanted = [*config.run["controls"], config.run["baseline"]]
    return [name for name in dict.fromkeys(wanted) if name in grid.methods]


def collect(grid: Grid, store: Store, config: Config) -> LeaderboardData:
    registry = get_registry()
    metrics = list(config.run["metrics"])
    higher = {name: registry.get("metrics", name).higher_is_better for name in metrics}
    trials = store.trials(ds.identity for ds in grid.datasets.values())
    wanted = {trial.id for trial in grid.trials}
    trials = trials[trials["id"].isin(wanted)].reset_index(drop=True)
    done = trials[trials["status"] == "done"]
    scores = store.scores(done["id"])
    scores = scores[scores["metric"].isin(metrics)]
    merged = scores.merge(
        done[["id", "role", "dataset", "pair", "method", "seed"]],
        left_on="trial_id",
        right_on="id",
    )
    students = merged[merged["role"] == "student"]
    student_scores = students[["dataset", "pair", "method", "seed", "utterance", "metric", "value"]]
    student_scores = student_scores.astype({"seed": int})
    references = (
        merged[merged["role"] != "student"]
        .groupby(["dataset", "role", "metric"])["value"]
        .agg(["mean", "std", "count"])
        .reset_index()
    )
    reference_methods = _reference_methods(grid, config)
    summary = (
        stats.summarize(student_scores, higher, references=reference_methods, expected_seeds=grid.seeds)
        if len(student_scores)
        else pd.DataFrame()
    )
    student_size = {
        (row.pair, row.method): row.model for row in done[done["role"] == "student"].itertuples()
    }
    teacher_rows = done[done["role"] == "teacher"]
    teacher_size = teacher_rows.iloc[0]["model"] if len(teacher_rows) else {}
    present = set(done["id"])
    missing: dict[tuple[str, str, str], int] = {}
    for trial in grid.students:
        if trial.id not in present:
            key = (trial.dataset, trial.pair or "", trial.method or "")
            missing[key] = missing.get(key, 0) + 1
    return LeaderboardData(
        grid, config, trials, student_scores, references, summary, higher,
        reference_methods, student_size, teacher_size, missing,
    )


def significance_mark(p: float) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return ""
    return "**" if p < 0.01 else "*" if p < 0.05 else ""


def _format_params(count: float | None) -> str:
    if not count:
        return "—"
    return f"{count / 1e3:.1f}k" if count < 1e6 else f"{count / 1e6:.2f}M"


def render_terminal(data: LeaderboardData, console: Console) -> None:
    """One rich table per dataset: pairs × methods, mean ± std and Δ to the first control."""
    metrics = list(data.config.run["metrics"])
    control = data.reference_methods[0] if data.reference_methods else None
    for dataset in data.grid.datasets:
        table = Table(title=f"kdbench leaderboard — {dataset} ({data.grid.datasets[dataset].identity})")
        table.add_column("pair")
        table.add_column("method")
        table.add_column("params", justify="right")
        for metric in metrics:
            arrow = "↑" if data.higher_is_better[metric] else "↓"
            table.add_column(f"{metric} {arrow}", justify="right")
            if control:
                table.add_column(f"Δ {control}", justify="right")
        refs = data.references[data.references["dataset"] == dataset]
        for role, label in (("noisy", "noisy input"), ("teacher", "teacher")):
            cells = []
            for metric in metrics:
                row = refs[(refs["role"] == role) & (refs["metric"] == metric)]
                cells.append(f"{row['mean'].iloc[0]:.3f}" if len(row) else "—")
                if control:
                    cells.append("")
            size = _format_params(data.teacher_size.get("params")) if role == "teacher" else "—"
            table.add_row("[dim]reference[/dim]", f"[dim]{label}[/dim]", size, *cells)
        summary = data.summary
        for pair in data.grid.pairs:
            table.add_section()
            for method in data.grid.methods:
                cells = []
                for metric in metrics:
                    row = (
                        summary[
                            (summary["dataset"] == dataset)
                            & (summary["pair"] == pair)
                            & (summary["method"] == method)
                            & (summary["metric"] == metric)
                        ]
                        if len(summary)
                        else summary
                    )
                    if not len(row):
                        cells.append("[dim]pending[/dim]")
                        if control:
                            cells.append("")
                        continue
                    row = row.iloc[0]
                    text = f"{row['mean']:.3f} ± {0.0 if math.isnan(row['std']) else row['std']:.3f}"
                    if not row["complete"]:
                        text += " [yellow](incomplete)[/yellow]"
                    cells.append(text)
                    if control and method != control and f"delta_{control}" in row:
                        delta = row[f"delta_{control}"]
                        mark = significance_mark(row[f"p_holm_{control}"])
                        cells.append("" if math.isnan(delta) else f"{delta:+.3f}{mark}")
                    elif control:
                        cells.append("")
                missing = data.missing.get((dataset, pair, method), 0)
                label = method + (f" [yellow]({missing} missing)[/yellow]" if missing else "")
                size = _format_params(data.student_size.get((pair, method), {}).get("params"))
                table.add_row(pair, label, size, *cells)
        console.print(table)
    seeds = len(data.grid.seeds)
    console.print(
        f"[dim]mean ± std over {seeds} seed(s). Δ = method − {control}; "
        "* p<0.05, ** p<0.01: Wilcoxon signed-rank on per-utterance differences paired by "
        "(seed, utterance), Holm-corrected per table.[/dim]"
    )
    warning = stats.seed_count_warning(seeds)
    if warning:
        console.print(f"[dim]{warning}[/dim]")
