"""Scoring estimates against clean references with any set of metrics, optionally in parallel.

One utterance a metric cannot score must never cost the whole evaluation: it becomes a
NaN with the reason, so the results table shows both the gap and its cause.

Only the standard library and `kdbench.errors` are imported here, so a worker process
starts without numpy or torch and picks up the single-thread settings before they load.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import dataclasses
import logging
import math
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from kdbench.errors import MetricUndefined

if TYPE_CHECKING:
    import numpy as np

    from kdbench.api import Metric

log = logging.getLogger(__name__)

Item = tuple[str, "np.ndarray", "np.ndarray"]

_THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)
_CHUNKS_PER_JOB = 4
"""Several chunks per worker, so a slow chunk near the end leaves little idle time."""


@dataclasses.dataclass(frozen=True)
class Score:
    """One metric's value on one utterance."""

    utterance: str
    metric: str
    value: float  # NaN when undefined
    reason: str | None  # why undefined, else None
    test_set: str = ""  # the test set the utterance belongs to ("" = the trial's own)


MIN_ITEMS_PER_WORKER = 24
"""A spawned worker costs seconds to import torch and the metric packages; below this many
utterances per worker that start-up costs more than scoring serially saves."""


def score_utterances(
    metrics: Sequence[Metric],
    items: Sequence[Item],
    sample_rate: int,
    jobs: int = 1,
    progress: Callable[[int], None] | None = None,
) -> list[Score]:
    """Every metric on every (utterance id, clean, estimate), utterance by utterance.

    Returns the scores in input order (utterances, then metrics within one) whatever
    `jobs` is. With `jobs` > 1 chunks of utterances go to spawned processes (forking next
    to torch's thread pools can deadlock), each limited to one BLAS/torch thread.
    `progress` receives the number of utterances scored so far after each chunk.
    """
    if not items:
        return []
    jobs = min(jobs, len(items) // MIN_ITEMS_PER_WORKER)
    if jobs <= 1:
        return _run_serial(metrics, items, sample_rate, progress)
    return _run_parallel(metrics, items, sample_rate, jobs, progress)


def _run_serial(
    metrics: Sequence[Metric],
    items: Sequence[Item],
    sample_rate: int,
    progress: Callable[[int], None] | None,
) -> list[Score]:
    scores: list[Score] = []
    for done, item in enumerate(items, start=1):
        chunk_scores, warnings = _score_chunk(metrics, [item], sample_rate)
        _log_warnings(warnings)
        scores.extend(chunk_scores)
        if progress is not None:
            progress(done)
    return scores


def _run_parallel(
    metrics: Sequence[Metric],
    items: Sequence[Item],
    sample_rate: int,
    jobs: int,
    progress: Callable[[int], None] | None,
) -> list[Score]:
    size = max(1, math.ceil(len(items) / (jobs * _CHUNKS_PER_JOB)))
    chunks = [list(items[start : start + size]) for start in range(0, len(items), size)]
    results: list[list[Score] | None] = [None] * len(chunks)
    done = 0
    pool = _pool(jobs)
    with _single_threaded_environment():
        # Workers are spawned while tasks are submitted, so they inherit the setting.
        futures = {
            pool.submit(_score_chunk, metrics, chunk, sample_rate): index
            for index, chunk in enumerate(chunks)
        }
    for future in concurrent.futures.as_completed(futures):
        index = futures[future]
        chunk_scores, warnings = future.result()
        _log_warnings(warnings)
        results[index] = chunk_scores
        done += len(chunks[index])
        if progress is not None:
            progress(done)
    return [score for chunk_scores in results if chunk_scores for score in chunk_scores]


_pools: dict[int, concurrent.futures.ProcessPoolExecutor] = {}


def _pool(workers: int) -> concurrent.futures.ProcessPoolExecutor:
    """One pool per size for the life of the process. A spawned worker costs seconds to
    start (it imports torch and the metric packages) — more than scoring a test split takes
    — so a process that scores many splits (a grid's trials) starts its workers once."""
    pool = _pools.get(workers)
    if pool is None or getattr(pool, "_broken", False):
        if not _pools:
            atexit.register(_shut_down_pools)
        pool = concurrent.futures.ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker
        )
        _pools[workers] = pool
    return pool


def _shut_down_pools() -> None:
    """Stop the workers while the interpreter is whole: a pool left to the garbage collector
    at exit prints a spurious traceback from `concurrent.futures`."""
    for pool in _pools.values():
        pool.shutdown(wait=True, cancel_futures=True)
    _pools.clear()


@contextlib.contextmanager
def _single_threaded_environment() -> Iterator[None]:
    """Temporarily ask BLAS/OpenMP for one thread, for processes started meanwhile: with
    `jobs` workers on `jobs` cores, threads inside a worker only oversubscribe."""
    saved = {name: os.environ.get(name) for name in _THREAD_VARIABLES}
    os.environ.update({name: "1" for name in _THREAD_VARIABLES})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _init_worker() -> None:
    """Cap torch's thread pool too if the parent's main module already imported it."""
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def _score_chunk(
    metrics: Sequence[Metric], chunk: Sequence[Item], sample_rate: int
) -> tuple[list[Score], list[str]]:
    """Scores of a chunk and the warnings to log; warnings are returned rather than logged
    so they reach the parent's logging configuration, not a worker's stderr."""
    scores: list[Score] = []
    warnings: list[str] = []
    for utterance, clean, estimate in chunk:
        for metric in metrics:
            score, unexpected = _score_one(metric, utterance, clean, estimate, sample_rate)
            if unexpected:
                warnings.append(f"metric {metric.name} failed on {utterance}: {score.reason}")
            scores.append(score)
    return scores, warnings


def _score_one(
    metric: Metric, utterance: str, clean: np.ndarray, estimate: np.ndarray, sample_rate: int
) -> tuple[Score, bool]:
    """The score, and whether its absence is a bug worth a warning rather than a documented
    undefined case."""
    try:
        value = float(metric.compute(clean, estimate, sample_rate))
    except MetricUndefined as exc:
        return Score(utterance, metric.name, math.nan, str(exc) or "undefined"), False
    except Exception as exc:  # noqa: BLE001 - one utterance must not end the evaluation
        return Score(utterance, metric.name, math.nan, f"{type(exc).__name__}: {exc}"), True
    if not math.isfinite(value):
        return Score(utterance, metric.name, math.nan, f"metric returned {value}"), True
    return Score(utterance, metric.name, value, None), False


def _log_warnings(warnings: Sequence[str]) -> None:
    for message in warnings:
        log.warning(message)
