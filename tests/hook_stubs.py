"""One third-party object per hook, loaded through KDBENCH_PLUGINS as an installed plugin
would be, small enough that a whole grid of them runs in seconds (tests/test_hooks.py)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from kdbench import api

SAMPLE_RATE = 16000


class Gain(api.MaskDenoiser):
    """A learnable per-bin gain: the smallest model a trainer can train."""

    def __init__(self, bins: int) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(bins, 1))

    def mask_network(self, magnitude):
        mask = torch.sigmoid(self.logits).expand_as(magnitude)
        return mask, {"bottleneck": magnitude * mask}


GAIN = api.ModelFamily("gain", "a learnable gain per frequency bin", lambda p: Gain(p["bins"]))
TINY = api.ArchitecturePair(
    "tiny", "gain teacher and student", api.ModelSpec("gain", {"bins": 257}),
    api.ModelSpec("gain", {"bins": 257}), varies="nothing",
)


class _Zero(api.KDLoss):
    def forward(self, student, teacher, batch):
        return student.magnitude.sum() * 0.0


class ZeroKD(api.KDMethod):
    name = "zero_kd"
    description = "adds nothing"
    needs_teacher = False

    def build(self, teacher_latents, student_latents):
        return _Zero()


class PeakRatio(api.Metric):
    name = "peak_ratio"
    description = "peak of estimate over peak of clean"

    def compute(self, clean, estimate, sample_rate):
        return float(np.abs(estimate).max() / np.abs(clean).max())


class Tones(api.Dataset):
    name = "tones"
    description = "noisy tones, two per split"

    def prepare(self, params, cache_dir):
        rng = np.random.default_rng(0)
        time = np.arange(SAMPLE_RATE) / SAMPLE_RATE
        splits = {}
        for split in ("train", "valid", "test"):
            splits[split] = []
            for index in range(2):
                clean = (0.4 * np.sin(2 * np.pi * 300 * (index + 1) * time)).astype(np.float32)
                noisy = (clean + 0.05 * rng.standard_normal(clean.size)).astype(np.float32)
                splits[split].append(api.Utterance(f"{split}{index}", clean, noisy))
        return api.PreparedDataset("tones", "tones-0", SAMPLE_RATE, splits)


class Reversed(api.Executor):
    """Runs items last to first, in this process; remembers the order it ran them."""

    name = "reversed"
    description = "runs items last to first"
    ran: list[str] = []

    def run(self, work, items, jobs, params, lost):
        for item in reversed(items):
            Reversed.ran.append(item.id)
            yield work(item)


@api.hookimpl
def kdbench_register_methods(register: Any) -> None:
    register.add(ZeroKD)


@api.hookimpl
def kdbench_register_pairs(register: Any) -> None:
    register.add(TINY)


@api.hookimpl
def kdbench_register_models(register: Any) -> None:
    register.add(GAIN)


@api.hookimpl
def kdbench_register_metrics(register: Any) -> None:
    register.add(PeakRatio())


@api.hookimpl
def kdbench_register_datasets(register: Any) -> None:
    register.add(Tones())


@api.hookimpl
def kdbench_register_executors(register: Any) -> None:
    register.add(Reversed())
