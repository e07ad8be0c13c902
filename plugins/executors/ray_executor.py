"""Trials as Ray tasks: a local Ray instance, or a cluster joined with `--address`.

Each trial is a task with its own CPU/GPU request and retries when its worker or node is
lost; outcomes flow back to the driver, which alone writes the SQLite store (a cluster
node need not see the file). Progress reports travel through a Ray queue (an actor pinned
to the driver's node, so losing another node never loses the channel) that the driver
drains between waits. Needs the extra `kdbench[ray]`.

A node never needs the driver's disk. On a cluster every trial runs with its caches under
its node's own `KDBENCH_CACHE` (`kdbench.api.run_on_node`): the node prepares the dataset
there and the trial checks it against the grid's dataset identity; a trained teacher
travels from the driver through Ray's object store (put once, fetched once per node), and
what a trial leaves for the driver (a teacher's checkpoint, a student's weights) travels
back with its outcome and is written by the driver. A local instance (no `address`) runs
on the driver's machine and uses the trial's own paths.

A trial reserves as many CPUs as it runs torch threads (`trial.threads`, the same number
the local executor uses, so both give identical results) unless `cpus_per_trial` says
otherwise, and `gpus_per_trial` GPUs, which may be a fraction (0.25: four trials share a
GPU). Ray gives a task that reserves a GPU its `CUDA_VISIBLE_DEVICES`, so the trial's
`auto` or `cuda` is the GPU Ray chose; a task that reserves none is shown no GPU, so it
never lands on one nobody reserved. A trial's metric pool (`eval_jobs` > 1) spawns
processes inside the Ray worker; that works (Ray's worker entry point is guarded against
re-import by spawn) and is covered by the test suite, so it is trusted rather than forced
to one process.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from kdbench.api import (
    VISIBLE_DEVICES_ENV,
    OnStep,
    Param,
    ProgressExecutor,
    Report,
    Step,
    adopt_outputs,
    hookimpl,
    run_on_node,
    shippable_inputs,
    started_here,
    throttled,
)
from kdbench.errors import ConfigError, KdbenchError

STEP_INTERVAL_SECONDS = 0.5
POLL_SECONDS = 0.25


def _call_reporting(
    work: Callable[[Any, OnStep | None], Any],
    item: Any,
    key: int,
    queue: Any,
    names: tuple[str, ...] | None,
    *blobs: bytes,
) -> tuple[Any, dict[str, bytes]]:
    """The Ray task: tell the driver where the item runs, then run it reporting steps.

    `names` is None for an item that runs with its own paths (a local instance); else the
    item runs on its node's folders with the shipped `blobs` as its inputs of those names.
    """
    import ray

    _send(queue, (key, started_here()))
    if not ray.get_gpu_ids():
        os.environ[VISIBLE_DEVICES_ENV] = ""

    def send_step(step: int, total: int) -> None:
        _send(queue, (key, Step(step, total)))

    on_step = throttled(send_step, STEP_INTERVAL_SECONDS)
    if names is None:
        return work(item, on_step), {}
    return run_on_node(work, item, dict(zip(names, blobs)), on_step)


def _send(queue: Any, message: Any) -> None:
    """Progress is a courtesy: a lost channel must never cost the trial its result."""
    import ray

    try:
        queue.put(message)
    except ray.exceptions.RayError:
        pass


def _drain(queue: Any) -> list[Any]:
    """The reports waiting in the channel; none once it is gone (the grid goes on)."""
    import ray

    try:
        return queue.get_nowait_batch(queue.qsize())
    except ray.exceptions.RayError:
        return []


def _cpus(item: Any, params: Mapping[str, Any]) -> float:
    return params["cpus_per_trial"] or float(max(1, getattr(item, "threads", 1)))


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise KdbenchError("the ray executor needs Ray: pip install 'kdbench[ray]'") from None
    return ray


def _connect(items: Sequence[Any], jobs: int, params: Mapping[str, Any]) -> Any:
    """Ray, initialised once per process (kept for the next stage; Ray shuts it down at exit)."""
    ray = _ray()
    if not ray.is_initialized():
        options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if params["address"]:
            options["address"] = params["address"]
        else:
            options["num_cpus"] = max(jobs, 1) * max(_cpus(item, params) for item in items)
        ray.init(**options)
    return ray


class RayExecutor(ProgressExecutor):
    name = "ray"
    description = "trials as Ray tasks on a local instance or a cluster (extra kdbench[ray])"
    params = {
        "address": Param(
            "", "cluster to join (host:port, ray://host:port or auto); empty = start locally", str
        ),
        "cpus_per_trial": Param(
            0.0, "CPUs each trial reserves (0 = its torch threads)", float, at_least=0
        ),
        "gpus_per_trial": Param(
            0.0,
            "GPUs each trial reserves; a fraction shares one (0.25 = four per GPU)",
            float,
            at_least=0,
        ),
        "max_retries": Param(2, "retries of a trial whose worker or node died", int, at_least=0),
    }

    def check(self, items: Sequence[Any], jobs: int, params: Mapping[str, Any]) -> None:
        """A trial that asks for a GPU must reserve one, and some node must offer what a
        trial reserves: Ray would otherwise wait forever for resources no node has."""
        if not items:
            return
        ray = _connect(items, jobs, params)
        nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
        cpus = max(_cpus(item, params) for item in items)
        largest = max((node.get("CPU", 0.0) for node in nodes), default=0.0)
        if cpus > largest:
            raise ConfigError(
                f"a trial reserves {cpus:g} CPU(s) (its torch threads, or "
                f"executor.ray.cpus_per_trial) but the largest Ray node offers {largest:g}: "
                "set executor.ray.cpus_per_trial, or more --jobs for fewer threads each"
            )
        gpus = params["gpus_per_trial"]
        wants_gpu = sorted(
            {str(getattr(item, "device", "cpu")) for item in items} - {"auto", "cpu"}
        )
        if wants_gpu and gpus <= 0:
            raise ConfigError(
                f"run.device={wants_gpu[0]}: a Ray trial sees a GPU only if it reserves one; "
                "set executor.ray.gpus_per_trial (e.g. 0.25 for four trials per GPU)"
            )
        offered = max((node.get("GPU", 0.0) for node in nodes), default=0.0)
        if gpus > offered:
            raise ConfigError(
                f"executor.ray.gpus_per_trial={gpus:g}: the largest Ray node offers "
                f"{offered:g} GPU(s), so no trial could be placed"
            )

    def run_reporting(
        self,
        work: Callable[[Any, OnStep | None], Any],
        items: Sequence[Any],
        jobs: int,
        params: Mapping[str, Any],
        lost: Callable[[Any, str], Any],
        report: Report,
    ) -> Iterator[Any]:
        if not items:
            return
        ray = _connect(items, jobs, params)
        from ray.util.queue import Queue
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        queue = Queue(actor_options={"num_cpus": 0, "scheduling_strategy": here})
        on_nodes = bool(params["address"])
        shipped: dict[Path, Any] = {}  # one object per driver file, fetched once per node

        def submit(key: int, item: Any) -> Any:
            options = task.options(num_cpus=_cpus(item, params))
            if not on_nodes:
                return options.remote(work, item, key, queue, None)
            inputs = shippable_inputs(item)
            for path in inputs.values():
                if path not in shipped:
                    shipped[path] = ray.put(path.read_bytes())
            return options.remote(
                work, item, key, queue, tuple(inputs), *(shipped[path] for path in inputs.values())
            )

        try:
            task = ray.remote(num_gpus=params["gpus_per_trial"], max_retries=params["max_retries"])(
                _call_reporting
            )
            refs = {submit(key, item): key for key, item in enumerate(items)}
            waiting = list(refs)
            while waiting:
                ready, waiting = ray.wait(waiting, num_returns=1, timeout=POLL_SECONDS)
                for key, event in _drain(queue):
                    report(items[key], event)
                for ref in ready:
                    item = items[refs[ref]]
                    try:
                        result, outputs = ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        yield lost(item, f"ray lost the trial: {exc}")
                        continue
                    adopt_outputs(item, outputs)
                    yield result
        finally:
            queue.shutdown()


@hookimpl
def kdbench_register_executors(register) -> None:
    register.add(RayExecutor())
