"""Trials on this machine: in-process for one job, a pool of worker processes for more.

Workers are spawned (not forked) so each starts with a clean torch and its own thread
setting; the grid divides the cores among them, so jobs × threads never oversubscribes.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from kdbench.api import Executor, hookimpl


class LocalExecutor(Executor):
    name = "local"
    description = "trials on this machine, `--jobs N` worker processes at once"

    def run(
        self,
        work: Callable[[Any], Any],
        items: Sequence[Any],
        jobs: int,
        params: Mapping[str, Any],
        lost: Callable[[Any, str], Any],
    ) -> Iterator[Any]:
        if jobs <= 1:
            for item in items:
                yield work(item)
            return
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context) as pool:
            futures = {pool.submit(work, item): item for item in items}
            for future in concurrent.futures.as_completed(futures):
                try:
                    yield future.result()
                except concurrent.futures.process.BrokenProcessPool as exc:
                    yield lost(futures[future], f"worker process died: {exc}")


@hookimpl
def kdbench_register_executors(register) -> None:
    register.add(LocalExecutor())
