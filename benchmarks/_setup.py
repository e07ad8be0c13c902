"""What several benchmarks build the same way: the dataset, the models, the settings.

Built through kdbench's own registry and presets, so a benchmark times what a grid runs
(the `quick` preset's training settings, the registered pairs), not a look-alike.
"""

from __future__ import annotations

from typing import Any

import torch

from kdbench.api import MaskDenoiser, ModelSpec, PreparedDataset, resolve_params
from kdbench.config import load_config
from kdbench.files.cache import cache_root
from kdbench.plugin.registry import get_registry
from kdbench.train.teacher import freeze


def procedural_dataset() -> PreparedDataset:
    """The default procedural corpus (600/60/60 utterances of 2 s), from `$KDBENCH_CACHE`."""
    plugin = get_registry().get("datasets", "procedural")
    params = resolve_params("dataset.procedural", plugin.params, {})
    return plugin.prepare(params, cache_root())


def pair(name: str) -> Any:
    return get_registry().get("pairs", name)


def build(spec: ModelSpec, seed: int = 0) -> MaskDenoiser:
    """A freshly initialised model; seeded, so every case of a repeat starts alike."""
    torch.manual_seed(seed)
    return get_registry().get("models", spec.family).build(spec.params)


def random_teacher(spec: ModelSpec) -> MaskDenoiser:
    """The teacher as a trial gets it (eval mode, frozen), with random weights: its speed
    does not depend on what it learned, and training one would dwarf the benchmark."""
    return freeze(build(spec))


def quick_train_settings(steps: int) -> dict[str, Any]:
    """The `quick` preset's student settings with the number of steps overridden."""
    return {**load_config("quick").train, "steps": steps}
