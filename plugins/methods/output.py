"""Output distillation: the student's magnitude estimate follows the teacher's.

Uses no latent, so it applies to any pair whatever their depths, widths or families; it is
the simplest baseline a latent-based method has to beat.

Across families the two magnitudes may lie on different STFT grids. They are compared
where they mean the same thing: with the same window and FFT size, a hop that is a
multiple of the other's puts every frame of the coarser grid at the centre of a frame of
the finer one, so the finer magnitude is taken at those frames and the comparison is
exact (a UNet at hop 128 against a GTCRN at hop 256: every second UNet frame). Models
whose windows, FFT sizes or hops do not fit so make the pair not applicable.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from kdbench.api import Batch, DenoiserOutput, KDLoss, KDMethod, NotApplicable, Param, hookimpl


def common_frames(
    student: DenoiserOutput, teacher: DenoiserOutput
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both magnitudes on the coarser of the two frame grids, or `NotApplicable`."""
    s, t = student.magnitude, teacher.magnitude
    if s.shape == t.shape and student.analysis == teacher.analysis:
        return s, t
    if student.analysis is None or teacher.analysis is None:
        raise NotApplicable(
            f"student magnitude {tuple(s.shape)} and teacher magnitude {tuple(t.shape)} "
            "differ and their STFTs are not declared"
        )
    (s_fft, s_hop, s_window), (t_fft, t_hop, t_window) = student.analysis, teacher.analysis
    if (s_fft, s_window) != (t_fft, t_window) or max(s_hop, t_hop) % min(s_hop, t_hop):
        raise NotApplicable(
            f"the student's STFT ({s_fft}-point {s_window}, hop {s_hop}) and the teacher's "
            f"({t_fft}-point {t_window}, hop {t_hop}) share no frames: their magnitudes "
            "are not comparable"
        )
    if s_hop < t_hop:
        s = s[..., :: t_hop // s_hop]
    else:
        t = t[..., :: s_hop // t_hop]
    return s, t


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
        s, t = common_frames(student, teacher)
        return self.weight * F.l1_loss(s, t.detach())


class OutputMethod(KDMethod):
    """Mean absolute difference between the two magnitude estimates."""

    name = "output"
    description = "L1 between the student's and the teacher's magnitude estimates"
    params: Mapping[str, Param] = {"weight": Param(1.0, "KD weight lambda", float, at_least=0)}

    def build(
        self,
        teacher_latents: Mapping[str, torch.Size],
        student_latents: Mapping[str, torch.Size],
    ) -> OutputLoss:
        return OutputLoss(self.hparams["weight"])


@hookimpl
def kdbench_register_methods(register: Any) -> None:
    register.add(OutputMethod)
