"""Attention transfer: the student reproduces where in time-frequency the teacher's
activations concentrate, whatever its channel count.

Zagoruyko & Komodakis, "Paying More Attention to Attention", ICLR 2017. The attention map
is the channel mean of |z|^p; being a single (freq x frames) map it needs no adapter, and
its L2 normalisation makes it blind to the latents' scale.
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
    resample,
    resample_param,
)


def attention_map(z: torch.Tensor, p: float) -> torch.Tensor:
    """(batch, 1, freq, frames) channel mean of |z|^p; squaring skips the abs for p = 2."""
    energy = z.square() if p == 2 else z.abs().pow(p)
    return energy.mean(dim=1, keepdim=True)


class AttentionLoss(LatentPairLoss):
    def __init__(
        self,
        pairs: list[tuple[str, str]],
        grids: list[tuple[int, int]],
        weight: float,
        p: float,
        resample_mode: str,
    ) -> None:
        super().__init__(pairs)
        self.grids = grids
        self.weight = weight
        self.p = p
        self.resample_mode = resample_mode

    def forward(
        self, student: DenoiserOutput, teacher: DenoiserOutput | None, batch: Batch
    ) -> torch.Tensor:
        assert teacher is not None, "attention needs the teacher's latents"
        total = 0.0
        for grid, (z_s, z_t) in zip(
            self.grids, paired_tensors(self.pairs, student.latents, teacher.latents)
        ):
            a_s = resample(attention_map(z_s, self.p), grid, self.resample_mode)
            a_s = F.normalize(a_s.flatten(1), dim=1)
            a_t = F.normalize(attention_map(z_t, self.p).flatten(1), dim=1)
            total = total + torch.linalg.vector_norm(a_s - a_t, dim=1).mean()
        return self.weight / len(self.pairs) * total


class AttentionMethod(KDMethod):
    """weight * mean over matched latents and samples of ||a_s - a_t||_2.

    The distance is the plain (not squared) L2 norm of the normalised maps' difference,
    as in the paper's equation; so each term lies in [0, 2]. The student's map (not its
    latent) is resampled onto the teacher's grid, which is cheaper and keeps |z|^p exact.
    """

    name = "attention"
    description = "Attention transfer: L2 between normalised channel-energy maps"
    params: Mapping[str, Param] = {
        "weight": Param(1.0, "KD weight", float, at_least=0),
        "latents": latents_param(["bottleneck"]),
        "p": Param(2.0, "exponent of |z| in the attention map", float, above=0),
        "resample": resample_param(),
    }

    def build(
        self,
        teacher_latents: Mapping[str, torch.Size],
        student_latents: Mapping[str, torch.Size],
    ) -> AttentionLoss:
        pairs = match_latents(self.hparams["latents"], teacher_latents, student_latents)
        grids = [tuple(teacher_latents[t][-2:]) for _, t in pairs]
        return AttentionLoss(
            pairs, grids, self.hparams["weight"], self.hparams["p"], self.hparams["resample"]
        )


@hookimpl
def kdbench_register_methods(register: Any) -> None:
    register.add(AttentionMethod)
