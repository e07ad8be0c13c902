"""Similarity-preserving KD: samples the teacher finds alike, the student should too.

Tung & Mori, "Similarity-Preserving Knowledge Distillation", ICCV 2019. The batch x batch
Gram matrix of flattened latents does not depend on channel count or grid, so no adapter
or resampling is needed, at any depth mismatch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from kdbench.api import (
    Batch,
    DenoiserOutput,
    KDMethod,
    LatentPairLoss,
    Param,
    hookimpl,
    latents_param,
    match_latents,
    paired_tensors,
)


def batch_similarity(z: torch.Tensor) -> torch.Tensor:
    """Row-L2-normalised (batch x batch) Gram matrix of the flattened latents."""
    q = z.flatten(1)
    return F.normalize(q @ q.T, dim=1)


class SimilarityLoss(LatentPairLoss):
    def __init__(self, pairs: list[tuple[str, str]], weight: float) -> None:
        super().__init__(pairs)
        self.weight = weight

    def forward(
        self, student: DenoiserOutput, teacher: DenoiserOutput | None, batch: Batch
    ) -> torch.Tensor:
        assert teacher is not None, "similarity needs the teacher's latents"
        total = sum(
            (batch_similarity(z_s) - batch_similarity(z_t)).square().mean()
            for z_s, z_t in paired_tensors(self.pairs, student.latents, teacher.latents)
        )
        return self.weight / len(self.pairs) * total


class SimilarityMethod(KDMethod):
    """weight * ||G_s - G_t||_F^2 / b^2 per matched latent, averaged over latents.

    Tung & Mori sum the per-layer terms; averaging keeps `weight` comparable when the
    number of matched latents changes with the pair.
    """

    name = "similarity"
    description = "Similarity-preserving KD (Tung & Mori): match batch Gram matrices"
    params: Mapping[str, Param] = {
        "weight": Param(1.0, "KD weight", float, at_least=0),
        "latents": latents_param(["bottleneck"]),
    }

    def build(
        self,
        teacher_latents: Mapping[str, torch.Size],
        student_latents: Mapping[str, torch.Size],
    ) -> SimilarityLoss:
        pairs = match_latents(self.hparams["latents"], teacher_latents, student_latents)
        return SimilarityLoss(pairs, self.hparams["weight"])


@hookimpl
def kdbench_register_methods(register: Any) -> None:
    register.add(SimilarityMethod)
