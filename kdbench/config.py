"""Presets, `--set` overrides and their validation.

The core declares the settings but names no plugin: which datasets, methods, controls and
metrics a grid uses comes from the preset (configs/), so the core stays plugin-agnostic.

A configuration is a preset (TOML) overlaid with `--set section.key=value` overrides. The
core sections (`run`, `train`, `teacher`) are declared here; `dataset.NAME`, `method.NAME`
and `executor.NAME` sections are checked against the parameters each plugin declares, so a
typo anywhere is an error that names the key and the allowed values, before any work starts.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.resources
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import tomllib

from kdbench.api import Param, check_device_setting, resolve_params
from kdbench.api.devices import DEVICE_HELP
from kdbench.errors import ConfigError
from kdbench.plugin.registry import Registry
from kdbench.train.task_losses import TASK_LOSSES, task_loss_of

CHECKPOINT_POLICIES = ("last", "best_valid")
PRECISIONS = ("fp32", "bf16")
LR_SCHEDULES = ("constant", "cosine")

IDENTITY_NEUTRAL_DEFAULTS = {"precision": "fp32", "lr_schedule": "constant", "suppression_weight": 1.0}
"""Settings added after results were published, at the default that reproduces them.

At this value a setting is left out of trial ids and teacher keys, so the trials that
existed before it still have their ids (and stores and caches stay valid); any other
value changes the numbers and so enters the id.
"""


def identity_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """`settings` as they enter an id: neutral defaults left out (see above)."""
    return {
        name: value
        for name, value in settings.items()
        if name not in IDENTITY_NEUTRAL_DEFAULTS or IDENTITY_NEUTRAL_DEFAULTS[name] != value
    }

RUN_PARAMS: dict[str, Param] = {
    "datasets": Param([], "datasets to run on", list),
    "pairs": Param(["all"], "architecture pairs (`all` = every pair of the suite)", list),
    "suite": Param("cpu", "the scale of pairs that `all` selects (cpu, paper, ...)", str),
    "methods": Param([], "KD methods under study (`all` = every registered)", list),
    "controls": Param([], "methods always run beside `methods`, on the same seeds", list),
    "baseline": Param("", "the method that the name `baseline` stands for", str),
    "seeds": Param(
        [0, 1, 2], "student seeds; a seed fixes init and data order", list, item_type=int, at_least=0
    ),
    "metrics": Param([], "per-utterance metrics on the test split", list),
    "test_datasets": Param(
        [],
        "extra test sets: every student, teacher and the noisy input are also scored on "
        "each one's test split (cross-corpus evaluation), one leaderboard block each",
        list,
    ),
    "executor": Param("local", "where trials run", str),
    "jobs": Param(1, "trials run at once (spread round-robin over the visible GPUs)", int, at_least=1),
    "device": Param("auto", DEVICE_HELP, str),
    "deterministic": Param(
        True,
        "on CUDA, deterministic kernels so a seed gives the same numbers on the same GPU "
        "model (CPU kernels always are)",
        bool,
    ),
    "results": Param("kdbench-results/results.db", "the SQLite results store", str),
}

TRAIN_PARAMS: dict[str, Param] = {
    "steps": Param(400, "optimizer steps", int, at_least=1),
    "batch_size": Param(16, "crops per batch", int, at_least=1),
    "crop_seconds": Param(1.0, "length of the random training crops", float, above=0),
    "crop_grid_seconds": Param(
        0.25,
        "crop starts lie on this grid, so teacher outputs per crop can be reused",
        float,
        above=0,
    ),
    "lr": Param(1e-3, "Adam learning rate", float, above=0),
    "lr_schedule": Param(
        "constant",
        "the learning rate over the steps: constant, or cosine decay from `lr` to zero at "
        "the last step (a fixed step budget ends at a low rate instead of mid-stride)",
        str,
        LR_SCHEDULES,
    ),
    "grad_clip": Param(5.0, "gradient-norm clip (0 = off)", float, at_least=0),
    "task_loss": Param("magnitude_l1", "denoising loss against the clean target", str, tuple(TASK_LOSSES)),
    "suppression_weight": Param(
        1.0,
        "what a magnitude bin estimated below the clean one (speech removed) costs against one "
        "left above it (noise kept), in the magnitude_l1 task loss (1 = symmetric L1)",
        float,
        at_least=1,
    ),
    "checkpoint": Param(
        "last",
        "which weights are evaluated: the last step, or the best on the validation split "
        "(never on the test split)",
        str,
        CHECKPOINT_POLICIES,
    ),
    "valid_every": Param(100, "steps between validation-loss checks", int, at_least=1),
    "precision": Param(
        "fp32",
        "arithmetic of the training forward and loss: fp32, or bf16 autocast (faster on "
        "GPUs, other numbers; evaluation stays fp32)",
        str,
        PRECISIONS,
    ),
}

TEACHER_PARAMS: dict[str, Param] = {
    **TRAIN_PARAMS,
    "steps": Param(1200, "optimizer steps of the teacher", int, at_least=1),
    "checkpoint": Param(
        "best_valid",
        "teacher weights kept (last, best_valid), or a checkpoint file to load instead of "
        "training: a kdbench checkpoint or a state dict for the pair's teacher spec",
        str,
    ),
    "seeds": Param(
        [0],
        "teacher seeds, one teacher per (spec, dataset, seed); with several, student seed s "
        "distils from teacher seeds[s % len(seeds)] (students nested within teachers)",
        list,
        item_type=int,
        at_least=0,
    ),
}

CORE_SECTIONS: dict[str, dict[str, Param]] = {
    "run": RUN_PARAMS,
    "train": TRAIN_PARAMS,
    "teacher": TEACHER_PARAMS,
}
PLUGIN_SECTIONS = {"dataset": "datasets", "method": "methods", "executor": "executors"}


@dataclasses.dataclass
class Config:
    """A validated configuration: core sections resolved, plugin sections as given."""

    preset: str
    run: dict[str, Any]
    train: dict[str, Any]
    teacher: dict[str, Any]
    plugins: dict[str, dict[str, dict[str, Any]]]
    registry: Registry = dataclasses.field(repr=False, compare=False)

    def plugin_params(self, section: str, name: str) -> dict[str, Any]:
        """The plugin's parameters, validated, typed and defaulted: the one place they are
        resolved, so the grid, the commands and the plugin itself all see the same values."""
        if name not in self.plugins.get(section, {}):
            plugin = self.registry.get(PLUGIN_SECTIONS[section], name)
            self.plugins.setdefault(section, {})[name] = resolve_params(
                f"{section}.{name}", plugin.params, {}
            )
        return dict(self.plugins[section][name])

    def as_dict(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "train": self.train,
            "teacher": self.teacher,
            **{section: entries for section, entries in self.plugins.items()},
        }


def preset_names() -> list[str]:
    return sorted(
        entry.name.removesuffix(".toml")
        for entry in importlib.resources.files("kdbench_configs").iterdir()
        if entry.name.endswith(".toml")
    )


def read_preset(preset: str) -> dict[str, Any]:
    """A preset by name (shipped in `configs/`) or by path to a TOML file."""
    path = Path(preset)
    if path.suffix == ".toml" and path.exists():
        text = path.read_text()
    else:
        resource = importlib.resources.files("kdbench_configs") / f"{preset}.toml"
        if not resource.is_file():
            raise ConfigError(
                f"unknown preset {preset!r}; shipped presets: {', '.join(preset_names())} "
                "(or give a path to a .toml file)"
            )
        text = resource.read_text()
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"preset {preset}: {exc}") from exc


def preset_folder(preset: str) -> Path:
    """Where a preset's relative file names (its teachers) are looked up: beside it."""
    path = Path(preset)
    if path.suffix == ".toml" and path.exists():
        return path.resolve().parent
    return Path(str(importlib.resources.files("kdbench_configs")))


