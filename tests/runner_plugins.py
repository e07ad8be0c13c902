"""Helpers the runner tests load into worker processes: faulty KD methods and a test-only
dataset (registered through KDBENCH_PLUGINS) and plain work functions for the executors."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdbench.api import Dataset, KDLoss, KDMethod, PreparedDataset, Utterance, hookimpl


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


class ToneTestSet(Dataset):
    """A test-only set for cross-corpus tests: two noisy tones, generated, no cache."""

    name = "test_tones"
    description = "test: two noisy tones, test split only"

    def prepare(self, params: Mapping[str, Any], cache_dir: Path) -> PreparedDataset:
        rng = np.random.default_rng(7)
        time = np.arange(8000) / 16000
        utterances = []
        for index, frequency in enumerate((220.0, 440.0)):
            clean = (0.3 * np.sin(2 * np.pi * frequency * time)).astype(np.float32)
            noisy = (clean + 0.1 * rng.standard_normal(clean.size)).astype(np.float32)
            utterances.append(Utterance(f"tone{index}", clean, noisy, {"snr_db": 10.0}))
        return PreparedDataset(
            self.name, "tones-v1", 16000, {"train": [], "valid": [], "test": utterances}
        )


@hookimpl
def kdbench_register_datasets(register: Any) -> None:
    register.add(ToneTestSet())


@dataclasses.dataclass(frozen=True)
class DeviceProbe:
    """An item with the two attributes executors read from a trial."""

    name: str
    device: str = "auto"
    threads: int = 1


def visible_devices(item: DeviceProbe, on_step: Any = None) -> tuple[str, str | None, int]:
    """Work that reports which GPUs its worker was shown, and which worker it was."""
    return item.name, os.environ.get("CUDA_VISIBLE_DEVICES"), os.getpid()
