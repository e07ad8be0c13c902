"""Trials on this machine: in-process for one job, `jobs` worker processes for more.

Workers are spawned (not forked) so each starts with a clean torch and its own thread
setting; the grid divides the cores among them, so jobs × threads never oversubscribes.
A worker starts with OMP_NUM_THREADS set to the trial's threads, as Ray does for a task
reserving that many CPUs: native libraries read it once at import and it changes the
order of floating-point sums, so without it the two executors differ in the last digits.

On a machine with GPUs, trials whose device is `auto` or `cuda` are placed over the visible
GPUs round-robin, worker by worker: each worker starts with `CUDA_VISIBLE_DEVICES` naming
its one GPU (so inside it `cuda` is that GPU), and `jobs` workers over G GPUs run about
jobs / G trials per GPU at once, each with the grid's share of the cores for its host-side
work. A replaced worker takes the GPU with the fewest workers. `cuda:N` pins every trial
to GPU N and leaves the workers' view alone.

Each worker has its own pipe and is given one trial at a time, so the driver always knows
which trial a worker holds. A worker that dies (killed, `os._exit`, a segfault in native
code) therefore fails exactly its own trial ("worker process died") and is replaced; the
other workers go on. `concurrent.futures.ProcessPoolExecutor` cannot do this: one dead
worker breaks the whole pool and it cannot say whose task killed it. Workers are reused
across trials, so torch is imported and a dataset loaded once per worker, not per trial.
"""

from __future__ import annotations

import collections
import contextlib
import multiprocessing
import multiprocessing.connection
import os
import signal
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from kdbench.api import (
    VISIBLE_DEVICES_ENV,
    OnStep,
    ProgressExecutor,
    Report,
    Step,
    hookimpl,
    places_over_gpus,
    resolve_device,
    started_here,
    throttled,
    visible_gpus,
)

STEP_INTERVAL_SECONDS = 0.2


def _worker_main(connection: multiprocessing.connection.Connection, driver_pid: int) -> None:
    """Run items sent by the driver until told to stop or the driver is gone.

    Messages to the driver are (kind, key, payload): `started`, `step`, then `result`, or
    `error` when `work` itself raised or its result could not be sent."""
    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        key, work, item = message

        def send_step(step: int, total: int, key: int = key) -> None:
            if os.getppid() != driver_pid:  # nobody is left to record this trial
                os._exit(1)
            connection.send(("step", key, Step(step, total)))

        connection.send(("started", key, started_here()))
        try:
            result = work(item, throttled(send_step, STEP_INTERVAL_SECONDS))
            connection.send(("result", key, result))
        except Exception:
            connection.send(("error", key, traceback.format_exc(limit=5)))


