"""The trainer: seeded crops, per-crop teacher outputs, checkpoint policy, divergence."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from kdbench_plugins.methods.cosine import CosineMethod
from kdbench_plugins.models.unet import build_unet

from kdbench.api import Batch, DenoiserOutput, KDLoss, Utterance
from kdbench.config import TRAIN_PARAMS
from kdbench.errors import TrialDiverged
from kdbench.train.crops import CropSampler, full_batches
from kdbench.train.task_losses import magnitude_l1
from kdbench.train.teacher_outputs import TeacherOutputs
from kdbench.train.trainer import train, validation_loss

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
        assert torch.equal(a[0][0], first.crop_at(index, start))
    assert list(first.starts(0)) == list(range(0, 12001, 2000)) and first.crop_count() == 5 * 7


def test_an_utterance_shorter_than_a_crop_is_one_padded_crop():
    data = [*_utterances(1, seconds=0.2), *_utterances(1, seconds=1.0, seed=1)]
    sampler = CropSampler(data, 4000, 8, seed=0, grid_samples=2000)
    assert list(sampler.starts(0)) == [0] and sampler.crop_count() == 1 + 7
    noisy, _, keys = sampler.next_batch()
    short = [row for row, key in zip(noisy, keys) if key[0] == 0]
    assert short and all(torch.equal(row[3200:], torch.zeros(800)) for row in short)


def _frozen_teacher(seed: int = 0):
    torch.manual_seed(seed)
    teacher = build_unet({"channels": [4, 8]}).eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    return teacher


def test_tabled_teacher_outputs_equal_a_forward_pass_on_each_crop_alone(tmp_path):
    teacher = _frozen_teacher()
    sampler = CropSampler(_utterances(3), 4000, 3, seed=0, grid_samples=2000)
    keys = [(0, 2000), (2, 0), (1, 12000)]
    reads = frozenset({"bottleneck", "enc2", "magnitude"})
    first = TeacherOutputs(teacher, tmp_path)
    cold = first.outputs(sampler, keys, reads)
    assert first.computed == 3 * len(sampler.starts(0))  # the three utterances, every start
    other_process = TeacherOutputs(teacher, tmp_path)
    warm = other_process.outputs(sampler, keys, reads)
    assert other_process.computed == 0 and other_process.from_table == 3
    with torch.no_grad():
        alone = teacher(sampler.crop_at(2, 0)[None])
    for output in (cold, warm):
        assert torch.equal(output.latents["bottleneck"][1], alone.latents["bottleneck"][0])
        assert torch.equal(output.latents["enc2"][1], alone.latents["enc2"][0])
        assert torch.equal(output.magnitude[1], alone.magnitude[0])
        assert set(output.latents) == {"bottleneck", "enc2"}
    # enc2 is the bottleneck of a two-level UNet: one tensor, stored once
    assert sorted(path.name for path in (tmp_path / "4000-2000").iterdir()) == ["bottleneck", "magnitude"]


def test_a_table_of_encoder_latents_fills_without_the_decoder_with_a_full_passs_bits(tmp_path):
    torch.manual_seed(0)
    teacher = build_unet({"channels": [4, 8, 16]}).eval()
    ran: list[str] = []
    for part in ("encoder", "decoder"):
        for index, block in enumerate(getattr(teacher, part)):
            block.register_forward_hook(lambda *_, level=f"{part}{index}": ran.append(level))
    sampler = CropSampler(_utterances(2), 4000, 2, seed=0, grid_samples=2000)
    table = TeacherOutputs(teacher, tmp_path)
    output = table.outputs(sampler, [(1, 2000)], frozenset({"enc1"}))
    # one full pass on a silent crop learns the outputs' names and sizes; the fill runs
    # the first level alone, once per crop start
    assert table.computed == len(sampler.starts(1)) > 0
    assert ran.count("encoder0") == 1 + table.computed
    assert all(ran.count(level) == 1 for level in set(ran) - {"encoder0"})
    ran.clear()
    with torch.no_grad():
        alone = teacher(sampler.crop_at(1, 2000)[None])
    assert "decoder0" in ran
    assert torch.equal(output.latents["enc1"][0], alone.latents["enc1"][0])


def test_outputs_past_the_disk_budget_are_computed_live_with_the_same_values(tmp_path):
    teacher = _frozen_teacher()
    sampler = CropSampler(_utterances(3), 4000, 2, seed=0, grid_samples=2000)
    keys = [(0, 0), (1, 4000)]
    probe = TeacherOutputs(teacher, tmp_path / "probe")
    probe.outputs(sampler, keys, frozenset({"bottleneck"}))
    bottleneck_table = probe.crop_bytes["bottleneck"] * sampler.crop_count()
    assert probe.crop_bytes["magnitude"] > probe.crop_bytes["bottleneck"]
    reads = frozenset({"bottleneck", "magnitude"})
    tight = TeacherOutputs(teacher, tmp_path / "tight", budget_bytes=bottleneck_table)
    first, second = tight.outputs(sampler, keys, reads), tight.outputs(sampler, keys, reads)
    assert sorted(path.name for path in (tmp_path / "tight" / "4000-2000").iterdir()) == ["bottleneck"]
    unbounded = TeacherOutputs(teacher, tmp_path / "unbounded").outputs(sampler, keys, reads)
    for output in (first, second):
        assert torch.equal(output.magnitude, unbounded.magnitude)
        assert torch.equal(output.latents["bottleneck"], unbounded.latents["bottleneck"])


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


def test_a_kd_trial_gives_the_same_weights_whatever_the_state_of_the_table(tmp_path):
    teacher = _frozen_teacher()
    cache = TeacherOutputs(teacher, tmp_path)
    cold = _student_after_kd(teacher, cache)
    assert cache.computed > 0
    warm = _student_after_kd(teacher, TeacherOutputs(teacher, tmp_path))
    no_table = _student_after_kd(teacher, TeacherOutputs(teacher, None))
    for name in cold:
        assert torch.equal(cold[name], warm[name]), name
        assert torch.equal(cold[name], no_table[name]), name


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
    kept = validation_loss(model, full_batches(data[:2], 4), magnitude_l1)
    assert kept == pytest.approx(result.best_valid_loss, rel=1e-6)


def test_the_suppression_weight_scales_only_removed_speech_and_is_the_l1_at_one():
    clean = torch.tensor([[[1.0, 1.0, 1.0, 1.0]]])
    estimate = torch.tensor([[[0.5, 1.5, 1.0, 0.25]]], requires_grad=True)  # under, over, exact, under
    batch = Batch(torch.zeros(1, 4), torch.zeros(1, 4), clean, 0, 0)

    def loss(weight):
        return magnitude_l1(DenoiserOutput(estimate, {}, 4), batch, suppression_weight=weight)

    assert float(loss(2.0).detach()) == (2 * 0.5 + 0.5 + 0 + 2 * 0.75) / 4
    symmetric = (estimate - clean).abs().mean()
    (grad_symmetric,) = torch.autograd.grad(symmetric, estimate)
    (grad_one,) = torch.autograd.grad(loss(1.0), estimate)
    assert torch.equal(loss(1.0), symmetric) and torch.equal(grad_one, grad_symmetric)


def test_training_at_suppression_weight_one_is_training_without_it():
    """1 is the neutral default that keeps trial ids: it must also keep every bit."""
    data = _utterances(4)
    weights = []
    for settings in ({k: v for k, v in SETTINGS.items() if k != "suppression_weight"}, SETTINGS):
        torch.manual_seed(0)
        model = build_unet({"channels": [2, 4]})
        train(model, data, data[:2], settings, seed=0, sample_rate=RATE)
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    torch.manual_seed(0)
    model = build_unet({"channels": [2, 4]})
    train(model, data, data[:2], {**SETTINGS, "suppression_weight": 2.0}, seed=0, sample_rate=RATE)
    assert torch.equal(weights[0], weights[1])
    assert not torch.equal(weights[0], torch.cat([p.detach().flatten() for p in model.parameters()]))


def test_a_cosine_schedule_decays_the_rate_to_zero_and_changes_the_weights(monkeypatch):
    rates = []
    step = torch.optim.Adam.step

    def recording(self, *args, **kwargs):
        rates.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", recording)
    data = _utterances(4)
    weights = {}
    for schedule in ("constant", "cosine"):
        rates.clear()
        torch.manual_seed(0)
        model = build_unet({"channels": [2, 4]})
        train(model, data, data[:2], {**SETTINGS, "lr_schedule": schedule}, seed=0, sample_rate=RATE)
        weights[schedule] = torch.cat([p.flatten() for p in model.parameters()])
        if schedule == "constant":
            assert rates == [SETTINGS["lr"]] * SETTINGS["steps"]
        else:  # cosine from lr at the first step towards zero after the last
            assert rates[0] == SETTINGS["lr"] and rates == sorted(rates, reverse=True)
            assert rates[-1] == pytest.approx(SETTINGS["lr"] * (1 + math.cos(math.pi * 5 / 6)) / 2)
    assert not torch.equal(weights["constant"], weights["cosine"])
