"""One unit of work and how it runs: a noisy-input reference, a teacher, or a student.

`execute` is the top-level function every executor ships to its workers. It never raises
for the trial's own failure: an exception, a diverging loss or a method that does not fit
the pair becomes an `Outcome` with its status and reason, so the grid goes on.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdbench.api import Denoiser, ModelSpec, PreparedDataset
from kdbench.errors import NotApplicable, TrialDiverged
from kdbench.evaluate import Score, score_utterances
from kdbench.model_cost import model_cost
from kdbench.registry import get_registry
from kdbench.checkpoints import save_checkpoint
from kdbench.train.teacher import get_teacher
from kdbench.train.teacher_outputs import shared_teacher_outputs
from kdbench.train.trainer import train

ROLES = ("noisy", "teacher", "student")


@dataclasses.dataclass(frozen=True)
class Trial:
    """Everything a worker needs to run one trial; `id` hashes what changes its result."""

    id: str
    role: str
    dataset: str
    dataset_params: Mapping[str, Any]
    dataset_identity: str
    cache_dir: str
    results_dir: str
    metrics: tuple[str, ...]
    teacher_settings: Mapping[str, Any]
    pair: str | None = None
    teacher_spec: Mapping[str, Any] | None = None
    student_spec: Mapping[str, Any] | None = None
    method: str | None = None
    method_params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    seed: int | None = None
    train_settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    threads: int = 1
    eval_jobs: int = 1

    def label(self) -> str:
        if self.role == "student":
            return f"{self.dataset}/{self.pair}/{self.method}/seed {self.seed}"
        if self.role == "teacher":
            return f"{self.dataset}/teacher {self.teacher_key_label()}"
        return f"{self.dataset}/noisy input"

    def teacher_key_label(self) -> str:
        spec = self.teacher_spec or {}
        return f"{spec.get('family', '?')} {spec.get('params', {})}"


@dataclasses.dataclass
class Outcome:
    """A finished trial: `done`, `failed` (with the reason) or `not_applicable`."""

    trial: Trial
    status: str
    error: str | None = None
    scores: list[Score] = dataclasses.field(default_factory=list)
    model: dict[str, float] = dataclasses.field(default_factory=dict)
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
    started: float = 0.0
    finished: float = 0.0


_datasets: dict[str, PreparedDataset] = {}


def prepared_dataset(trial: Trial) -> PreparedDataset:
    """The trial's dataset, prepared once per worker process."""
    if trial.dataset_identity not in _datasets:
        plugin = get_registry().get("datasets", trial.dataset)
        _datasets[trial.dataset_identity] = plugin.prepare(
            trial.dataset_params, Path(trial.cache_dir)
        )
    return _datasets[trial.dataset_identity]


def _spec(raw: Mapping[str, Any] | None) -> ModelSpec:
    assert raw is not None
    return ModelSpec(raw["family"], raw["params"])


def _denoise_split(model: Denoiser, dataset: PreparedDataset) -> list[np.ndarray]:
    estimates = []
    with torch.inference_mode():
        for utterance in dataset.splits["test"]:
            noisy = torch.from_numpy(np.asarray(utterance.noisy, dtype=np.float32))[None]
            estimates.append(model.denoise(noisy)[0].numpy())
    return estimates


def _score(trial: Trial, dataset: PreparedDataset, estimates: Sequence[np.ndarray]) -> list[Score]:
    registry = get_registry()
    metrics = [registry.get("metrics", name) for name in trial.metrics]
    items = [
        (utterance.id, np.asarray(utterance.clean, dtype=np.float32), estimate)
        for utterance, estimate in zip(dataset.splits["test"], estimates)
    ]
    return score_utterances(metrics, items, dataset.sample_rate, jobs=trial.eval_jobs)


def _latent_shapes(model: Denoiser, samples: int) -> dict[str, torch.Size]:
    was_training = model.training
    model.eval()
    with torch.no_grad():
        latents = model(torch.zeros(1, samples)).latents
    model.train(was_training)
    return {name: tensor.shape for name, tensor in latents.items()}


def _run_noisy(trial: Trial, dataset: PreparedDataset, outcome: Outcome) -> None:
    estimates = [np.asarray(u.noisy, dtype=np.float32) for u in dataset.splits["test"]]
    outcome.scores = _score(trial, dataset, estimates)


