"""The trainer: seeded crops, per-crop teacher outputs, checkpoint policy, divergence."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kdbench.api import Batch, KDLoss, Utterance
from kdbench.config import TRAIN_PARAMS
from kdbench.errors import TrialDiverged
from kdbench.train.crops import CropSampler, full_batches
from kdbench.train.teacher_outputs import TeacherOutputs
from kdbench.train.trainer import train, validation_loss
from kdbench_plugins.methods.cosine import CosineMethod
from kdbench_plugins.models.unet import build_unet

RATE = 16000


def _utterances(count: int, seconds: float = 1.0, seed: int = 0) -> list[Utterance]:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    out = []
    for index in range(count):
        clean = (0.3 * np.sin(2 * np.pi * (150 + 20 * index) * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
        noisy = (clean + 0.1 * rng.standard_normal(clean.shape)).astype(np.float32)
        out.append(Utterance(f"u{index}", clean, noisy))
    return out


SETTINGS = {
    **{name: param.default for name, param in TRAIN_PARAMS.items()},
    "steps": 6,
    "batch_size": 4,
    "crop_seconds": 0.5,
    "valid_every": 3,
}


def test_crops_follow_the_seed_and_lie_on_the_grid():
    data = _utterances(5)
    first = CropSampler(data, 4000, 3, seed=7, grid_samples=2000)
    second = CropSampler(data, 4000, 3, seed=7, grid_samples=2000)
    for _ in range(4):
        a, b = first.next_batch(), second.next_batch()
        assert torch.equal(a[0], b[0]) and a[2] == b[2]
        assert all(start % 2000 == 0 for _, start in a[2])
        index, start = a[2][0]
        assert torch.equal(a[0][0], torch.from_numpy(data[index].noisy[start : start + 4000]))


def test_cached_teacher_outputs_equal_a_forward_pass_on_each_crop_alone():
    torch.manual_seed(0)
    teacher = build_unet({"channels": [4, 8]}).eval()
    cache = TeacherOutputs(teacher)
    noisy = torch.randn(3, 8000)
    reads = frozenset({"bottleneck", "magnitude"})
    cold = cache.outputs(noisy, ["a", "b", "c"], reads)
    warm = cache.outputs(noisy, ["a", "b", "c"], reads)
    with torch.no_grad():
        alone = teacher(noisy[1:2])
    assert torch.equal(cold.latents["bottleneck"], warm.latents["bottleneck"])
    assert torch.equal(warm.latents["bottleneck"][1], alone.latents["bottleneck"][0])
    assert torch.equal(warm.magnitude[1], alone.magnitude[0])
    assert (cache.computed, cache.reused) == (3, 3)
    assert set(warm.latents) == {"bottleneck"}


def test_the_cache_budget_bounds_memory_but_not_the_values():
    teacher = build_unet({"channels": [4, 8]}).eval()
    cache = TeacherOutputs(teacher, budget_bytes=0)
    noisy = torch.randn(2, 8000)
    reads = frozenset({"bottleneck"})
    first = cache.outputs(noisy, ["a", "b"], reads)
    second = cache.outputs(noisy, ["a", "b"], reads)
    assert cache.bytes == 0 and cache.computed == 4
    assert torch.equal(first.latents["bottleneck"], second.latents["bottleneck"])


def _student_after_kd(teacher, cache: TeacherOutputs | None) -> dict[str, torch.Tensor]:
    data = _utterances(6)
    torch.manual_seed(3)
    student = build_unet({"channels": [2, 4]})
    method = CosineMethod()
    shapes = lambda m: {k: v.shape for k, v in m(torch.zeros(1, 8000)).latents.items()}  # noqa: E731
    with torch.no_grad():
        kd = method.build(shapes(teacher), shapes(student.eval()))
    train(student, data, data[:2], SETTINGS, seed=3, sample_rate=RATE, kd_loss=kd,
          teacher=teacher, teacher_outputs=cache)
    return student.state_dict()


def test_a_kd_trial_gives_the_same_weights_with_a_cold_or_a_warm_cache():
    teacher = build_unet({"channels": [4, 8]}).eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    cache = TeacherOutputs(teacher)
    cold = _student_after_kd(teacher, cache)
    assert cache.computed > 0
    warm = _student_after_kd(teacher, cache)
    assert cache.reused > 0
    fresh = _student_after_kd(teacher, TeacherOutputs(teacher))
    for name in cold:
        assert torch.equal(cold[name], warm[name]) and torch.equal(cold[name], fresh[name]), name


class Exploding(KDLoss):
    def forward(self, student, teacher, batch: Batch) -> torch.Tensor:
        return student.magnitude.sum() * math.nan


def test_a_non_finite_loss_raises_trial_diverged_naming_the_step():
    data = _utterances(4)
    model = build_unet({"channels": [2, 4]})
    with pytest.raises(TrialDiverged, match="non-finite loss .* at step 1 of 6"):
        train(model, data, data[:1], SETTINGS, seed=0, sample_rate=RATE, kd_loss=Exploding())


def test_best_valid_keeps_the_step_with_the_lowest_validation_loss():
    data = _utterances(4)
    model = build_unet({"channels": [2, 4]})
    result = train(model, data, data[:2], {**SETTINGS, "checkpoint": "best_valid", "valid_every": 2},
                   seed=0, sample_rate=RATE)
    losses = {entry["step"]: entry["valid_loss"] for entry in result.history}
    assert result.kept_step == min(losses, key=losses.get)
    assert result.best_valid_loss == min(losses.values())
    assert not model.training
    kept = validation_loss(model, full_batches(data[:2], 4), "magnitude_l1")
    assert kept == pytest.approx(result.best_valid_loss, rel=1e-6)
