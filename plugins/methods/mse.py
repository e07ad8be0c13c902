"""FitNets-style hint loss: the projected student latent regresses the teacher's values.

Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015. Same projection, layer
matching and resampling as `cosine`, but sensitive to scale: the pair isolates what the
cosine's scale invariance buys over any alignment at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.api import Batch, DenoiserOutput, KDMethod, Param, hookimpl
from kdbench_plugins.methods.latent_matching import (
    build_aligners,
    latents_param,
    match_latents,
    match_param,
    LatentPairLoss,
    paired_tensors,
    resample_param,
)


class MSELoss(LatentPairLoss):
    def __init__(
        self, pairs: list[tuple[str, str]], aligners: nn.ModuleList, weight: float
    ) -> None:
        super().__init__(pairs)
        self.aligners = aligners
        self.weight = weight

    def forward(
        self, student: DenoiserOutput, teacher: DenoiserOutput | None, batch: Batch
    ) -> torch.Tensor:
        assert teacher is not None, "mse needs the teacher's latents"
        total = sum(
            F.mse_loss(*align(z_s, z_t))
            for align, (z_s, z_t) in zip(
                self.aligners, paired_tensors(self.pairs, student.latents, teacher.latents)
            )
        )
        return self.weight / len(self.pairs) * total


class MSEMethod(KDMethod):
    """Mean squared error between projected student and teacher latents, averaged over
    elements, then over the matched latents."""

    name = "mse"
    description = "FitNets: mean squared error between projected student and teacher latents"
    params: Mapping[str, Param] = {
        "weight": Param(1.0, "KD weight lambda", float),
        "latents": latents_param(["bottleneck"]),
        "match": match_param(),
        "resample": resample_param(),
    }

    def build(
        self,
        teacher_latents: Mapping[str, torch.Size],
        student_latents: Mapping[str, torch.Size],
    ) -> MSELoss:
        pairs = match_latents(self.hparams["latents"], teacher_latents, student_latents)
        aligners = build_aligners(
            pairs,
            teacher_latents,
            student_latents,
            self.hparams["match"],
            self.hparams["resample"],
        )
        return MSELoss(pairs, aligners, self.hparams["weight"])


@hookimpl
def kdbench_register_methods(register: Any) -> None:
    register.add(MSEMethod)
