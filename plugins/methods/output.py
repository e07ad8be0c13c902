"""Output distillation: the student's magnitude estimate follows the teacher's.

Uses no latent, so it applies to any pair whatever their depths or widths; it is the
simplest baseline a latent-based method has to beat.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from kdbench.api import Batch, DenoiserOutput, KDLoss, KDMethod, Param, hookimpl


class OutputLoss(KDLoss):
    def __init__(self, weight: float) -> None:
        super().__init__()
        self.weight = weight

    def teacher_reads(self) -> frozenset[str]:
        return frozenset({"magnitude"})

    def forward(
        self, student: DenoiserOutput, teacher: DenoiserOutput | None, batch: Batch
    ) -> torch.Tensor:
        assert teacher is not None, "output needs the teacher's estimate"
        if student.magnitude.shape != teacher.magnitude.shape:
            raise ValueError(
                f"student magnitude {tuple(student.magnitude.shape)} and teacher magnitude "
                f"{tuple(teacher.magnitude.shape)} differ: the models use different STFTs"
            )
        return self.weight * F.l1_loss(student.magnitude, teacher.magnitude.detach())


class OutputMethod(KDMethod):
    """Mean absolute difference between the two magnitude estimates."""

    name = "output"
    description = "L1 between the student's and the teacher's magnitude estimates"
    params: Mapping[str, Param] = {"weight": Param(1.0, "KD weight lambda", float)}

    def build(
        self,
        teacher_latents: Mapping[str, torch.Size],
        student_latents: Mapping[str, torch.Size],
    ) -> OutputLoss:
        return OutputLoss(self.hparams["weight"])


@hookimpl
def kdbench_register_methods(register: Any) -> None:
    register.add(OutputMethod)
