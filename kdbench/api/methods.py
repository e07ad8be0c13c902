"""The KD-method contract: a method declares its parameters and builds, from both models'
latent shapes, a loss module that returns only the KD term; the trainer adds the task loss."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from kdbench.api.models import DenoiserOutput
from kdbench.api.params import Param, resolve_params


@dataclasses.dataclass
class Batch:
    """One training batch and where training stands, for methods with a schedule."""

    noisy: torch.Tensor
    clean: torch.Tensor
    clean_magnitude: torch.Tensor
    step: int
    total_steps: int

    @property
    def progress(self) -> float:
        return self.step / max(self.total_steps, 1)


class KDLoss(nn.Module):
    """The KD term for one (teacher, student) pair; its parameters are the adapters.

    Adapters are trained with the student and dropped for deployment, so they never count
    toward the student's size; `extra_parameters` reports what they add during training.
    """

    def forward(  # noqa: D102 - documented on the class
        self, student: DenoiserOutput, teacher: DenoiserOutput | None, batch: Batch
    ) -> torch.Tensor:
        raise NotImplementedError

    def teacher_reads(self) -> frozenset[str] | None:
        """The teacher outputs this loss reads: latent names, or ``"magnitude"``.

        Declaring them lets the trainer keep exactly those per training crop and skip the
        teacher's forward pass on crops it has already seen; the teacher output a loss then
        receives holds only these. `None` (the default) runs the teacher at every step.
        """
        return None

    def task_weight(self, batch: Batch) -> float:
        """Weight of the task loss at this step; a schedule (KD-only warm-up) overrides it."""
        return 1.0

    def extra_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


class KDMethod:
    """A knowledge-distillation method: its name, declared hyper-parameters, and a factory
    for the loss module given the shapes of both models' latents.

    Subclasses set the class attributes and implement `build`. A method that cannot match a
    pair's latents raises `NotApplicable` with the reason, never crashes.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    needs_teacher: ClassVar[bool] = True
    params: ClassVar[Mapping[str, Param]] = {}

    def __init__(self, **overrides: Any) -> None:
        self.hparams = resolve_params(f"method.{self.name}", self.params, overrides)

    def build(
        self,
        teacher_latents: Mapping[str, torch.Size],
        student_latents: Mapping[str, torch.Size],
    ) -> KDLoss:
        """Return the KD loss module for latents of these shapes (batch dimension included)."""
        raise NotImplementedError