@contextlib.contextmanager
def _environment(variables: Mapping[str, str]) -> Iterator[None]:
    """`variables` set for processes started meanwhile (they copy the environment)."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _death_reason(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"worker process died (killed by {signal.Signals(-exitcode).name})"
        except ValueError:
            pass
    return f"worker process died (exit code {exitcode})"


class _Worker:
    """One spawned worker process and the item it currently holds, if any."""

    def __init__(
        self, context: multiprocessing.context.SpawnContext, threads: int | None, gpu: str | None
    ) -> None:
        self.connection, child_end = context.Pipe()
        self.process = context.Process(
            target=_worker_main, args=(child_end, os.getpid()), name="kdbench-worker"
        )
        self.gpu = gpu
        variables = {} if threads is None else {"OMP_NUM_THREADS": str(threads)}
        if gpu is not None:
            variables[VISIBLE_DEVICES_ENV] = gpu
        with _environment(variables):
            self.process.start()
        child_end.close()
        self.key: int | None = None

    def give(self, key: int, work: Callable[..., Any], item: Any) -> None:
        self.key = key
        try:
            self.connection.send((key, work, item))
        except OSError:  # it died while idle: `_collect` reports the item as lost with it
            pass

    def stop(self) -> None:
        if self.process.is_alive():
            try:
                self.connection.send(None)
            except OSError:
                pass
            self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.connection.close()


def _device_setting(items: Sequence[Any]) -> str:
    return str(getattr(items[0], "device", "cpu")) if items else "cpu"


def _next_gpu(gpus: Sequence[str], workers: Sequence[_Worker]) -> str | None:
    """The GPU with the fewest live workers (the first of them on a tie): round-robin
    as workers start, and a replaced worker fills the gap its predecessor left."""
    if not gpus:
        return None
    load = collections.Counter(worker.gpu for worker in workers)
    return min(gpus, key=lambda gpu: load[gpu])


class LocalExecutor(ProgressExecutor):
    name = "local"
    description = (
        "trials on this machine, `--jobs N` worker processes at once, placed over its GPUs"
    )

    def check(self, items: Sequence[Any], jobs: int, params: Mapping[str, Any]) -> None:
        """Every trial runs here, so a device this machine lacks is refused before any."""
        for setting in {str(getattr(item, "device", "cpu")) for item in items}:
            resolve_device(setting)

    def run_reporting(
        self,
        work: Callable[[Any, OnStep | None], Any],
        items: Sequence[Any],
        jobs: int,
        params: Mapping[str, Any],
        lost: Callable[[Any, str], Any],
        report: Report,
    ) -> Iterator[Any]:
        if jobs <= 1:
            return self._in_process(work, items, report)
        return self._in_workers(work, items, jobs, lost, report)

    @staticmethod
    def _in_process(
        work: Callable[[Any, OnStep | None], Any], items: Sequence[Any], report: Report
    ) -> Iterator[Any]:
        for item in items:
            report(item, started_here())
            yield work(item, lambda step, total, item=item: report(item, Step(step, total)))

    @staticmethod
    def _in_workers(
        work: Callable[[Any, OnStep | None], Any],
        items: Sequence[Any],
        jobs: int,
        lost: Callable[[Any, str], Any],
        report: Report,
    ) -> Iterator[Any]:
        context = multiprocessing.get_context("spawn")
        queue = collections.deque(enumerate(items))
        workers: list[_Worker] = []
        gpus = visible_gpus() if places_over_gpus(_device_setting(items)) else []
        try:
            while queue or any(worker.key is not None for worker in workers):
                for worker in workers:
                    if worker.key is None and queue:
                        key, item = queue.popleft()
                        worker.give(key, work, item)
                while queue and len(workers) < jobs:
                    worker = _Worker(
                        context, getattr(items[0], "threads", None), _next_gpu(gpus, workers)
                    )
                    workers.append(worker)
                    key, item = queue.popleft()
                    worker.give(key, work, item)
                busy = [worker for worker in workers if worker.key is not None]
                multiprocessing.connection.wait(
                    [w.connection for w in busy] + [w.process.sentinel for w in busy]
                )
                for worker in busy:
                    yield from _collect(worker, items, lost, report)
                for worker in [w for w in workers if w.key is None and not w.process.is_alive()]:
                    worker.stop()
                    workers.remove(worker)
        finally:
            for worker in workers:
                worker.stop()


def _collect(
    worker: _Worker, items: Sequence[Any], lost: Callable[[Any, str], Any], report: Report
) -> Iterator[Any]:
    """Forward what a busy worker sent; if it died holding an item, that item is lost."""
    while worker.key is not None:
        try:
            if not worker.connection.poll():
                break
            kind, key, payload = worker.connection.recv()
        except (EOFError, OSError):
            break
        if kind in ("started", "step"):
            report(items[key], payload)
            continue
        worker.key = None
        if kind == "result":
            yield payload
        else:
            yield lost(items[key], f"worker raised: {payload.strip().splitlines()[-1]}")
    if worker.key is not None and not worker.process.is_alive():
        worker.process.join()
        key, worker.key = worker.key, None
        yield lost(items[key], _death_reason(worker.process.exitcode))


@hookimpl
def kdbench_register_executors(register) -> None:
    register.add(LocalExecutor())
