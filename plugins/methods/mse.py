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

from kdbench.api import (
    AlignedLatentLoss,
    KDMethod,
    Param,
    aligned_pairs,
    hookimpl,
    latents_param,
    match_param,
    resample_param,
)


class MSELoss(AlignedLatentLoss):
    def distance(self, z_s: torch.Tensor, z_t: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(z_s, z_t)


class MSEMethod(KDMethod):
    """Mean squared error between projected student and teacher latents, averaged over
    elements, then over the matched latents."""

    name = "mse"
    description = "FitNets: mean squared error between projected student and teacher latents"
    params: Mapping[str, Param] = {
        "weight": Param(1.0, "KD weight lambda", float, at_least=0),
        "latents": latents_param(["bottleneck"]),
        "match": match_param(),
        "resample": resample_param(),
    }

    def build(
        self,
        teacher_latents: Mapping[str, torch.Size],
        student_latents: Mapping[str, torch.Size],
    ) -> MSELoss:
        pairs, aligners = aligned_pairs(self.hparams, teacher_latents, student_latents)
        return MSELoss(pairs, aligners, self.hparams["weight"])


@hookimpl
def kdbench_register_methods(register: Any) -> None:
    register.add(MSEMethod)