def _run_teacher(
    trial: Trial, dataset: PreparedDataset, outcome: Outcome, on_step: Callable[[int, int], None] | None
) -> None:
    registry = get_registry()
    teacher, meta = get_teacher(
        registry, _spec(trial.teacher_spec), dataset, trial.teacher_settings, Path(trial.cache_dir), on_step
    )
    outcome.details["teacher"] = meta
    outcome.scores = _score(trial, dataset, _denoise_split(teacher, dataset))
    outcome.model = model_cost(teacher, dataset.sample_rate)


def _run_student(
    trial: Trial, dataset: PreparedDataset, outcome: Outcome, on_step: Callable[[int, int], None] | None
) -> None:
    registry = get_registry()
    method = registry.get("methods", trial.method)(**trial.method_params)
    teacher = None
    if method.needs_teacher:
        teacher, meta = get_teacher(
            registry, _spec(trial.teacher_spec), dataset, trial.teacher_settings, Path(trial.cache_dir)
        )
        outcome.details["teacher"] = meta
    student_spec = _spec(trial.student_spec)
    torch.manual_seed(int(trial.seed or 0))
    student = registry.get("models", student_spec.family).build(student_spec.params)
    crop = int(round(trial.train_settings["crop_seconds"] * dataset.sample_rate))
    if teacher is None:
        teacher_shapes = {}
    else:
        teacher_shapes = _latent_shapes(teacher, crop)
    kd_loss = method.build(teacher_shapes, _latent_shapes(student, crop))
    teacher_outputs = None
    if teacher is not None:
        folder = Path(trial.cache_dir) / "teacher_outputs" / outcome.details["teacher"]["teacher_key"]
        teacher_outputs = shared_teacher_outputs(folder, teacher)
        counts_before = (teacher_outputs.computed, teacher_outputs.from_table)
    result = train(
        student,
        dataset.splits["train"],
        dataset.splits["valid"],
        trial.train_settings,
        seed=int(trial.seed or 0),
        sample_rate=dataset.sample_rate,
        kd_loss=kd_loss,
        teacher=teacher,
        on_step=on_step,
        teacher_outputs=teacher_outputs,
    )
    outcome.details["train"] = dataclasses.asdict(result)
    if teacher_outputs is not None:
        outcome.details["teacher_outputs"] = {  # this trial's share of the table's work
            "computed": teacher_outputs.computed - counts_before[0],
            "from_table": teacher_outputs.from_table - counts_before[1],
        }
    outcome.details["extra_params"] = kd_loss.extra_parameters()
    save_checkpoint(
        Path(trial.results_dir) / "students" / f"{trial.id}.pt",
        student_spec,
        student,
        {
            "trial": trial.id,
            "pair": trial.pair,
            "method": trial.method,
            "seed": trial.seed,
            "sample_rate": dataset.sample_rate,
        },
    )
    outcome.scores = _score(trial, dataset, _denoise_split(student, dataset))
    outcome.model = model_cost(student, dataset.sample_rate)


def provenance() -> dict[str, str]:
    """Where and with what a result was made."""
    import kdbench

    return {
        "kdbench": kdbench.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "host": socket.gethostname(),
        "cpu_count": str(os.cpu_count()),
    }


def execute(trial: Trial, on_step: Callable[[int, int], None] | None = None) -> Outcome:
    """Run one trial to an outcome; only KeyboardInterrupt escapes."""
    torch.set_num_threads(max(1, trial.threads))
    outcome = Outcome(trial=trial, status="done", started=time.time())
    try:
        dataset = prepared_dataset(trial)
        if trial.role == "noisy":
            _run_noisy(trial, dataset, outcome)
        elif trial.role == "teacher":
            _run_teacher(trial, dataset, outcome, on_step)
        else:
            _run_student(trial, dataset, outcome, on_step)
    except NotApplicable as exc:
        outcome.status, outcome.error = "not_applicable", str(exc)
    except TrialDiverged as exc:
        outcome.status, outcome.error = "failed", f"diverged: {exc}"
    except Exception as exc:  # a trial's own failure must not stop the grid
        outcome.status = "failed"
        outcome.error = f"{type(exc).__name__}: {exc}"
        outcome.details["traceback"] = traceback.format_exc()
    outcome.details["provenance"] = provenance()
    outcome.finished = time.time()
    return outcome
