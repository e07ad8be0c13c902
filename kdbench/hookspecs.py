"""Every hook kdbench calls, documented where it is declared.

Each hook receives a `Register` for one kind of plugin object; a plugin calls
`register.add(obj)` for each object it contributes. Built-in plugins implement these same
hooks and are found through the same entry-point group (``kdbench``) as third-party ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from kdbench.registry import Register

hookspec = pluggy.HookspecMarker("kdbench")
hookimpl = pluggy.HookimplMarker("kdbench")


@hookspec
def kdbench_register_methods(register: Register) -> None:
    """Register knowledge-distillation methods.

    Add `kdbench.api.KDMethod` subclasses (the class, not an instance: kdbench instantiates
    it with the preset's and `--set method.NAME.KEY=VALUE` parameters). The class's `name`
    is what `--method` selects.
    """


@hookspec
def kdbench_register_pairs(register: Register) -> None:
    """Register teacher/student architecture pairs.

    Add `kdbench.api.ArchitecturePair` instances. `--pairs all` selects every registered
    pair; `mismatch` orders them from mild to severe in the leaderboard.
    """


@hookspec
def kdbench_register_models(register: Register) -> None:
    """Register model families.

    Add `kdbench.api.ModelFamily` instances; a pair's `ModelSpec.family` names one, and its
    `build` turns the spec's parameters into a `kdbench.api.Denoiser`.
    """


@hookspec
def kdbench_register_metrics(register: Register) -> None:
    """Register per-utterance quality metrics.

    Add `kdbench.api.Metric` instances; the preset's `run.metrics` selects which are
    computed on the test split.
    """


@hookspec
def kdbench_register_datasets(register: Register) -> None:
    """Register datasets.

    Add `kdbench.api.Dataset` instances; `run.datasets` selects them and
    `dataset.NAME.KEY` settings reach their declared parameters.
    """


@hookspec
def kdbench_register_executors(register: Register) -> None:
    """Register executors that run trials (locally, on a cluster).

    Add `kdbench.api.Executor` instances; `--executor NAME` selects one.
    """
