"""Helpers the runner tests load into worker processes: faulty KD methods (registered
through KDBENCH_PLUGINS) and plain work functions for the executors."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

import torch

from kdbench.api import KDLoss, KDMethod, hookimpl


class _FaultyLoss(KDLoss):
    def __init__(self, fault: str) -> None:
        super().__init__()
        self.fault = fault

    def forward(self, student, teacher, batch) -> torch.Tensor:
        if self.fault == "raise":
            raise RuntimeError("kd loss exploded")
        if self.fault == "die":
            os._exit(3)
        return student.magnitude.new_tensor(float("nan"))


def _method(name: str, fault: str) -> type[KDMethod]:
    def build(self, teacher_latents: Mapping, student_latents: Mapping) -> KDLoss:
        return _FaultyLoss(fault)

    return type(
        f"Faulty{fault.title()}",
        (KDMethod,),
        {
            "name": name,
            "description": f"test: loss {fault}s",
            "needs_teacher": False,
            "build": build,
        },
    )


RAISES = _method("test_raises", "raise")
NAN = _method("test_nan", "nan")
DIES = _method("test_dies", "die")


@hookimpl
def kdbench_register_methods(register: Any) -> None:
    for method in (RAISES, NAN, DIES):
        register.add(method)


def flaky(item: str, on_step: Any) -> str:
    """Work for the local executor: dies, raises, or reports a step and succeeds."""
    if item == "die":
        os._exit(3)
    if item == "raise":
        raise ValueError("work raised")
    if on_step is not None:
        on_step(1, 1)
    return item.upper()


@dataclasses.dataclass(frozen=True)
class DeviceProbe:
    """An item with the two attributes executors read from a trial."""

    name: str
    device: str = "auto"
    threads: int = 1


def visible_devices(item: DeviceProbe, on_step: Any = None) -> tuple[str, str | None, int]:
    """Work that reports which GPUs its worker was shown, and which worker it was."""
    return item.name, os.environ.get("CUDA_VISIBLE_DEVICES"), os.getpid()
