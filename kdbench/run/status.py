"""Where a grid stands, per cell (dataset, pair, method): what is done, running, failed,
pending or not applicable, and why trials failed — read from the store, nothing is run.

A trial is "running" while a `running` note exists for it and its process is alive; a note
whose process is gone from this host is "interrupted" (its run was killed; a rerun will
pick it up). A note written on another host (a Ray cluster node) cannot be checked from
here and counts as running.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from kdbench.run import platform
from kdbench.run.grid import Grid
from kdbench.run.store import Store
from kdbench.run.trial import StudentTrial, TeacherTrial, Trial

STATES = ("done", "running", "interrupted", "failed", "pending", "not_applicable")
HEADERS = {"not_applicable": "n/a"}


@dataclasses.dataclass
class GridStatus:
    """Counts of trial states per cell, and the failed trials with their reasons."""

    cells: dict[tuple[str, str, str], Counter[str]]
    failures: list[tuple[Trial, str]]
    interrupted: list[Trial]
    platforms: dict[tuple[str, str, str], Counter[str]] = dataclasses.field(default_factory=dict)
    """Per cell, how many of its recorded trials ran on each numeric platform (a label)."""

    def totals(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for counts in self.cells.values():
            total.update(counts)
        return total


def _cell(trial: Trial) -> tuple[str, str, str]:
    if isinstance(trial, StudentTrial):
        return trial.dataset, trial.pair, trial.method
    if isinstance(trial, TeacherTrial):
        family = trial.teacher_spec.get("family", "?")
        return trial.dataset, "anchor", f"teacher {family} {trial.id[:6]}"
    return trial.dataset, "anchor", "noisy input"


def grid_status(grid: Grid, store: Store) -> GridStatus:
    """The state of every trial of `grid`: a recorded outcome wins over a stale note."""
    ids = [trial.id for trial in grid.trials]
    statuses = store.statuses(ids)
    rows = store.trials().set_index("id") if statuses else None
    running = store.running().set_index("trial_id")
    status = GridStatus(cells={}, failures=[], interrupted=[])
    for trial in grid.trials:
        recorded = statuses.get(trial.id)
        state = recorded or "pending"
        if recorded not in ("done", "not_applicable") and trial.id in running.index:
            alive = running.at[trial.id, "alive"]
            state = "interrupted" if alive is not None and not alive else "running"
        status.cells.setdefault(_cell(trial), Counter())[state] += 1
        if rows is not None and recorded and isinstance(rows.at[trial.id, "platform"], str):
            where = platform.label(rows.at[trial.id, "details"].get("platform", {}))
            status.platforms.setdefault(_cell(trial), Counter())[where] += 1
        if state == "failed" and rows is not None:
            status.failures.append((trial, str(rows.at[trial.id, "error"])))
        elif state == "interrupted":
            status.interrupted.append(trial)
    return status


def render_status(status: GridStatus, console: Console) -> None:
    """One table per dataset (a cell per row, a column per state), then the reasons."""
    for dataset in dict.fromkeys(dataset for dataset, _, _ in status.cells):
        table = Table(title=f"kdbench status — {dataset}")
        table.add_column("pair")
        table.add_column("method")
        for state in STATES:
            table.add_column(HEADERS.get(state, state), justify="right", no_wrap=True)
        table.add_column("numeric platforms")
        totals: Counter[str] = Counter()
        for cell, counts in status.cells.items():
            cell_dataset, pair, method = cell
            if cell_dataset == dataset:
                totals += counts
                found = status.platforms.get(cell, Counter())
                where = "; ".join(f"{label} ×{n}" for label, n in found.items())
                if len(found) > 1:
                    where = f"[yellow]mixed: {where}[/yellow]"
                table.add_row(
                    pair, method, *(str(counts[state] or "") for state in STATES), where
                )
        table.add_section()
        table.add_row("all", "", *(str(totals[state]) for state in STATES), "")
        console.print(table)
    if status.failures:
        console.print("[bold red]failed[/bold red] (rerun with --retry-failed):")
        for trial, reason in status.failures:
            console.print(f"  {escape(trial.label())} [dim]{trial.id[:12]}[/dim]: {escape(reason)}")
    if status.interrupted:
        console.print("[bold yellow]interrupted[/bold yellow] (a rerun picks them up):")
        for trial in status.interrupted:
            console.print(f"  {escape(trial.label())} [dim]{trial.id[:12]}[/dim]")
