"""Trials as Ray tasks: a local Ray instance, or a cluster joined with `--address`.

Each trial is a task with its own CPU/GPU request and retries when its worker is lost;
outcomes flow back to the driver, which alone writes the SQLite store (a cluster node
need not see the file). Progress reports travel through a Ray queue (an actor) that the
driver drains between waits. Needs the extra `kdbench[ray]`.

A trial reserves as many CPUs as it runs torch threads (`trial.threads`, the same number
the local executor uses, so both give identical results) unless `cpus_per_trial` says
otherwise. A trial's metric pool (`eval_jobs` > 1) spawns processes inside the Ray worker;
that works (Ray's worker entry point is guarded against re-import by spawn) and is
covered by the test suite, so it is trusted rather than forced to one process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from kdbench.api import (
    OnStep,
    Param,
    ProgressExecutor,
    Report,
    Step,
    hookimpl,
    started_here,
    throttled,
)
from kdbench.errors import KdbenchError

STEP_INTERVAL_SECONDS = 0.5
POLL_SECONDS = 0.25


def _call_reporting(
    work: Callable[[Any, OnStep | None], Any], item: Any, key: int, queue: Any
) -> Any:
    """The Ray task: tell the driver where the item runs, then run it reporting steps."""
    queue.put((key, started_here()))

    def send_step(step: int, total: int) -> None:
        queue.put((key, Step(step, total)))

    return work(item, throttled(send_step, STEP_INTERVAL_SECONDS))


def _cpus(item: Any, params: Mapping[str, Any]) -> float:
    return params["cpus_per_trial"] or float(max(1, getattr(item, "threads", 1)))


class RayExecutor(ProgressExecutor):
    name = "ray"
    description = "trials as Ray tasks on a local instance or a cluster (extra kdbench[ray])"
    params = {
        "address": Param(
            "", "cluster to join (ray://host:port or auto); empty = start locally", str
        ),
        "cpus_per_trial": Param(0.0, "CPUs each trial reserves (0 = its torch threads)", float),
        "gpus_per_trial": Param(0.0, "GPUs each trial reserves", float),
        "max_retries": Param(2, "retries of a trial whose worker died", int),
    }

    def run_reporting(
        self,
        work: Callable[[Any, OnStep | None], Any],
        items: Sequence[Any],
        jobs: int,
        params: Mapping[str, Any],
        lost: Callable[[Any, str], Any],
        report: Report,
    ) -> Iterator[Any]:
        try:
            import ray
            from ray.util.queue import Queue
        except ImportError:
            raise KdbenchError("the ray executor needs Ray: pip install 'kdbench[ray]'") from None
        if not items:
            return
        if not ray.is_initialized():  # kept for the next stage; Ray shuts it down at exit
            options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if params["address"]:
                options["address"] = params["address"]
            else:
                options["num_cpus"] = max(jobs, 1) * max(_cpus(item, params) for item in items)
            ray.init(**options)
        queue = Queue(actor_options={"num_cpus": 0})
        try:
            task = ray.remote(num_gpus=params["gpus_per_trial"], max_retries=params["max_retries"])(
                _call_reporting
            )
            refs = {
                task.options(num_cpus=_cpus(item, params)).remote(work, item, key, queue): key
                for key, item in enumerate(items)
            }
            waiting = list(refs)
            while waiting:
                ready, waiting = ray.wait(waiting, num_returns=1, timeout=POLL_SECONDS)
                for key, event in queue.get_nowait_batch(queue.qsize()):
                    report(items[key], event)
                for ref in ready:
                    try:
                        yield ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        yield lost(items[refs[ref]], f"ray lost the trial: {exc}")
        finally:
            queue.shutdown()


@hookimpl
def kdbench_register_executors(register) -> None:
    register.add(RayExecutor())
