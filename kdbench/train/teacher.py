"""Teachers: trained once per (spec, dataset, settings, seed), cached, frozen, reused; or
loaded from the user's own checkpoint (`kdbench.train.own_teacher`).

A file lock around training makes concurrent workers that need the same teacher wait for
the first one instead of training it twice; the cache file is written atomically, so a
killed run leaves either a whole teacher or none.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import filelock
import torch

from kdbench.api import Denoiser, ModelSpec, PreparedDataset
from kdbench.checkpoints import build_from_checkpoint, save_checkpoint
from kdbench.identity import stable_id
from kdbench.train.own_teacher import OwnTeacher
from kdbench.train.trainer import train


def teacher_key(spec: ModelSpec, dataset: PreparedDataset, settings: Mapping[str, Any]) -> str:
    return stable_id(
        "teacher",
        {"spec": spec.to_json(), "dataset": dataset.identity, "settings": dict(settings)},
    )


def freeze(model: Denoiser) -> Denoiser:
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def get_teacher(
    registry: Any,
    spec: ModelSpec,
    dataset: PreparedDataset,
    settings: Mapping[str, Any],
    cache_dir: Path,
    on_step: Callable[[int, int], None] | None = None,
) -> tuple[Denoiser, dict[str, Any]]:
    """The frozen teacher and its checkpoint metadata: loaded from `teacher.checkpoint`
    when that names a file, else trained if not cached."""
    own = OwnTeacher.from_settings(settings)
    if own is not None:
        model, spec = own.load(registry, spec)
        meta = {
            "teacher_key": teacher_key(spec, dataset, own.identity()),
            "checkpoint_sha256": own.sha256,
            "path": str(own.path),
        }
        return freeze(model), meta
    key = teacher_key(spec, dataset, settings)
    path = cache_dir / "teachers" / f"{key}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(str(path) + ".lock"):
        if not path.exists():
            # Seeded before it is built: the initial weights must not depend on what else
            # this worker process ran before (a reused worker's RNG state varies).
            torch.manual_seed(int(settings["seed"]))
            model = registry.get("models", spec.family).build(spec.params)
            result = train(
                model,
                dataset.splits["train"],
                dataset.splits["valid"],
                settings,
                seed=int(settings["seed"]),
                sample_rate=dataset.sample_rate,
                on_step=on_step,
            )
            save_checkpoint(
                path,
                spec,
                model,
                {
                    "teacher_key": key,
                    "dataset": dataset.identity,
                    "settings": dict(settings),
                    "kept_step": result.kept_step,
                    "best_valid_loss": result.best_valid_loss,
                    "train_seconds": result.seconds,
                },
            )
    model, payload = build_from_checkpoint(path, registry)
    return freeze(model), {**payload["meta"], "path": str(path)}
