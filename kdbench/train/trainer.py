"""One training loop for teachers and students: the task loss plus a method's KD term."""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from kdbench.api import Batch, KDLoss, Denoiser, Utterance
from kdbench.errors import TrialDiverged
from kdbench.train.crops import CropSampler, full_batches
from kdbench.train.task_losses import TASK_LOSSES
from kdbench.train.teacher_outputs import TeacherOutputs


@dataclasses.dataclass
class TrainResult:
    """What training produced: the kept weights and how they were chosen."""

    steps: int
    kept_step: int
    final_loss: float
    best_valid_loss: float | None
    seconds: float
    history: list[dict[str, float]]


def validation_loss(
    model: Denoiser, batches: Sequence[tuple[torch.Tensor, torch.Tensor]], task_loss: str
) -> float:
    """Mean task loss over full validation utterances, in eval mode."""
    loss_fn = TASK_LOSSES[task_loss]
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for noisy, clean in batches:
            output = model(noisy)
            batch = Batch(noisy, clean, model.stft(clean).abs(), 0, 0)
            total += float(loss_fn(output, batch)) * len(noisy)
            count += len(noisy)
    model.train(was_training)
    return total / max(count, 1)


def train(
    model: Denoiser,
    train_split: Sequence[Utterance],
    valid_split: Sequence[Utterance],
    settings: Mapping[str, Any],
    seed: int,
    sample_rate: int,
    kd_loss: KDLoss | None = None,
    teacher: Denoiser | None = None,
    on_step: Callable[[int, int], None] | None = None,
    teacher_outputs: TeacherOutputs | None = None,
) -> TrainResult:
    """Train `model` in place and leave it in eval mode with the weights the policy keeps.

    The checkpoint policy is `last` or `best_valid` (lowest validation task loss); the test
    split never enters training. A non-finite loss raises `TrialDiverged` naming the step.
    The teacher runs under `no_grad` with frozen parameters: its latents are plain tensors
    that the KD loss may save for backward (inference-mode tensors could not be). When the
    KD loss declares what it reads and `teacher_outputs` is given, those outputs come from
    the teacher's per-crop table instead of a forward pass at every step.
    """
    torch.manual_seed(seed)
    steps = int(settings["steps"])
    loss_fn = TASK_LOSSES[settings["task_loss"]]
    sampler = CropSampler(
        train_split,
        crop_samples=int(round(settings["crop_seconds"] * sample_rate)),
        batch_size=int(settings["batch_size"]),
        seed=seed,
        grid_samples=int(round(settings["crop_grid_seconds"] * sample_rate)),
    )
    reads = kd_loss.teacher_reads() if kd_loss is not None else None
    parameters = list(model.parameters())
    if kd_loss is not None:
        parameters += list(kd_loss.parameters())
        kd_loss.train()
    optimizer = torch.optim.Adam(parameters, lr=float(settings["lr"]))
    valid_batches = full_batches(valid_split, int(settings["batch_size"]))
    keep_best = settings["checkpoint"] == "best_valid"
    best_loss: float | None = None
    best_state: dict[str, torch.Tensor] | None = None
    kept_step = steps
    history: list[dict[str, float]] = []
    started = time.perf_counter()
    model.train()
    loss_value = math.nan
    for step in range(1, steps + 1):
        noisy, clean, keys = sampler.next_batch()
        clean_magnitude = model.stft(clean).abs()
        output = model(noisy)
        batch = Batch(noisy, clean, clean_magnitude, step, steps)
        loss = loss_fn(output, batch)
        if kd_loss is not None:
            teacher_output = None
            if teacher_outputs is not None and reads is not None:
                teacher_output = teacher_outputs.outputs(sampler, keys, reads)
            elif teacher is not None:
                with torch.no_grad():
                    teacher_output = teacher(noisy)
            loss = kd_loss.task_weight(batch) * loss + kd_loss(output, teacher_output, batch)
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            raise TrialDiverged(f"non-finite loss ({loss_value}) at step {step} of {steps}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if settings["grad_clip"] > 0:
            torch.nn.utils.clip_grad_norm_(parameters, float(settings["grad_clip"]))
        optimizer.step()
        if step % int(settings["valid_every"]) == 0 or step == steps:
            valid = validation_loss(model, valid_batches, settings["task_loss"])
            history.append({"step": step, "loss": loss_value, "valid_loss": valid})
            if keep_best and (best_loss is None or valid < best_loss):
                best_loss, kept_step = valid, step
                best_state = copy.deepcopy(model.state_dict())
        if on_step is not None:
            on_step(step, steps)
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return TrainResult(
        steps=steps,
        kept_step=kept_step,
        final_loss=loss_value,
        best_valid_loss=best_loss,
        seconds=time.perf_counter() - started,
        history=history,
    )
