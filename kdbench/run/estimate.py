"""What a grid will cost before it runs: counted multiply-accumulates, turned into hours
at a stated throughput.

Training one step costs about three forward passes (forward, and a backward pass of about
twice the forward), so a model's training compute is 3 × its MACs per second of audio ×
the audio it sees (steps × batch × crop length). A KD method that reads the teacher adds
one teacher forward per crop (an upper bound: the per-crop table computes each crop once
per teacher). Evaluation forwards are a few percent of that and are left out. Hours follow from an
*effective* throughput, which for small convolutional UNets is far below a device's peak:
the default is an assumption, stated wherever the estimate is printed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from kdbench.deploy.cost import macs_per_second
from kdbench.plugin.registry import Registry
from kdbench.run.grid import Grid
from kdbench.run.trial import TeacherTrial
from kdbench.train.own_teacher import OwnTeacher

TRAINING_PASSES = 3.0


@dataclasses.dataclass
class Estimate:
    teachers: int
    students: int
    teacher_flops: float
    student_flops: float

    @property
    def total_flops(self) -> float:
        return self.teacher_flops + self.student_flops

    def hours(self, effective_tflops: float) -> float:
        return self.total_flops / (effective_tflops * 1e12) / 3600


def _audio_seconds(settings: Mapping[str, Any]) -> float:
    return float(settings["steps"]) * float(settings["batch_size"]) * float(settings["crop_seconds"])


def estimate(grid: Grid, registry: Registry, sample_rate: int = 16000) -> Estimate:
    macs: dict[str, float] = {}

    def model_macs(spec: Mapping[str, Any]) -> float:
        key = repr(sorted(spec["params"].items())) + spec["family"]
        if key not in macs:
            model = registry.get("models", spec["family"]).build(spec["params"])
            macs[key] = macs_per_second(model, sample_rate)
        return macs[key]

    teacher_flops = 0.0
    teachers = [trial for trial in grid.anchors if isinstance(trial, TeacherTrial)]
    for trial in teachers:
        if OwnTeacher.from_settings(trial.teacher_settings):
            continue  # loaded, not trained
        teacher_flops += 2 * TRAINING_PASSES * model_macs(trial.teacher_spec) * _audio_seconds(
            trial.teacher_settings
        )
    student_flops = 0.0
    for trial in grid.students:
        audio = _audio_seconds(trial.train_settings)
        student_flops += 2 * TRAINING_PASSES * model_macs(trial.student_spec) * audio
        if registry.get("methods", trial.method).needs_teacher:
            student_flops += 2 * model_macs(trial.teacher_spec) * audio
    return Estimate(len(teachers), len(grid.students), teacher_flops, student_flops)
