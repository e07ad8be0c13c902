"""Distance-wise relational KD (Park, Kim, Lu, Cho, "Relational Knowledge Distillation",
CVPR 2019) on kdbench latents: match the pattern of distances between samples, not the
samples themselves, so latents of different widths need no adapter."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdbench.api import KDLoss, KDMethod, NotApplicable, Param, hookimpl


def normalised_distances(latent: torch.Tensor) -> torch.Tensor:
    """Pairwise Euclidean distances between a batch's samples, divided by their mean, so the
    relation is independent of the latent's scale and size."""
    flat = latent.flatten(1)
    distances = torch.cdist(flat, flat)
    off_diagonal = distances[~torch.eye(len(flat), dtype=torch.bool, device=flat.device)]
    return distances / off_diagonal.mean().clamp_min(1e-8)


class RelationalLoss(KDLoss):
    def __init__(self, latent: str, weight: float) -> None:
        super().__init__()
        self.latent = latent
        self.weight = weight

    def teacher_reads(self) -> frozenset[str]:
        return frozenset({self.latent})

    def forward(self, student, teacher, batch) -> torch.Tensor:
        if len(batch.noisy) < 2:
            return student.latents[self.latent].new_zeros(())
        target = normalised_distances(teacher.latents[self.latent].detach())
        return self.weight * F.smooth_l1_loss(normalised_distances(student.latents[self.latent]), target)


class RelationalMethod(KDMethod):
    name = "relational"
    description = "Relational KD: match the teacher's normalised distances between samples"
    params = {
        "weight": Param(1.0, "KD weight", float),
        "latent": Param("bottleneck", "the latent whose sample-to-sample distances are matched", str),
    }

    def build(self, teacher_latents, student_latents) -> RelationalLoss:
        latent = self.hparams["latent"]
        if latent not in teacher_latents or latent not in student_latents:
            raise NotApplicable(f"latent {latent!r} missing from the teacher or the student")
        return RelationalLoss(latent, self.hparams["weight"])


@hookimpl
def kdbench_register_methods(register) -> None:
    register.add(RelationalMethod)
