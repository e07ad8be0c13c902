"""Trials as Ray tasks: a local Ray instance, or a cluster joined with `--address`.

Each trial is a task with its own CPU/GPU request and retries when its worker is lost;
outcomes flow back to the driver, which alone writes the SQLite store. Needs the extra
`kdbench[ray]`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from kdbench.api import Executor, Param, hookimpl
from kdbench.errors import KdbenchError


class RayExecutor(Executor):
    name = "ray"
    description = "trials as Ray tasks on a local instance or a cluster (extra kdbench[ray])"
    params = {
        "address": Param("", "cluster to join (ray://host:port or auto); empty = start locally", str),
        "cpus_per_trial": Param(1.0, "CPUs each trial reserves", float),
        "gpus_per_trial": Param(0.0, "GPUs each trial reserves", float),
        "max_retries": Param(2, "retries of a trial whose worker died", int),
    }

    def run(
        self,
        work: Callable[[Any], Any],
        items: Sequence[Any],
        jobs: int,
        params: Mapping[str, Any],
        lost: Callable[[Any, str], Any],
    ) -> Iterator[Any]:
        try:
            import ray
        except ImportError:
            raise KdbenchError(
                "the ray executor needs Ray: pip install 'kdbench[ray]'"
            ) from None
        started_here = not ray.is_initialized()
        if started_here:
            options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if params["address"]:
                options["address"] = params["address"]
            else:
                options["num_cpus"] = max(jobs, 1) * params["cpus_per_trial"]
            ray.init(**options)
        try:
            task = ray.remote(
                num_cpus=params["cpus_per_trial"],
                num_gpus=params["gpus_per_trial"],
                max_retries=params["max_retries"],
            )(work)
            refs = {task.remote(item): item for item in items}
            waiting = list(refs)
            while waiting:
                ready, waiting = ray.wait(waiting, num_returns=1)
                try:
                    yield ray.get(ready[0])
                except ray.exceptions.RayError as exc:
                    yield lost(refs[ready[0]], f"ray lost the trial: {exc}")
        finally:
            if started_here:
                ray.shutdown()


@hookimpl
def kdbench_register_executors(register) -> None:
    register.add(RayExecutor())
