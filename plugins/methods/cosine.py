"""The paper's method: align the direction of the student's latent with the teacher's.

Luong, Heikkinen, Drossos, Virtanen, "Knowledge Distillation for Speech Denoising by
Latent Representation Alignment with Cosine Distance", AES 158th Convention (2025),
arXiv:2505.03442. A learned 1x1 convolution (the linear inverted bottleneck) widens the
student's latent to the teacher's channels, so widths need not match; the cosine ignores
scale, so the student copies the teacher's direction, not its distribution.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

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


def cosine_distance(z_s: torch.Tensor, z_t: torch.Tensor, axis: str) -> torch.Tensor:
    """Mean of 1 - cos over the vectors `axis` defines, for (batch, channels, freq, frames).

    frame: one vector of channels x freq per frame; channel: one vector of channels per
    time-frequency bin; flat: one vector per sample. Flattening contiguous leading axes
    is a view, so no map is copied.
    """
    if axis == "frame":
        z_s, z_t = z_s.flatten(1, 2), z_t.flatten(1, 2)
    elif axis == "flat":
        z_s, z_t = z_s.flatten(1), z_t.flatten(1)
    return (1.0 - F.cosine_similarity(z_s, z_t, dim=1)).mean()


class CosineLoss(AlignedLatentLoss):
    def __init__(
        self, pairs: list[tuple[str, str]], aligners: nn.ModuleList, weight: float, axis: str
    ) -> None:
        super().__init__(pairs, aligners, weight)
        self.axis = axis

    def distance(self, z_s: torch.Tensor, z_t: torch.Tensor) -> torch.Tensor:
        return cosine_distance(z_s, z_t, self.axis)


class CosineMethod(KDMethod):
    """Cosine distance between the projected student latent and the teacher latent.

    Each term lies in [0, 2] and is unchanged by positive scaling of either latent (the
    projection has no bias for that reason). Terms are averaged over the matched latents.
    """

    name = "cosine"
    description = "Cosine distance between projected student and teacher latents (the paper)"
    params: Mapping[str, Param] = {
        "weight": Param(1.0, "KD weight lambda", float, at_least=0),
        "latents": latents_param(["bottleneck"]),
        "match": match_param(),
        "axis": Param(
            "frame",
            "vectors compared: frame (channels x freq per frame), channel (channels per "
            "time-frequency bin) or flat (one per sample)",
            str,
            ("frame", "channel", "flat"),
        ),
        "resample": resample_param(),
    }

    def build(
        self,
        teacher_latents: Mapping[str, torch.Size],
        student_latents: Mapping[str, torch.Size],
    ) -> CosineLoss:
        pairs, aligners = aligned_pairs(self.hparams, teacher_latents, student_latents)
        return CosineLoss(pairs, aligners, self.hparams["weight"], self.hparams["axis"])


@hookimpl
def kdbench_register_methods(register: Any) -> None:
    register.add(CosineMethod)
