"""The grid: datasets × pairs × methods × seeds, plus the references every table needs.

References are the noisy input (once per dataset) and each distinct teacher (once per
teacher spec and dataset); they run as a stage before the students, which also makes
teacher training happen once however many workers need it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

from kdbench.api import PreparedDataset, resolve_params
from kdbench.config import Config
from kdbench.errors import ConfigError
from kdbench.identity import stable_id
from kdbench.registry import Registry
from kdbench.train.own_teacher import OwnTeacher
from kdbench.trial import Trial


@dataclasses.dataclass
class Grid:
    references: list[Trial]
    students: list[Trial]
    datasets: dict[str, PreparedDataset]
    methods: list[str]
    pairs: list[str]
    seeds: list[int]

    @property
    def trials(self) -> list[Trial]:
        return [*self.references, *self.students]


def _give_teachers_the_idle_cores(references: list[Trial], jobs: int) -> list[Trial]:
    """Teachers train in a stage of their own, usually one at a time: let each use the
    cores the students will later share, instead of one thread while the others idle."""
    teachers = sum(1 for trial in references if trial.role == "teacher")
    threads = divide_cores(min(jobs, max(teachers, 1)))
    return [
        dataclasses.replace(trial, threads=threads) if trial.role == "teacher" else trial
        for trial in references
    ]


def select_methods(config: Config, registry: Registry, requested: Sequence[str] | str) -> list[str]:
    """Requested methods (names, comma lists, `all`, `baseline`) plus the controls."""
    if isinstance(requested, str):
        requested = [part.strip() for part in requested.split(",") if part.strip()]
    if "baseline" in requested and not config.run["baseline"]:
        raise ConfigError("--method baseline: run.baseline names no method in this preset")
    expanded = [config.run["baseline"] if name == "baseline" else name for name in requested]
    names = registry.select("methods", expanded)
    return list(dict.fromkeys([*config.run["controls"], *names]))


def select_pairs(config: Config, registry: Registry, requested: Sequence[str] | str) -> list[str]:
    """Named pairs, or with `all` every registered pair of the preset's suite."""
    if isinstance(requested, str):
        requested = [part.strip() for part in requested.split(",") if part.strip()]
    if list(requested) == ["all"]:
        suite = config.run["suite"]
        return [
            name for name in registry.names("pairs")
            if getattr(registry.get("pairs", name), "suite", "cpu") == suite
        ]
    return registry.select("pairs", list(requested))


def divide_cores(jobs: int) -> int:
    """Torch threads per trial so that jobs × threads stays within the machine's cores."""
    return max(1, (os.cpu_count() or 1) // max(1, jobs))


def build_grid(
    config: Config,
    registry: Registry,
    cache_dir: Path,
    results_dir: Path,
    methods: Sequence[str] | str | None = None,
    pairs: Sequence[str] | str | None = None,
    seeds: Sequence[int] | None = None,
    prepare_datasets: bool = True,
) -> Grid:
    """The grid's trials. With `prepare_datasets=False` (a dry run) no data is touched and
    ids use a placeholder identity: good for counting and estimating, not for running."""
    run = config.run
    method_names = select_methods(config, registry, methods or run["methods"])
    pair_names = select_pairs(config, registry, pairs or run["pairs"])
    seed_list = list(seeds if seeds is not None else run["seeds"])
    registry.select("metrics", run["metrics"])
    threads = divide_cores(run["jobs"])
    own_teacher = OwnTeacher.from_settings(config.teacher)
    # A loaded teacher is identified by its file's hash, not by training settings.
    teacher_identity = own_teacher.identity() if own_teacher else config.teacher
    common = {
        "cache_dir": str(cache_dir),
        "results_dir": str(results_dir),
        "metrics": tuple(run["metrics"]),
        "teacher_settings": own_teacher.settings(config.teacher)
        if own_teacher
        else dict(config.teacher),
        "threads": threads,
        "eval_jobs": threads,
    }
    references: list[Trial] = []
    students: list[Trial] = []
    datasets: dict[str, PreparedDataset] = {}
    for dataset_name in registry.select("datasets", run["datasets"]):
        plugin = registry.get("datasets", dataset_name)
        params = resolve_params(
            f"dataset.{dataset_name}", plugin.params, config.plugin_params("dataset", dataset_name)
        )
        if prepare_datasets:
            datasets[dataset_name] = plugin.prepare(params, cache_dir)
            identity = datasets[dataset_name].identity
        else:
            identity = f"{dataset_name}-not-prepared"
        base = {"dataset": dataset_name, "dataset_params": params, "dataset_identity": identity}
        references.append(Trial(id=stable_id("noisy", identity), role="noisy", **base, **common))
        seen_teachers: set[str] = set()
        for pair_name in pair_names:
            pair = registry.get("pairs", pair_name)
            teacher_spec = own_teacher.spec(pair.teacher) if own_teacher else pair.teacher
            teacher = teacher_spec.to_json()
            teacher_id = stable_id(
                "teacher", {"dataset": identity, "spec": teacher, "settings": teacher_identity}
            )
            if teacher_id not in seen_teachers:
                if own_teacher:
                    own_teacher.load(registry, pair.teacher)  # a file that does not fit fails now
                seen_teachers.add(teacher_id)
                references.append(
                    Trial(id=teacher_id, role="teacher", teacher_spec=teacher, **base, **common)
                )
            for method_name in method_names:
                method_cls = registry.get("methods", method_name)
                method_params = resolve_params(
                    f"method.{method_name}",
                    method_cls.params,
                    config.plugin_params("method", method_name),
                )
                for seed in seed_list:
                    content = {
                        "dataset": identity,
                        "teacher": teacher,
                        "student": pair.student.to_json(),
                        "teacher_settings": teacher_identity,
                        "method": method_name,
                        "method_params": method_params,
                        "seed": seed,
                        "train": config.train,
                    }
                    students.append(
                        Trial(
                            id=stable_id("student", content),
                            role="student",
                            pair=pair_name,
                            teacher_spec=teacher,
                            student_spec=pair.student.to_json(),
                            method=method_name,
                            method_params=method_params,
                            seed=seed,
                            train_settings=dict(config.train),
                            **base,
                            **common,
                        )
                    )
    references = _give_teachers_the_idle_cores(references, run["jobs"])
    return Grid(references, students, datasets, method_names, pair_names, seed_list)
