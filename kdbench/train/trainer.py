"""One training loop for teachers and students: the task loss plus a method's KD term."""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from kdbench.api import Batch, Denoiser, DenoiserOutput, KDLoss, Utterance
from kdbench.errors import TrialDiverged
from kdbench.train.crops import CropSampler, full_batches
from kdbench.train.numerics import autocast
from kdbench.train.task_losses import task_loss_of
from kdbench.train.teacher_outputs import TeacherOutputs

DIVERGENCE_CHECK_STEPS = 50
"""On a GPU the loss is read back every this many steps (and at every validation and the
last step), not every step: reading it makes the host wait for the device. The check still
names the first non-finite step. On a CPU reading is free, so every step is checked."""


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
    model: Denoiser,
    batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    loss_fn: Callable[[DenoiserOutput, Batch], torch.Tensor],
) -> float:
    """Mean task loss over full validation utterances, in eval mode."""
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
    device: torch.device | None = None,
) -> TrainResult:
    """Train `model` in place and leave it in eval mode with the weights the policy keeps.

    The checkpoint policy is `last` or `best_valid` (lowest validation task loss); the test
    split never enters training. A non-finite loss raises `TrialDiverged` naming the step.
    The teacher runs under `no_grad` with frozen parameters: its latents are plain tensors
    that the KD loss may save for backward (inference-mode tensors could not be). When the
    KD loss declares what it reads and `teacher_outputs` is given, those outputs come from
    the teacher's per-crop table instead of a forward pass at every step.

    Everything runs on `device` (default CPU): the model and the KD loss's adapters are
    moved there, crops are cut and STFTs computed there, and a given teacher must already
    be there. `settings["precision"]` `bf16` runs the forward and the losses under bf16
    autocast (the teacher's outputs stay fp32, so a table and a live teacher agree).
    """
    device = torch.device(device or "cpu")
    torch.manual_seed(seed)
    steps = int(settings["steps"])
    loss_fn = task_loss_of(settings)
    precision = settings.get("precision", "fp32")
    model.to(device)
    sampler = CropSampler(
        train_split,
        crop_samples=int(round(settings["crop_seconds"] * sample_rate)),
        batch_size=int(settings["batch_size"]),
        seed=seed,
        grid_samples=int(round(settings["crop_grid_seconds"] * sample_rate)),
        device=device,
    )
    reads = kd_loss.teacher_reads() if kd_loss is not None else None
    parameters = list(model.parameters())
    if kd_loss is not None:
        kd_loss.to(device)
        parameters += list(kd_loss.parameters())
        kd_loss.train()
    # Fused Adam on a GPU: one kernel per step instead of one per tensor (CPU keeps the default).
    fused = {"fused": True} if device.type == "cuda" else {}
    optimizer = torch.optim.Adam(parameters, lr=float(settings["lr"]), **fused)
    scheduler = (
        torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
        if settings.get("lr_schedule", "constant") == "cosine"
        else None
    )
    valid_batches = [
        (noisy.to(device), clean.to(device))
        for noisy, clean in full_batches(valid_split, int(settings["batch_size"]))
    ]
    check_every = 1 if device.type == "cpu" else DIVERGENCE_CHECK_STEPS
    unchecked: list[torch.Tensor] = []
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
        batch = Batch(noisy, clean, clean_magnitude, step, steps)
        with autocast(device, precision):
            output = model(noisy)
            loss = loss_fn(output, batch)
        if kd_loss is not None:
            teacher_output = None
            if teacher_outputs is not None and reads is not None:
                teacher_output = teacher_outputs.outputs(sampler, keys, reads)
            elif teacher is not None:
                with torch.no_grad():
                    teacher_output = teacher(noisy)
            with autocast(device, precision):
                loss = kd_loss.task_weight(batch) * loss + kd_loss(output, teacher_output, batch)
        unchecked.append(loss.detach())
        validating = step % int(settings["valid_every"]) == 0 or step == steps
        if validating or len(unchecked) >= check_every:
            loss_value = _checked(unchecked, step, steps)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if settings["grad_clip"] > 0:
            torch.nn.utils.clip_grad_norm_(parameters, float(settings["grad_clip"]))
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if validating:
            valid = validation_loss(model, valid_batches, loss_fn)
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


def _checked(losses: list[torch.Tensor], last_step: int, steps: int) -> float:
    """The last of the losses of steps `last_step - len(losses) + 1 … last_step`, read in
    one transfer; the first non-finite one raises `TrialDiverged` naming its step. Empties
    `losses`."""
    values = torch.stack(losses).tolist()
    losses.clear()
    first_step = last_step - len(values) + 1
    for step, value in enumerate(values, start=first_step):
        if not math.isfinite(value):
            raise TrialDiverged(f"non-finite loss ({value}) at step {step} of {steps}")
    return values[-1]