def _teacher_checkpoint(value: str, base: Path) -> str | list[str]:
    """`teacher.checkpoint`: a policy for a trained teacher, or the files of loaded teachers,
    one per teacher seed (a TOML list, or a comma list on the command line), each made
    absolute: relative to the preset's folder in a preset, to the working folder in `--set`."""
    items = [part.strip() for part in str(value).split(",") if part.strip()]
    if len(items) == 1 and items[0] in CHECKPOINT_POLICIES:
        return items[0]
    paths = []
    for item in map(str, items):
        path = Path(item).expanduser()
        path = path if path.is_absolute() else base / path
        if not path.is_file():
            raise ConfigError(
                f"teacher.checkpoint: {item!r} is neither a policy "
                f"({', '.join(CHECKPOINT_POLICIES)}) nor an existing file (looked for {path})"
            )
        paths.append(str(path.resolve()))
    return paths[0] if len(paths) == 1 else paths


def _check_teacher_files(teacher: Mapping[str, Any]) -> None:
    """Loaded teachers pair with teacher seeds one to one: a file is one set of weights."""
    files = teacher["checkpoint"]
    if files in CHECKPOINT_POLICIES:
        return
    count = 1 if isinstance(files, str) else len(files)
    if count != len(teacher["seeds"]):
        raise ConfigError(
            f"teacher.checkpoint: {count} file(s) for {len(teacher['seeds'])} teacher seed(s) "
            f"{teacher['seeds']}; a loaded teacher is one set of weights, so name one file "
            "per seed of teacher.seeds, in the same order"
        )


