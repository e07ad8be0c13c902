"""Runs a grid: skips finished trials, runs references before students, records as it goes.

Each outcome is written to the store the moment it arrives, so a killed run loses only the
trials in flight; a rerun computes the same ids and skips what is already there.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from kdbench.api import Executor
from kdbench.grid import Grid
from kdbench.store import FINAL_STATUSES, Store
from kdbench.trial import Outcome, Trial, execute


@dataclasses.dataclass
class RunReport:
    ran: int = 0
    skipped: int = 0
    failed: list[Outcome] = dataclasses.field(default_factory=list)
    not_applicable: list[Outcome] = dataclasses.field(default_factory=list)
    seconds: float = 0.0


def lost_trial(trial: Trial, reason: str) -> Outcome:
    """The outcome of a trial its executor lost (a worker killed, a node gone)."""
    now = time.time()
    return Outcome(trial=trial, status="failed", error=reason, started=now, finished=now)


def pending(trials: Sequence[Trial], store: Store, retry_failed: bool) -> list[Trial]:
    statuses = store.statuses(trial.id for trial in trials)
    keep = []
    for trial in trials:
        status = statuses.get(trial.id)
        if status in FINAL_STATUSES or (status == "failed" and not retry_failed):
            continue
        keep.append(trial)
    return keep


def run_grid(
    grid: Grid,
    store: Store,
    executor: Executor,
    executor_params: dict,
    jobs: int,
    retry_failed: bool = False,
    console: Console | None = None,
) -> RunReport:
    console = console or Console(stderr=True)
    report = RunReport()
    started = time.perf_counter()
    stages = [
        ("references", pending(grid.references, store, retry_failed)),
        ("students", pending(grid.students, store, retry_failed)),
    ]
    todo = sum(len(trials) for _, trials in stages)
    report.skipped = len(grid.trials) - todo
    if report.skipped:
        console.print(f"[dim]{report.skipped} trial(s) already in {store.path}: skipped[/dim]")
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    ) as progress:
        overall = progress.add_task("trials", total=todo)
        for stage, trials in stages:
            if not trials:
                continue
            progress.update(overall, description=f"trials ({stage})")
            for outcome in executor.run(execute, trials, jobs, executor_params, lost_trial):
                store.record(outcome)
                report.ran += 1
                if outcome.status == "failed":
                    report.failed.append(outcome)
                    progress.console.print(
                        f"[red]failed[/red] {outcome.trial.label()}: {outcome.error}"
                    )
                elif outcome.status == "not_applicable":
                    report.not_applicable.append(outcome)
                    progress.console.print(
                        f"[yellow]not applicable[/yellow] {outcome.trial.label()}: {outcome.error}"
                    )
                else:
                    seconds = outcome.finished - outcome.started
                    progress.console.print(
                        f"[green]done[/green] {outcome.trial.label()} [dim]({seconds:.0f} s)[/dim]"
                    )
                progress.advance(overall)
    report.seconds = time.perf_counter() - started
    return report
