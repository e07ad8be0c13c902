"""Denoising losses against the clean target, selected by `train.task_loss`."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import torch

from kdbench.api import Batch, DenoiserOutput


def magnitude_l1(
    output: DenoiserOutput, batch: Batch, suppression_weight: float = 1.0
) -> torch.Tensor:
    """The paper's loss: L1 between the masked and the clean magnitude.

    With `suppression_weight` w, a bin estimated below the clean magnitude (speech removed)
    costs w times one left above it (noise kept): a speech-distortion weighting, because a
    small student that learned to remove noise on one corpus removes parts of speech it
    never heard, and listeners lose intelligibility to that more than to leftover noise
    (BENCHMARKS.md §11). w = 1 is the symmetric L1, to the bit.
    """
    error = output.magnitude - batch.clean_magnitude
    return torch.where(error < 0, suppression_weight * error.abs(), error.abs()).mean()


def negative_si_sdr(output: DenoiserOutput, batch: Batch) -> torch.Tensor:
    """Negative zero-mean SI-SDR of the resynthesised waveform, in dB."""
    estimate = output.waveform()
    estimate = estimate - estimate.mean(dim=-1, keepdim=True)
    target = batch.clean - batch.clean.mean(dim=-1, keepdim=True)
    scale = (estimate * target).sum(-1, keepdim=True) / (target.pow(2).sum(-1, keepdim=True) + 1e-8)
    projection = scale * target
    noise = estimate - projection
    ratio = projection.pow(2).sum(-1) / (noise.pow(2).sum(-1) + 1e-8)
    return -10 * torch.log10(ratio + 1e-8).mean()


def multi_resolution_stft(output: DenoiserOutput, batch: Batch) -> torch.Tensor:
    """Spectral convergence plus log-magnitude L1 at three resolutions, on the waveform."""
    estimate = output.waveform()
    total = estimate.new_zeros(())
    for n_fft, hop in ((256, 64), (512, 128), (1024, 256)):
        window = torch.hann_window(n_fft, device=estimate.device)
        est = torch.stft(estimate, n_fft, hop, window=window, return_complex=True).abs()
        ref = torch.stft(batch.clean, n_fft, hop, window=window, return_complex=True).abs()
        convergence = torch.linalg.norm(ref - est) / (torch.linalg.norm(ref) + 1e-8)
        log_l1 = (torch.log(est + 1e-7) - torch.log(ref + 1e-7)).abs().mean()
        total = total + convergence + log_l1
    return total / 3


TASK_LOSSES: dict[str, Callable[[DenoiserOutput, Batch], torch.Tensor]] = {
    "magnitude_l1": magnitude_l1,
    "si_sdr": negative_si_sdr,
    "mr_stft": multi_resolution_stft,
}


def task_loss_of(settings: Mapping[str, Any]) -> Callable[[DenoiserOutput, Batch], torch.Tensor]:
    """The loss `train.task_loss` names, with `train.suppression_weight` where it applies.

    Only the magnitude L1 compares bins one by one, so only it can weigh a bin's sign; a
    weight other than 1 with another loss is an error rather than silently ignored.
    """
    name, weight = settings["task_loss"], float(settings.get("suppression_weight", 1.0))
    if name == "magnitude_l1":
        return functools.partial(magnitude_l1, suppression_weight=weight)
    if weight != 1.0:
        raise ValueError(
            f"train.suppression_weight={weight:g} applies to task_loss magnitude_l1 only, "
            f"not {name}; set it to 1 or use magnitude_l1"
        )
    return TASK_LOSSES[name]
