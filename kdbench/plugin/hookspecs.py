"""Every hook kdbench calls, documented where it is declared, with the type of object it
registers.

Each hook receives a `Register` for one kind of plugin object; a plugin calls
`register.add(obj)` for each object it contributes. Built-in plugins implement these same
hooks and are found through the same entry-point group (``kdbench``) as third-party ones.
The kinds of plugin are these hooks: `kinds()` reads them from this module, and
`Register.add` checks each object against its hook's declared type at load, so a wrong
object fails with its plugin's name before any trial runs, not inside every trial.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kdbench.api.datasets import Dataset
from kdbench.api.executors import Executor
from kdbench.api.methods import KDMethod
from kdbench.api.metrics import Metric
from kdbench.api.models import ArchitecturePair, ModelFamily
from kdbench.plugin.markers import hookimpl, hookspec

if TYPE_CHECKING:
    from kdbench.plugin.registry import Register

HOOK_PREFIX = "kdbench_register_"

__all__ = ["HOOK_PREFIX", "Kind", "hookimpl", "hookspec", "kinds"]


@dataclasses.dataclass(frozen=True)
class Kind:
    """One kind of plugin object: the hook that registers it and what it must be.

    `as_class` kinds register the class itself (kdbench instantiates it per trial with its
    resolved parameters); the others register one ready instance."""

    name: str
    base: type
    as_class: bool = False

    def describe(self) -> str:
        what = "subclass" if self.as_class else "instance"
        return f"a kdbench.api.{self.base.__name__} {what}"


def registers(base: type, as_class: bool = False) -> Callable[[Any], Any]:
    """Declare, on a hookspec, the type of object its hook registers."""

    def mark(function: Any) -> Any:
        function.kdbench_kind = Kind(function.__name__.removeprefix(HOOK_PREFIX), base, as_class)
        return hookspec(function)

    return mark


def kinds() -> tuple[Kind, ...]:
    """Every kind of plugin object, in declaration order, read from the hooks below."""
    module = sys.modules[__name__]
    return tuple(
        getattr(module, name).kdbench_kind
        for name in vars(module)
        if name.startswith(HOOK_PREFIX)
    )


@registers(KDMethod, as_class=True)
def kdbench_register_methods(register: Register) -> None:
    """Register knowledge-distillation methods.

    Add `kdbench.api.KDMethod` subclasses (the class, not an instance: kdbench instantiates
    it with the preset's and `--set method.NAME.KEY=VALUE` parameters). The class's `name`
    is what `--method` selects.
    """


@registers(ArchitecturePair)
def kdbench_register_pairs(register: Register) -> None:
    """Register teacher/student architecture pairs.

    Add `kdbench.api.ArchitecturePair` instances. `--pairs all` selects every registered
    pair; `mismatch` orders them from mild to severe in the leaderboard.
    """


@registers(ModelFamily)
def kdbench_register_models(register: Register) -> None:
    """Register model families.

    Add `kdbench.api.ModelFamily` instances; a pair's `ModelSpec.family` names one, and its
    `build` turns the spec's parameters into a `kdbench.api.Denoiser`.
    """


@registers(Metric)
def kdbench_register_metrics(register: Register) -> None:
    """Register per-utterance quality metrics.

    Add `kdbench.api.Metric` instances; the preset's `run.metrics` selects which are
    computed on the test split.
    """


@registers(Dataset)
def kdbench_register_datasets(register: Register) -> None:
    """Register datasets.

    Add `kdbench.api.Dataset` instances; `run.datasets` selects them and
    `dataset.NAME.KEY` settings reach their declared parameters.
    """


@registers(Executor)
def kdbench_register_executors(register: Register) -> None:
    """Register executors that run trials (locally, on a cluster).

    Add `kdbench.api.Executor` instances; `--executor NAME` selects one.
    """
