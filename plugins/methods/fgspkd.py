"""The paper's baseline: fine-grained similarity-preserving KD (fgSPKD).

R. D. Nathoo, M. Kegler, M. Stamenovic, "Two-Step Knowledge Distillation for Tiny Speech
Enhancement", ICASSP 2024, arXiv:2309.08144. The comparison paper's own text was not
available, so this identity of its baseline is kdbench's reconstruction (METHODS.md). It
is registered under its own name only: `baseline` is a configuration alias that points
here, so a preset can point the comparisons at another method.

Per sample and distilled latent, the activation is read as A (frames x channels*freq);
G = A A^T is the frames x frames self-similarity, its rows are L2-normalised, and the
term is ||G_t - G_s||_F^2 / T^2, averaged over samples and latents. Being frames x frames,
G needs no projection, but it ties the student to the teacher's frame structure.

What the abstract confirms: Gram matrices of each activation (not across the batch, as in
Tung & Mori), and the two-step schedule (KD objective alone first, then fully supervised
training, instead of a weighted mixture). Not verifiable here and so reconstructed: the
row normalisation and 1/T^2 scale (taken from Tung & Mori's SP loss), and which layers
they distil (their models were not UNets). Differences from the paper, by design:
- latents default to every encoder level both models have plus the bottleneck;
- depth mismatch: when frame counts differ the student's map is resampled along time onto
  the teacher's frame count (adaptive average pooling by default; this equals pooling G
  itself block-wise), instead of declaring the pair not applicable;
- the switch point of the two-step schedule is a fraction of the training steps, where
  the paper switches after a number of pre-training epochs.
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


def frame_similarity(z: torch.Tensor) -> torch.Tensor:
    """(batch, frames, frames) row-normalised Gram matrix of a (batch, C, F, T) latent.

    Computed as X^T X on the (batch, C*F, T) view, so no transposed copy of the map is made.
    """
    x = z.flatten(1, 2)
    return F.normalize(x.transpose(1, 2) @ x, dim=2)


class FgSPKDLoss(LatentPairLoss):
    def __init__(
        self,
        pairs: list[tuple[str, str]],
        frames: list[int],
        weight: float,
        resample_mode: str,
        pretrain_until: float | None,
    ) -> None:
        super().__init__(pairs)
        self.frames = frames
        self.weight = weight
        self.resample_mode = resample_mode
        self.pretrain_until = pretrain_until

    def pretraining(self, batch: Batch) -> bool:
        return self.pretrain_until is not None and batch.progress < self.pretrain_until

    def task_weight(self, batch: Batch) -> float:
        """Zero during two-step pre-training, when the student learns from the teacher only."""
        return 0.0 if self.pretraining(batch) else 1.0

    def forward(
        self, student: DenoiserOutput, teacher: DenoiserOutput | None, batch: Batch
    ) -> torch.Tensor:
        assert teacher is not None, "fgspkd needs the teacher's latents"
        if self.pretrain_until is not None and not self.pretraining(batch):
            return student.magnitude.new_zeros(())
        total = 0.0
        for frames, (z_s, z_t) in zip(
            self.frames, paired_tensors(self.pairs, student.latents, teacher.latents)
        ):
            z_s = resample(z_s, (z_s.shape[-2], frames), self.resample_mode)
            diff = frame_similarity(z_s) - frame_similarity(z_t)
            total = total + diff.square().mean()
        return self.weight / len(self.pairs) * total


class FgSPKDMethod(KDMethod):
    """Match each sample's frame-by-frame self-similarity (Nathoo et al., 2024)."""

    name = "fgspkd"
    description = "Fine-grained similarity-preserving KD (Nathoo et al. 2024), the baseline"
    params: Mapping[str, Param] = {
        "weight": Param(1.0, "KD weight", float, at_least=0),
        "latents": latents_param(["encoder", "bottleneck"]),
        "resample": resample_param(),
        "two_step": Param(
            False,
            "KD-only pre-training for pretrain_fraction of the steps, then task loss only",
            bool,
        ),
        "pretrain_fraction": Param(
            0.3,
            "fraction of the training steps spent in KD-only pre-training",
            float,
            at_least=0,
            at_most=1,
        ),
    }

    def build(
        self,
        teacher_latents: Mapping[str, torch.Size],
        student_latents: Mapping[str, torch.Size],
    ) -> FgSPKDLoss:
        pairs = match_latents(self.hparams["latents"], teacher_latents, student_latents)
        return FgSPKDLoss(
            pairs,
            [teacher_latents[t][-1] for _, t in pairs],
            self.hparams["weight"],
            self.hparams["resample"],
            self.hparams["pretrain_fraction"] if self.hparams["two_step"] else None,
        )


@hookimpl
def kdbench_register_methods(register: Any) -> None:
    register.add(FgSPKDMethod)
