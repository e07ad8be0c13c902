"""What a model costs to deploy: size, arithmetic per second of audio, and CPU speed.

A KD student is only worth having if it is cheaper than its teacher, so every trial
records these next to the quality metrics.
"""

from __future__ import annotations

import io
import statistics
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

RTF_SECONDS = 4.0
"""Input length for the speed measurement: long enough that per-call overhead is small."""


def model_cost(
    model: nn.Module, sample_rate: int, seconds: float = 1.0, rtf_repeats: int = 5
) -> dict[str, float]:
    """Cost figures of `model`, called as `model(waveform)` on a (1, samples) CPU tensor.

    - `params`: number of parameters (trainable or not); buffers such as BatchNorm
      statistics are excluded, as they are not learned weights.
    - `macs_per_second`: multiply-accumulates per second of audio, from torch's FLOP
      counter (FLOPs / 2) on `seconds` of input. It counts matrix products and
      convolutions only; FFTs, activations and normalisation are not included.
    - `size_bytes`: bytes of the `state_dict` (persistent buffers included) saved with
      `torch.save`, i.e. what a checkpoint of the deployed model weighs.
    - `rtf`: real-time factor on one CPU thread, the median time of `rtf_repeats`
      forwards of 4 s of audio divided by 4 s, after one untimed warm-up.

    The model runs in eval mode under `torch.inference_mode()`, so BatchNorm statistics
    are left untouched; each module's training flag and torch's thread count are restored.
    """
    generator = torch.Generator().manual_seed(0)
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        params = sum(parameter.numel() for parameter in model.parameters())
        macs = _count_macs(model, _noise(sample_rate, seconds, generator))
        rtf = _real_time_factor(model, _noise(sample_rate, RTF_SECONDS, generator), rtf_repeats)
    finally:
        for module, training in modes.items():
            module.training = training
    return {
        "params": float(params),
        "macs_per_second": macs / seconds,
        "size_bytes": float(_state_dict_bytes(model)),
        "rtf": rtf / RTF_SECONDS,
    }


def macs_per_second(model: nn.Module, sample_rate: int, seconds: float = 1.0) -> float:
    """Multiply-accumulates per second of audio (convolutions and matrix products)."""
    generator = torch.Generator().manual_seed(0)
    was_training = model.training
    model.eval()
    try:
        return _count_macs(model, _noise(sample_rate, seconds, generator)) / seconds
    finally:
        model.train(was_training)


def _noise(sample_rate: int, seconds: float, generator: torch.Generator) -> torch.Tensor:
    """Random input rather than zeros, so no data-dependent shortcut flatters the timing."""
    return 0.1 * torch.randn(1, int(round(sample_rate * seconds)), generator=generator)


def _count_macs(model: nn.Module, wave: torch.Tensor) -> float:
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(wave)
    return counter.get_total_flops() / 2.0


def _real_time_factor(model: nn.Module, wave: torch.Tensor, repeats: int) -> float:
    """Median seconds per forward on one thread: a single core is the deployment target,
    and the median ignores a stray slow run on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            model(wave)
            timings = []
            for _ in range(max(1, repeats)):
                start = time.perf_counter()
                model(wave)
                timings.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    return statistics.median(timings)


def _state_dict_bytes(model: nn.Module) -> int:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes
