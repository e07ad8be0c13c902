"""One unit of work and how it runs: a noisy-input reference, a teacher, or a student.

`execute` is the top-level function every executor ships to its workers. It never raises
for the trial's own failure: an exception, a diverging loss or a method that does not fit
the pair becomes an `Outcome` with its status and reason, so the grid goes on.

A trial runs on the device its `device` setting resolves to on the machine that runs it
(`kdbench.api.devices`: provenance, not identity, so the setting is not in the id). Models
train, infer and distil there; metrics and model costs are computed on the CPU.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from kdbench.api import Denoiser, ModelSpec, PreparedDataset, Utterance, resolve_device
from kdbench.deploy.checkpoints import build_from_checkpoint, save_checkpoint, student_checkpoint
from kdbench.deploy.cost import model_cost
from kdbench.errors import KdbenchError, NotApplicable, TrialDiverged
from kdbench.plugin.registry import get_registry
from kdbench.run import platform
from kdbench.run.evaluate import Score, score_utterances
from kdbench.train.numerics import configure_cuda
from kdbench.train.teacher import get_teacher, teacher_file
from kdbench.train.teacher_outputs import shared_teacher_outputs
from kdbench.train.trainer import train

RUN_SETTINGS = frozenset(
    {"cache_dir", "results_dir", "threads", "eval_jobs", "device", "deterministic", "score_only"}
)
"""Fields that say where and how a trial runs, not what it is: not in its id or its spec."""


@dataclasses.dataclass(frozen=True)
class TestSet:
    """An extra test set a trial is also scored on (cross-corpus evaluation): a dataset
    plugin whose test split is used, never its training data."""

    name: str
    params: Mapping[str, Any]
    identity: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class Trial:
    """What every trial has: its dataset, where it runs and what it is scored with; `id`
    hashes what changes its result. One subclass per kind of trial (its `role`, which
    the store records): the noisy input, a teacher, a student."""

    role: ClassVar[str]
    id: str
    dataset: str
    dataset_params: Mapping[str, Any]
    dataset_identity: str
    cache_dir: str
    results_dir: str
    metrics: tuple[str, ...]
    test_sets: tuple[TestSet, ...] = ()
    score_only: tuple[str, ...] = ()
    threads: int = 1
    eval_jobs: int = 1
    device: str = "auto"
    deterministic: bool = True

    @property
    def torch_threads(self) -> int:
        """The torch threads the trial runs with (and records in its platform)."""
        return max(1, self.threads)

    def label(self) -> str:
        scored_on = f" (scored on {', '.join(self.score_only)})" if self.score_only else ""
        return f"{self.dataset}/{self.what()}{scored_on}"

    def what(self) -> str:
        raise NotImplementedError

    # How a trial runs on a machine that does not see the driver's disk (NodePortable in
    # kdbench.api.executors): the dataset is prepared again there and checked against its
    # identity; the files below travel with the trial through the executor.

    def node_inputs(self) -> dict[str, Path]:
        """Files a node needs that the driver has."""
        return {}

    def node_outputs(self) -> dict[str, Path]:
        """Files the driver keeps from a node."""
        return {}

    def on_node(self, cache_dir: Path, results_dir: Path) -> Trial:
        return dataclasses.replace(self, cache_dir=str(cache_dir), results_dir=str(results_dir))


@dataclasses.dataclass(frozen=True, kw_only=True)
class NoisyTrial(Trial):
    """The unprocessed input scored like a model: the floor every table starts from."""

    role: ClassVar[str] = "noisy"

    def what(self) -> str:
        return "noisy input"


@dataclasses.dataclass(frozen=True, kw_only=True)
class WithTeacher(Trial):
    """A trial that needs a teacher: the teacher itself, or a student of it."""

    teacher_spec: Mapping[str, Any]
    teacher_settings: Mapping[str, Any]
    teacher_seed: int

    def teacher_key_label(self) -> str:
        spec = self.teacher_spec
        return f"{spec.get('family', '?')} {spec.get('params', {})} seed {self.teacher_seed}"

    def teacher_file(self) -> Path:
        return teacher_file(
            _spec(self.teacher_spec), self.dataset_identity, self.teacher_settings, Path(self.cache_dir)
        )

    def node_inputs(self) -> dict[str, Path]:
        """The trained teacher, when the driver has it: a node then need not retrain it."""
        return {"teacher": self.teacher_file()}


@dataclasses.dataclass(frozen=True, kw_only=True)
class TeacherTrial(WithTeacher):
    """A teacher, trained (or loaded) once and scored: the ceiling students are read against."""

    role: ClassVar[str] = "teacher"

    def what(self) -> str:
        return f"teacher {self.teacher_key_label()}"

    def node_outputs(self) -> dict[str, Path]:
        """The teacher's checkpoint: students elsewhere read it (a score-only trial trains
        nothing and so leaves nothing)."""
        return {} if self.score_only else {"teacher": self.teacher_file()}


@dataclasses.dataclass(frozen=True, kw_only=True)
class StudentTrial(WithTeacher):
    """A student of a pair, trained with a KD method (or none) from one seed."""

    role: ClassVar[str] = "student"
    pair: str
    student_spec: Mapping[str, Any]
    method: str
    method_params: Mapping[str, Any]
    seed: int
    train_settings: Mapping[str, Any]

    def what(self) -> str:
        return f"{self.pair}/{self.method}/seed {self.seed}"

    def node_inputs(self) -> dict[str, Path]:
        """The teacher, and for a score-only student the weights it scores."""
        inputs = super().node_inputs()
        if self.score_only:
            inputs["student"] = student_checkpoint(self.results_dir, self.id)
        return inputs

    def node_outputs(self) -> dict[str, Path]:
        """The student's weights (`kdbench denoise` and `export` read them)."""
        return {} if self.score_only else {"student": student_checkpoint(self.results_dir, self.id)}


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


def _prepared(name: str, params: Mapping[str, Any], identity: str, cache_dir: str) -> PreparedDataset:
    """A dataset, prepared once per worker process, and checked to be the one the grid was
    built on (a node that prepares it from its own files or cache could differ)."""
    if identity not in _datasets:
        prepared = get_registry().get("datasets", name).prepare(params, Path(cache_dir))
        if prepared.identity != identity:
            raise KdbenchError(
                f"dataset {name} prepared on {socket.gethostname()} under {cache_dir} has "
                f"identity {prepared.identity}, but the grid was built on {identity}: this "
                "machine's data differs from the driver's"
            )
        _datasets[identity] = prepared
    return _datasets[identity]


def prepared_dataset(trial: Trial) -> PreparedDataset:
    """The trial's own dataset: its training data and in-domain test split."""
    return _prepared(trial.dataset, trial.dataset_params, trial.dataset_identity, trial.cache_dir)


def test_splits(trial: Trial, dataset: PreparedDataset) -> list[tuple[str, PreparedDataset]]:
    """(test-set name, dataset) for every test split the trial is scored on: its own
    dataset's (named after it) and each extra test set's; a score-only trial (an earlier
    trial scored on test sets added since) only the extra ones it asks for."""
    own = [] if trial.score_only else [(trial.dataset, dataset)]
    extra = [
        (test.name, _prepared(test.name, test.params, test.identity, trial.cache_dir))
        for test in trial.test_sets
        if not trial.score_only or test.name in trial.score_only
    ]
    return own + extra


def _spec(raw: Mapping[str, Any]) -> ModelSpec:
    return ModelSpec(raw["family"], raw["params"])


def denoise_utterances(model: Denoiser, utterances: Sequence[Utterance]) -> list[np.ndarray]:
    """Each utterance's estimate, computed on the model's device and brought back for the
    CPU metrics."""
    estimates = []
    with torch.inference_mode():
        for utterance in utterances:
            noisy = torch.from_numpy(np.asarray(utterance.noisy, dtype=np.float32))[None]
            estimates.append(model.denoise(noisy.to(model.device))[0].cpu().numpy())
    return estimates


def _score(
    trial: Trial, dataset: PreparedDataset, estimate: Callable[[PreparedDataset], Sequence[np.ndarray]]
) -> list[Score]:
    """Every metric on every test split of the trial, each score tagged with its test set."""
    registry = get_registry()
    metrics = [registry.get("metrics", name) for name in trial.metrics]
    scores: list[Score] = []
    for name, test in test_splits(trial, dataset):
        items = [
            (utterance.id, np.asarray(utterance.clean, dtype=np.float32), estimated)
            for utterance, estimated in zip(test.splits["test"], estimate(test))
        ]
        scores += [
            dataclasses.replace(score, test_set=name)
            for score in score_utterances(metrics, items, test.sample_rate, jobs=trial.eval_jobs)
        ]
    return scores


def _noisy_inputs(dataset: PreparedDataset) -> list[np.ndarray]:
    return [np.asarray(u.noisy, dtype=np.float32) for u in dataset.splits["test"]]


def _latent_shapes(model: Denoiser, samples: int) -> dict[str, torch.Size]:
    was_training = model.training
    model.eval()
    with torch.no_grad():
        latents = model(torch.zeros(1, samples, device=model.device)).latents
    model.train(was_training)
    return {name: tensor.shape for name, tensor in latents.items()}


def _run_noisy(trial: Trial, dataset: PreparedDataset, outcome: Outcome) -> None:
    outcome.scores = _score(trial, dataset, _noisy_inputs)


def _teacher_outputs_folder(trial: Trial, key: str, device: torch.device) -> Path:
    """One teacher-output table per teacher and platform kind: a CPU's table keeps the
    folder it always had; a GPU's values differ in their last bits, so it has its own."""
    name = key
    if device.type == "cuda":
        name += "-" + re.sub(r"[^A-Za-z0-9]+", "_", torch.cuda.get_device_name(device))
    return Path(trial.cache_dir) / "teacher_outputs" / name


def _run_teacher(
    trial: TeacherTrial,
    dataset: PreparedDataset,
    outcome: Outcome,
    on_step: Callable[[int, int], None] | None,
    device: torch.device,
) -> None:
    registry = get_registry()
    teacher, meta = get_teacher(
        registry, _spec(trial.teacher_spec), dataset, trial.teacher_settings, Path(trial.cache_dir),
        on_step, device,
    )
    outcome.details["teacher"] = meta
    outcome.scores = _score(trial, dataset, lambda test: denoise_utterances(teacher, test.splits["test"]))
    outcome.model = model_cost(teacher.cpu(), dataset.sample_rate)


def _run_student(
    trial: StudentTrial,
    dataset: PreparedDataset,
    outcome: Outcome,
    on_step: Callable[[int, int], None] | None,
    device: torch.device,
) -> None:
    registry = get_registry()
    method = registry.get("methods", trial.method)(**trial.method_params)
    teacher = None
    if method.needs_teacher:
        teacher, meta = get_teacher(
            registry, _spec(trial.teacher_spec), dataset, trial.teacher_settings, Path(trial.cache_dir),
            device=device,
        )
        outcome.details["teacher"] = meta
    student_spec = _spec(trial.student_spec)
    torch.manual_seed(trial.seed)
    student = registry.get("models", student_spec.family).build(student_spec.params).to(device)
    crop = int(round(trial.train_settings["crop_seconds"] * dataset.sample_rate))
    if teacher is None:
        teacher_shapes = {}
    else:
        teacher_shapes = _latent_shapes(teacher, crop)
    kd_loss = method.build(teacher_shapes, _latent_shapes(student, crop))
    teacher_outputs = None
    if teacher is not None:
        folder = _teacher_outputs_folder(trial, outcome.details["teacher"]["teacher_key"], device)
        teacher_outputs = shared_teacher_outputs(folder, teacher)
        counts_before = (teacher_outputs.computed, teacher_outputs.from_table)
    result = train(
        student,
        dataset.splits["train"],
        dataset.splits["valid"],
        trial.train_settings,
        seed=trial.seed,
        sample_rate=dataset.sample_rate,
        kd_loss=kd_loss,
        teacher=teacher,
        on_step=on_step,
        teacher_outputs=teacher_outputs,
        device=device,
    )
    outcome.details["train"] = dataclasses.asdict(result)
    if teacher_outputs is not None:
        outcome.details["teacher_outputs"] = {  # this trial's share of the table's work
            "computed": teacher_outputs.computed - counts_before[0],
            "from_table": teacher_outputs.from_table - counts_before[1],
        }
    outcome.details["extra_params"] = kd_loss.extra_parameters()
    save_checkpoint(
        student_checkpoint(trial.results_dir, trial.id),
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
    outcome.scores = _score(trial, dataset, lambda test: denoise_utterances(student, test.splits["test"]))
    outcome.model = model_cost(student.cpu(), dataset.sample_rate)


def _run_score_only(
    trial: Trial, dataset: PreparedDataset, outcome: Outcome, device: torch.device
) -> None:
    """Score a finished trial's model on test sets added since it ran, without training:
    the student from its saved checkpoint, the teacher from the teacher cache."""
    registry = get_registry()
    if isinstance(trial, NoisyTrial):
        outcome.scores = _score(trial, dataset, _noisy_inputs)
        return
    if isinstance(trial, TeacherTrial):
        model, _ = get_teacher(
            registry, _spec(trial.teacher_spec), dataset, trial.teacher_settings,
            Path(trial.cache_dir), device=device,
        )
    else:
        model, _ = build_from_checkpoint(student_checkpoint(trial.results_dir, trial.id), registry)
        model = model.to(device)
    outcome.scores = _score(trial, dataset, lambda test: denoise_utterances(model, test.splits["test"]))


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
    """Run one trial to an outcome; only KeyboardInterrupt escapes.

    `device` below is the torch device the trial resolved to on this machine: every model
    of the trial runs there, and it is recorded in `details["device"]`.
    """
    torch.set_num_threads(trial.torch_threads)
    outcome = Outcome(trial=trial, status="done", started=time.time())
    device = torch.device("cpu")
    try:
        device = resolve_device(trial.device)
        outcome.details["device"] = str(device)
        if device.type == "cuda":
            configure_cuda(trial.deterministic)
        dataset = prepared_dataset(trial)
        if trial.score_only:
            _run_score_only(trial, dataset, outcome, device)
        elif isinstance(trial, NoisyTrial):
            _run_noisy(trial, dataset, outcome)
        elif isinstance(trial, TeacherTrial):
            _run_teacher(trial, dataset, outcome, on_step, device)
        else:
            assert isinstance(trial, StudentTrial)
            _run_student(trial, dataset, outcome, on_step, device)
    except NotApplicable as exc:
        outcome.status, outcome.error = "not_applicable", str(exc)
    except TrialDiverged as exc:
        outcome.status, outcome.error = "failed", f"diverged: {exc}"
    except Exception as exc:  # a trial's own failure must not stop the grid
        outcome.status = "failed"
        outcome.error = f"{type(exc).__name__}: {exc}"
        outcome.details["traceback"] = traceback.format_exc()
    outcome.details["provenance"] = provenance()
    outcome.details["platform"] = platform.describe(device)
    outcome.finished = time.time()
    return outcome
