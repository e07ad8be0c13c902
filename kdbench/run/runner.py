"""Runs a grid: skips finished trials, runs the anchors (noisy input, teachers) before students, records as it goes.

Each outcome is written to the store the moment it arrives, so a killed run loses only the
trials in flight; a rerun computes the same ids and skips what is already there.

While trials run, one live view shows the grid (trials done, ETA) and a bar of training
steps for each trial in flight. Workers report through their executor (see
`kdbench.api.executors`); the reports arrive on the driver's thread, which also notes each
started trial in the store's `running` table for `kdbench status`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from kdbench.api import Executor
from kdbench.api.executors import Event, ReportingExecutor, Started, Step
from kdbench.run import platform
from kdbench.run.grid import Grid
from kdbench.run.store import FINAL_STATUSES, Store
from kdbench.run.trial import Outcome, Trial, execute


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
    """What is left to do: trials the store lacks (or failed, with `retry_failed`), and
    finished trials still to be scored on a test set added since they ran."""
    statuses = store.statuses(trial.id for trial in trials)
    done = [trial for trial in trials if statuses.get(trial.id) == "done" and trial.test_sets]
    scored = store.test_sets_scored(trial.id for trial in done)
    keep = []
    for trial in trials:
        status = statuses.get(trial.id)
        if status == "done" and trial.test_sets:
            missing = tuple(
                test.name for test in trial.test_sets if test.name not in scored.get(trial.id, set())
            )
            if missing:
                keep.append(dataclasses.replace(trial, score_only=missing))
            continue
        if status in FINAL_STATUSES or (status == "failed" and not retry_failed):
            continue
        keep.append(trial)
    return keep


class LiveView:
    """The grid's progress and a step bar per trial in flight, fed by worker reports."""

    def __init__(self, console: Console, store: Store, total: int) -> None:
        self.store = store
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.overall = self.progress.add_task("trials", total=total)
        self.bars: dict[str, TaskID] = {}

    def __enter__(self) -> LiveView:
        self.progress.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        for task in self.bars.values():
            self.progress.remove_task(task)
        self.progress.stop()
        if self.bars:  # interrupted: these will not be recorded by this driver
            self.store.clear_running(self.bars)
        self.bars.clear()

    def stage(self, name: str) -> None:
        self.progress.update(self.overall, description=f"trials ({name})")

    def report(self, trial: Trial, event: Event) -> None:
        """A worker's report; late reports of a trial already recorded are dropped."""
        if isinstance(event, Started):
            if trial.id not in self.bars:
                self.bars[trial.id] = self.progress.add_task(
                    f"  {escape(trial.label())}", total=None
                )
            self.store.mark_running(trial.id, event.pid, event.host, event.time)
        elif isinstance(event, Step) and trial.id in self.bars:
            self.progress.update(self.bars[trial.id], total=event.total, completed=event.step)

    def finished(self, outcome: Outcome) -> None:
        task = self.bars.pop(outcome.trial.id, None)
        if task is not None:
            self.progress.remove_task(task)
        label, error = escape(outcome.trial.label()), escape(str(outcome.error))
        if outcome.status == "failed":
            self.progress.console.print(f"[red]failed[/red] {label}: {error}")
        elif outcome.status == "not_applicable":
            self.progress.console.print(f"[yellow]not applicable[/yellow] {label}: {error}")
        else:
            seconds = outcome.finished - outcome.started
            self.progress.console.print(f"[green]done[/green] {label} [dim]({seconds:.0f} s)[/dim]")
        self.progress.advance(self.overall)


def _outcomes(
    executor: Executor,
    trials: Sequence[Trial],
    jobs: int,
    params: Mapping[str, Any],
    view: LiveView,
) -> Iterator[Outcome]:
    if isinstance(executor, ReportingExecutor):
        return executor.run_reporting(execute, trials, jobs, params, lost_trial, view.report)
    return executor.run(execute, trials, jobs, params, lost_trial)


def _say_which_platforms_are_reused(grid: Grid, store: Store, console: Console) -> None:
    """Finished trials are reused whatever platform made them (the platform is provenance,
    not identity: see `kdbench.run.platform`); say so when some were made elsewhere, since
    a cell that mixes platforms mixes last bits. Each is compared with what the same trial
    would record here, with the torch threads the grid gives it: the parent process's own
    thread count is not a trial's."""
    trials = store.trials(dataset_identities={trial.dataset_identity for trial in grid.trials})
    by_id = {trial.id: trial for trial in grid.trials}
    made = trials[trials["id"].isin(by_id) & trials["platform"].notna()]
    threads = made["id"].map(lambda trial_id: by_id[trial_id].torch_threads)
    here = {count: platform.describe("cpu", threads=count) for count in set(threads)}
    elsewhere = made[made["platform"] != threads.map(lambda count: here[count]["fingerprint"])]
    if len(elsewhere):
        labels = sorted({platform.label(d.get("platform", {})) for d in elsewhere["details"]})
        ours = sorted({platform.label(here[count]) for count in threads[elsewhere.index]})
        console.print(
            f"[yellow]{len(elsewhere)} of the skipped trial(s) were made on another numeric "
            f"platform[/yellow] ({'; '.join(labels)}), not this one ({'; '.join(ours)}). "
            "They are reused: the platform is recorded with each trial but is not part of its "
            "id. The leaderboard flags cells that mix platforms; for this machine's own "
            "numbers, run into a fresh store (--results)."
        )


def run_grid(
    grid: Grid,
    store: Store,
    executor: Executor,
    executor_params: Mapping[str, Any],
    jobs: int,
    retry_failed: bool = False,
    console: Console | None = None,
) -> RunReport:
    """Run what the store does not already hold, recording each outcome as it arrives."""
    console = console or Console(stderr=True)
    for warning in grid.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}")
    report = RunReport()
    started = time.perf_counter()
    stages = [
        ("anchors", pending(grid.anchors, store, retry_failed)),
        ("students", pending(grid.students, store, retry_failed)),
    ]
    todo = sum(len(trials) for _, trials in stages)
    report.skipped = len(grid.trials) - todo
    if todo:
        executor.check([trial for _, trials in stages for trial in trials], jobs, executor_params)
    if report.skipped:
        console.print(
            f"[dim]{report.skipped} trial(s) already in {escape(str(store.path))}: skipped[/dim]"
        )
        _say_which_platforms_are_reused(grid, store, console)
    with LiveView(console, store, todo) as view:
        for stage, trials in stages:
            if not trials:
                continue
            view.stage(stage)
            for outcome in _outcomes(executor, trials, jobs, executor_params, view):
                if not outcome.trial.score_only:
                    store.record(outcome)
                elif outcome.status == "done":
                    store.add_scores(outcome)
                else:  # the trial stays done; only its scoring on the new test set failed
                    store.clear_running([outcome.trial.id])
                view.finished(outcome)
                report.ran += 1
                if outcome.status == "failed":
                    report.failed.append(outcome)
                elif outcome.status == "not_applicable":
                    report.not_applicable.append(outcome)
    report.seconds = time.perf_counter() - started
    return report
