"""The teacher's outputs per training crop, computed once per worker and reused.

The teacher is frozen and in eval mode, so its output on a crop depends on that crop only.
Each crop is run alone (a batch of one), whether or not it was seen before, so the values
a student sees never depend on what else was in the cache — a trial gives the same numbers
alone or after others. Only the outputs the KD loss declares it reads are kept, within a
memory budget (`KDBENCH_TEACHER_CACHE_MB`, default 1500 per worker process); past the
budget, crops are still computed one by one, just not kept.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Sequence

import torch

from kdbench.api import DenoiserOutput, MaskDenoiser

BUDGET_ENV = "KDBENCH_TEACHER_CACHE_MB"


def _budget_bytes() -> int:
    return int(float(os.environ.get(BUDGET_ENV, "1500")) * 2**20)


class TeacherOutputs:
    """Per-crop teacher outputs, keyed by the crop's identity in its dataset."""

    def __init__(self, teacher: MaskDenoiser, budget_bytes: int | None = None) -> None:
        self.teacher = teacher
        self.budget = _budget_bytes() if budget_bytes is None else budget_bytes
        self.entries: dict[Hashable, dict[str, torch.Tensor]] = {}
        self.bytes = 0
        self.computed = 0
        self.reused = 0

    def _compute(self, noisy: torch.Tensor, reads: frozenset[str]) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            output = self.teacher(noisy[None])
        self.computed += 1
        return {
            name: (output.magnitude if name == "magnitude" else output.latents[name])[0].clone()
            for name in reads
        }

    def _entry(self, key: Hashable, noisy: torch.Tensor, reads: frozenset[str]) -> dict[str, torch.Tensor]:
        entry = self.entries.get(key)
        if entry is not None and reads <= entry.keys():
            self.reused += 1
            return entry
        fresh = self._compute(noisy, reads)
        added = sum(t.numel() * t.element_size() for n, t in fresh.items() if entry is None or n not in entry)
        if self.bytes + added <= self.budget:
            self.entries[key] = {**(entry or {}), **fresh}
            self.bytes += added
        return fresh

    def outputs(
        self, noisy: torch.Tensor, keys: Sequence[Hashable], reads: frozenset[str]
    ) -> DenoiserOutput:
        """The teacher's output on a batch of crops, holding only the outputs in `reads`."""
        rows = [self._entry(key, crop, reads) for key, crop in zip(keys, noisy)]
        stacked = {name: torch.stack([row[name] for row in rows]) for name in reads}
        empty = noisy.new_empty(0)
        return DenoiserOutput(
            magnitude=stacked.pop("magnitude", empty),
            latents=stacked,
            noisy_spec=empty,
            length=noisy.shape[-1],
            synthesize=self.teacher.istft,
        )


_per_process: dict[str, TeacherOutputs] = {}


def shared_teacher_outputs(key: str, teacher: MaskDenoiser) -> TeacherOutputs:
    """One cache per teacher and dataset crops per worker process, shared by its trials."""
    if key not in _per_process:
        _per_process[key] = TeacherOutputs(teacher)
    return _per_process[key]
