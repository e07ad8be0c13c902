"""The grid: datasets × pairs × methods × seeds, plus the anchors every table needs.

Anchors are the noisy input (once per dataset) and each distinct teacher (once per
teacher spec, dataset and teacher seed); they run as a stage before the students, which
also makes teacher training happen once however many workers need it.

With several teacher seeds the design is nested: each student seed belongs to one teacher
(`teacher_seed_of`), and all methods with that student seed distil from it, so a
(teacher, student seed) unit pairs every method with the control. Crossing every student
seed with every teacher would multiply the grid by the number of teachers for a second,
correlated look at the same student seeds; nesting spends the same budget on more
independent units, and the teacher-level analysis (`kdbench.report.hierarchy`) treats the
teacher as a random factor.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from kdbench.api import Dataset, PreparedDataset
from kdbench.config import Config, identity_settings, teacher_files
from kdbench.errors import ConfigError
from kdbench.plugin.registry import Registry
from kdbench.run.identity import stable_id
from kdbench.run.trial import NoisyTrial, StudentTrial, TeacherTrial, TestSet, Trial
from kdbench.train.own_teacher import OwnTeacher

DataUse = Literal["prepare", "identify", "skip"]
"""What a grid does with its datasets: `prepare` them (a run, a published page: the audio
is needed), only `identify` them where the dataset can say its identity without preparing
(commands that read results: the trials are found by identity), or `skip` them (a dry run:
placeholder identities, good for counting, not for finding or running trials)."""


@dataclasses.dataclass(frozen=True)
class IdentifiedDataset:
    """A dataset known by its identity alone (`Dataset.identify`): all that a command that
    reads results needs of it."""

    name: str
    identity: str


def _dataset_for(
    plugin: Dataset, params: dict[str, Any], cache_dir: Path, data: DataUse
) -> PreparedDataset | IdentifiedDataset | None:
    """The dataset as `data` asks; identified only if it can say so, else prepared."""
    if data == "skip":
        return None
    if data == "identify":
        identity = plugin.identify(params, cache_dir)
        if identity is not None:
            return IdentifiedDataset(plugin.name, identity)
    cache_dir.mkdir(parents=True, exist_ok=True)  # a reading command's root is not made
    return plugin.prepare(params, cache_dir)


@dataclasses.dataclass
class Grid:
    anchors: list[Trial]
    """The noisy input and the teachers: the floor and the ceiling students are read
    against (not to be confused with a *reference method*, the control or baseline a
    method is compared with)."""
    students: list[StudentTrial]
    datasets: dict[str, PreparedDataset | IdentifiedDataset]
    methods: list[str]
    pairs: list[str]
    seeds: list[int]
    test_datasets: dict[str, PreparedDataset | IdentifiedDataset] = dataclasses.field(
        default_factory=dict
    )
    warnings: list[str] = dataclasses.field(default_factory=list)
    """What `kdbench run` should tell the user before it runs: settings that are allowed
    but probably not meant (a loaded teacher trained on another corpus)."""

    @property
    def trials(self) -> list[Trial]:
        return [*self.anchors, *self.students]


def _other_corpus(
    teacher: OwnTeacher, teacher_seed: int, dataset: str, identity: str
) -> list[str]:
    """A loaded teacher trained on another corpus than the grid's is allowed (a cross-corpus
    teacher), but it is usually an override the preset's teacher files did not follow (say,
    another `generator`): its students would distil a teacher that never saw their data."""
    trained_on = teacher.trained_on()
    if trained_on is None or trained_on == identity:
        return []
    return [
        f"teacher seed {teacher_seed}: {teacher.path} was trained on dataset {trained_on}, "
        f"not on this grid's {dataset} ({identity}); its students distil a teacher from "
        "another corpus. To distil a teacher of this corpus, load one trained on it or set "
        "teacher.checkpoint=best_valid to train one."
    ]


def _give_teachers_the_idle_cores(anchors: list[Trial], jobs: int) -> list[Trial]:
    """Teachers train in a stage of their own, usually one at a time: let each use the
    cores the students will later share, instead of one thread while the others idle."""
    teachers = sum(1 for trial in anchors if isinstance(trial, TeacherTrial))
    threads = divide_cores(min(jobs, max(teachers, 1)))
    return [
        dataclasses.replace(trial, threads=threads) if isinstance(trial, TeacherTrial) else trial
        for trial in anchors
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


def teacher_settings(config: Config, teacher_seed: int) -> dict[str, Any]:
    """One teacher's settings: the `teacher` section with its list of seeds replaced by the
    teacher's own seed, so that a one-seed grid's teacher keeps the identity it had when
    the setting was a single `seed`."""
    settings = {key: value for key, value in config.teacher.items() if key != "seeds"}
    files = teacher_files(config.teacher)
    if files:
        settings["checkpoint"] = files[teacher_seed]
    return {**settings, "seed": teacher_seed}


def teacher_seed_of(student_seed: int, teacher_seeds: Sequence[int]) -> int:
    """The teacher a student seed distils from: students are nested within teachers, each
    teacher taking every len(teacher_seeds)-th student seed, so every method (the `none`
    control included) with that student seed pairs with the same teacher."""
    return teacher_seeds[student_seed % len(teacher_seeds)]


def _check_splits(key: str, name: str, has: Sequence[str], needs: Sequence[str]) -> None:
    """Refuse a dataset used where it lacks a split, naming what it is for instead."""
    missing = [split for split in needs if split not in has]
    if not missing:
        return
    if "train" in missing and tuple(has) == ("test",):
        use = (f"{name} is a test-only dataset, so nothing can be trained on it; train on "
               f"another dataset and evaluate on {name} with run.test_datasets")
    elif "train" in missing:
        use = (f"{name} prepares only {', '.join(has)}, so nothing can be trained on it; "
               "train on another dataset")
    else:
        use = (f"{name} is not a test set (it prepares {', '.join(has)} only"
               + (": a dev set, for choosing settings, which must then not report them)"
                  if tuple(has) == ("valid",) else ")"))
    raise ConfigError(f"{key}: {use} (missing split: {', '.join(missing)})")


def _test_sets(
    config: Config, registry: Registry, cache_dir: Path, sample_rate: int | None, data: DataUse
) -> tuple[tuple[TestSet, ...], dict[str, PreparedDataset | IdentifiedDataset]]:
    """The extra test sets of `run.test_datasets`, at the training data's rate when both
    are prepared."""
    test_sets, found = [], {}
    for name in registry.select("datasets", config.run["test_datasets"]):
        plugin = registry.get("datasets", name)
        _check_splits("run.test_datasets", name, plugin.splits, ("test",))
        params = config.plugin_params("dataset", name)
        identity = f"{name}-not-prepared"
        dataset = _dataset_for(plugin, params, cache_dir, data)
        if dataset is not None:
            found[name], identity = dataset, dataset.identity
        if isinstance(dataset, PreparedDataset) and sample_rate not in (None, dataset.sample_rate):
            raise ConfigError(
                f"run.test_datasets: {name} is at {dataset.sample_rate} Hz but the "
                f"training data is at {sample_rate} Hz; a test set must match the models' rate"
            )
        test_sets.append(TestSet(name=name, params=params, identity=identity))
    return tuple(test_sets), found


def build_grid(
    config: Config,
    registry: Registry,
    cache_dir: Path,
    results_dir: Path,
    methods: Sequence[str] | str | None = None,
    pairs: Sequence[str] | str | None = None,
    seeds: Sequence[int] | None = None,
    data: DataUse = "prepare",
) -> Grid:
    """The grid's trials, its datasets used as `data` says (`DataUse`).

    Extra test sets (`run.test_datasets`) are not part of any trial's id: they say where a
    trial is scored, not what it is, so adding one later scores the finished trials' saved
    models on it instead of training them again."""
    run = config.run
    method_names = select_methods(config, registry, methods or run["methods"])
    pair_names = select_pairs(config, registry, pairs or run["pairs"])
    seed_list = list(seeds if seeds is not None else run["seeds"])
    teacher_seeds = list(config.teacher["seeds"])
    registry.select("metrics", run["metrics"])
    threads = divide_cores(run["jobs"])
    common = {
        "cache_dir": str(cache_dir),
        "results_dir": str(results_dir),
        "metrics": tuple(run["metrics"]),
        "threads": threads,
        "eval_jobs": threads,
        "device": run["device"],
        "deterministic": run["deterministic"],
    }
    anchors: list[Trial] = []
    students: list[StudentTrial] = []
    warnings: list[str] = []
    datasets: dict[str, PreparedDataset | IdentifiedDataset] = {}
    test_datasets: dict[str, PreparedDataset | IdentifiedDataset] = {}
    for dataset_name in registry.select("datasets", run["datasets"]):
        plugin = registry.get("datasets", dataset_name)
        _check_splits("run.datasets", dataset_name, plugin.splits, ("train", "valid"))
        params = config.plugin_params("dataset", dataset_name)
        dataset = _dataset_for(plugin, params, cache_dir, data)
        identity = f"{dataset_name}-not-prepared"
        if dataset is not None:
            datasets[dataset_name], identity = dataset, dataset.identity
        sample_rate = dataset.sample_rate if isinstance(dataset, PreparedDataset) else None
        test_sets, found = _test_sets(config, registry, cache_dir, sample_rate, data)
        test_datasets.update(found)
        base = {
            "dataset": dataset_name,
            "dataset_params": params,
            "dataset_identity": identity,
            "test_sets": test_sets,
        }
        anchors.append(
            NoisyTrial(id=stable_id("noisy", identity), **base, **common)
        )
        seen_teachers: set[str] = set()
        for pair_name in pair_names:
            pair = registry.get("pairs", pair_name)
            teacher_specs, teachers, teacher_identities = {}, {}, {}
            for teacher_seed in teacher_seeds:
                settings = teacher_settings(config, teacher_seed)
                own_teacher = OwnTeacher.from_settings(settings)
                # A loaded teacher is identified by its file's hash, not by training settings.
                if own_teacher:
                    spec = own_teacher.spec(pair.teacher)
                    teacher_identities[teacher_seed] = own_teacher.identity()
                    settings = own_teacher.settings(settings)
                else:
                    spec = pair.teacher
                    teacher_identities[teacher_seed] = identity_settings(settings)
                teacher_specs[teacher_seed] = teacher = spec.to_json()
                teachers[teacher_seed] = settings
                teacher_id = stable_id(
                    "teacher",
                    {
                        "dataset": identity,
                        "spec": teacher,
                        "settings": teacher_identities[teacher_seed],
                    },
                )
                if teacher_id not in seen_teachers:
                    if own_teacher:
                        own_teacher.load(registry, pair.teacher)  # a file that does not fit fails now
                        if isinstance(dataset, PreparedDataset):
                            warnings.extend(
                                _other_corpus(own_teacher, teacher_seed, dataset_name, identity)
                            )
                    seen_teachers.add(teacher_id)
                    anchors.append(
                        TeacherTrial(
                            id=teacher_id,
                            teacher_spec=teacher,
                            teacher_settings=settings,
                            teacher_seed=teacher_seed,
                            **base,
                            **common,
                        )
                    )
            for method_name in method_names:
                method_params = config.plugin_params("method", method_name)
                for seed in seed_list:
                    teacher_seed = teacher_seed_of(seed, teacher_seeds)
                    content = {
                        "dataset": identity,
                        "teacher": teacher_specs[teacher_seed],
                        "student": pair.student.to_json(),
                        "teacher_settings": teacher_identities[teacher_seed],
                        "method": method_name,
                        "method_params": method_params,
                        "seed": seed,
                        "train": identity_settings(config.train),
                    }
                    students.append(
                        StudentTrial(
                            id=stable_id("student", content),
                            pair=pair_name,
                            teacher_spec=teacher_specs[teacher_seed],
                            teacher_settings=teachers[teacher_seed],
                            teacher_seed=teacher_seed,
                            student_spec=pair.student.to_json(),
                            method=method_name,
                            method_params=method_params,
                            seed=seed,
                            train_settings=dict(config.train),
                            **base,
                            **common,
                        )
                    )
    anchors = _give_teachers_the_idle_cores(anchors, run["jobs"])
    return Grid(
        anchors, students, datasets, method_names, pair_names, seed_list, test_datasets,
        warnings,
    )
