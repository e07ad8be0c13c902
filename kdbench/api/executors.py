"""The executor contract, what workers tell the driver while a trial runs (that it
started, where, and its steps), and how an item runs on a machine that does not share the
driver's disk.

An executor that can carry these reports implements `ReportingExecutor` (most simply by
subclassing `ProgressExecutor`); the runner then notes running trials in the store and
draws a bar per trial. Executors that implement only `Executor.run` still run the grid,
only without live progress or `running` notes.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from kdbench.api.params import Param
from kdbench.files.cache import cache_root, write_bytes_atomically


class Executor:
    """Runs trials somewhere and yields their outcomes as they finish.

    `work` is a picklable top-level function; an executor yields exactly one result per
    item, in any order. `work` already turns a trial's own exception into a failed result;
    when the executor itself loses an item (a worker process killed, a node gone), it
    yields `lost(item, reason)` instead, so the grid records that trial and goes on.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    params: ClassVar[Mapping[str, Param]] = {}

    def run(
        self,
        work: Callable[[Any], Any],
        items: Sequence[Any],
        jobs: int,
        params: Mapping[str, Any],
        lost: Callable[[Any, str], Any],
    ) -> Iterator[Any]:
        raise NotImplementedError

    def check(self, items: Sequence[Any], jobs: int, params: Mapping[str, Any]) -> None:
        """Refuse, before anything runs, what this executor cannot give the items (such as
        a device its machines lack), with an error the user can act on. Default: accept."""


OnStep = Callable[[int, int], None]


@dataclasses.dataclass(frozen=True)
class Started:
    """A worker began the trial: which process on which host, and when."""

    pid: int
    host: str
    time: float


@dataclasses.dataclass(frozen=True)
class Step:
    """Training reached `step` of `total`."""

    step: int
    total: int


Event = Started | Step
Report = Callable[[Any, Event], None]


def started_here() -> Started:
    return Started(pid=os.getpid(), host=socket.gethostname(), time=time.time())


def throttled(send: OnStep, interval: float) -> OnStep:
    """`send` at most every `interval` seconds, but always the first and the last step,
    so a fast trainer does not flood the channel and a bar still ends full."""
    last = -float("inf")

    def on_step(step: int, total: int) -> None:
        nonlocal last
        now = time.monotonic()
        if step <= 1 or step >= total or now - last >= interval:
            last = now
            send(step, total)

    return on_step


@runtime_checkable
class ReportingExecutor(Protocol):
    """An executor whose workers report `Started` and `Step` events for each item.

    `work` is called as `work(item, on_step)`; `report(item, event)` is called on the
    driver's thread (the one iterating the result), so it may use the driver's store.
    """

    def run_reporting(
        self,
        work: Callable[[Any, OnStep | None], Any],
        items: Sequence[Any],
        jobs: int,
        params: Mapping[str, Any],
        lost: Callable[[Any, str], Any],
        report: Report,
    ) -> Iterator[Any]: ...


def _ignore(item: Any, event: Event) -> None:
    """The report of a caller that asked for outcomes only."""


class _WithoutProgress:
    """Adapts a one-argument `work` to the (item, on_step) calling convention; a class,
    not a closure, so it pickles to spawned workers."""

    def __init__(self, work: Callable[[Any], Any]) -> None:
        self.work = work

    def __call__(self, item: Any, on_step: OnStep | None) -> Any:
        return self.work(item)


class ProgressExecutor(Executor):
    """An executor that implements `run_reporting`; its plain `run` is the same thing
    with progress ignored, so each executor writes its scheduling once."""

    def run(
        self,
        work: Callable[[Any], Any],
        items: Sequence[Any],
        jobs: int,
        params: Mapping[str, Any],
        lost: Callable[[Any, str], Any],
    ) -> Iterator[Any]:
        return self.run_reporting(_WithoutProgress(work), items, jobs, params, lost, _ignore)

    def run_reporting(
        self,
        work: Callable[[Any, OnStep | None], Any],
        items: Sequence[Any],
        jobs: int,
        params: Mapping[str, Any],
        lost: Callable[[Any, str], Any],
        report: Report,
    ) -> Iterator[Any]:
        raise NotImplementedError


@runtime_checkable
class NodePortable(Protocol):
    """An item that can run on a machine which does not see the driver's disk.

    `node_inputs` names the driver's files the item reads if they exist (a trained
    teacher: without it a node would train its own); `node_outputs` the files it leaves
    that the driver must keep (a student's weights); `on_node` is the same item keeping its
    caches and results under a node's own folders. An executor that runs items on other
    machines ships the inputs that exist, runs the item with `run_on_node` there, and gives
    the outputs to `adopt_outputs` on the driver.
    """

    def node_inputs(self) -> Mapping[str, Path]: ...

    def node_outputs(self) -> Mapping[str, Path]: ...

    def on_node(self, cache_dir: Path, results_dir: Path) -> Any: ...


def run_on_node(
    work: Callable[[Any, OnStep | None], Any],
    item: NodePortable,
    inputs: Mapping[str, bytes],
    on_step: OnStep | None,
) -> tuple[Any, dict[str, bytes]]:
    """On a node: run `item` under this machine's cache root (`KDBENCH_CACHE`) with its
    results in a temporary folder, after placing the shipped inputs there (replacing a
    different local copy: the driver's is the one the grid uses); return the result and
    the bytes of the outputs it left."""
    with tempfile.TemporaryDirectory(prefix="kdbench-node-results-") as results:
        local = item.on_node(cache_root(), Path(results))
        targets = local.node_inputs()
        for name, data in inputs.items():
            path = targets[name]
            if not path.exists() or path.read_bytes() != data:
                write_bytes_atomically(data, path)
        result = work(local, on_step)
        outputs = {
            name: path.read_bytes() for name, path in local.node_outputs().items() if path.exists()
        }
    return result, outputs


def shippable_inputs(item: Any) -> dict[str, Path]:
    """The inputs of a `NodePortable` item that exist on the driver (none for other items)."""
    if not isinstance(item, NodePortable):
        return {}
    return {name: path for name, path in item.node_inputs().items() if path.exists()}


def adopt_outputs(item: NodePortable, outputs: Mapping[str, bytes]) -> None:
    """On the driver: keep what a node's run of `item` left where the driver's run would
    have left it."""
    if not outputs:
        return
    places = item.node_outputs()
    for name, data in outputs.items():
        write_bytes_atomically(data, Path(places[name]))