def teacher_files(teacher: Mapping[str, Any]) -> dict[int, str]:
    """Each teacher seed's file when teachers are loaded, else empty."""
    files = teacher["checkpoint"]
    if files in CHECKPOINT_POLICIES:
        return {}
    return dict(zip(teacher["seeds"], [files] if isinstance(files, str) else files))


def _parse_override(item: str) -> tuple[list[str], str]:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item!r}: expected section.key=value")
    return key.strip().split("."), value.strip()


def apply_overrides(raw: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Place each `a.b.c=value` into the raw preset; values stay strings until validated."""
    merged = copy.deepcopy(raw)
    for item in overrides:
        path, value = _parse_override(item)
        node = merged
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {part!r} is a value, not a section")
        node[path[-1]] = value
    return merged


def _check_plugin_sections(
    raw: Mapping[str, Any], registry: Registry
) -> dict[str, dict[str, dict[str, Any]]]:
    checked: dict[str, dict[str, dict[str, Any]]] = {}
    for section, kind in PLUGIN_SECTIONS.items():
        entries = raw.get(section, {})
        if not isinstance(entries, dict):
            raise ConfigError(f"{section}: expected a table of {kind}")
        checked[section] = {}
        for name, params in entries.items():
            if not isinstance(params, dict):
                raise ConfigError(f"{section}.{name}: expected a table of parameters")
            plugin = registry.get(kind, name)
            checked[section][name] = resolve_params(f"{section}.{name}", plugin.params, params)
    return checked


def load_config(
    preset: str, overrides: Iterable[str] = (), registry: Registry | None = None
) -> Config:
    """Read, override and validate; every unknown key is an error naming the allowed ones."""
    from kdbench.plugin.registry import get_registry

    registry = registry or get_registry()
    overrides = list(overrides)  # read twice: applied, then asked where teacher files are named
    raw = apply_overrides(read_preset(preset), overrides)
    allowed_sections = sorted([*CORE_SECTIONS, *PLUGIN_SECTIONS])
    for section in raw:
        if section not in CORE_SECTIONS and section not in PLUGIN_SECTIONS:
            raise ConfigError(
                f"{section}: unknown section; allowed: {', '.join(allowed_sections)}"
            )
    files = raw.get("teacher", {}).get("checkpoint")
    if isinstance(files, list):  # a preset's one file per teacher seed: as on the command line
        raw["teacher"]["checkpoint"] = ",".join(map(str, files))
    resolved = {
        section: resolve_params(section, params, raw.get(section, {}))
        for section, params in CORE_SECTIONS.items()
    }
    from_command_line = any(_parse_override(item)[0] == ["teacher", "checkpoint"] for item in overrides)
    resolved["teacher"]["checkpoint"] = _teacher_checkpoint(
        resolved["teacher"]["checkpoint"], Path.cwd() if from_command_line else preset_folder(preset)
    )
    check_device_setting(resolved["run"]["device"])
    for key in ("datasets", "metrics"):
        if not resolved["run"][key]:
            raise ConfigError(f"run.{key}: the preset names none; set at least one")
    if not resolved["teacher"]["seeds"]:
        raise ConfigError("teacher.seeds: name at least one teacher seed")
    _check_teacher_files(resolved["teacher"])
    for section in ("train", "teacher"):
        try:
            task_loss_of(resolved[section])
        except ValueError as error:
            raise ConfigError(f"{section}: {error}") from None
    return Config(
        preset=preset,
        run=resolved["run"],
        train=resolved["train"],
        teacher=resolved["teacher"],
        plugins=_check_plugin_sections(raw, registry),
        registry=registry,
    )
