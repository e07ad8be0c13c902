"""No distillation: the student trained on the task loss alone, the reference every KD
method must beat."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from kdbench.api import Batch, DenoiserOutput, KDLoss, KDMethod, hookimpl


class ZeroLoss(KDLoss):
    def forward(
        self, student: DenoiserOutput, teacher: DenoiserOutput | None, batch: Batch
    ) -> torch.Tensor:
        return student.magnitude.new_zeros(())


class NoneMethod(KDMethod):
    """Adds nothing, so the trainer need not special-case training without a teacher."""

    name = "none"
    description = "No distillation: the student trained on the task loss only"
    needs_teacher = False

    def build(
        self,
        teacher_latents: Mapping[str, torch.Size],
        student_latents: Mapping[str, torch.Size],
    ) -> ZeroLoss:
        return ZeroLoss()


@hookimpl
def kdbench_register_methods(register: Any) -> None:
    register.add(NoneMethod)
