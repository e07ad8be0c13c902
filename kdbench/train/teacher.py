"""Teachers: trained once per (spec, dataset, settings, seed), cached, frozen, reused; or
loaded from the user's own checkpoint (`kdbench.train.own_teacher`).

A file lock around training makes concurrent workers that need the same teacher wait for
the first one instead of training it twice; the cache file is written atomically, so a
killed run leaves either a whole teacher or none. A cached teacher that fails its check
(torn, truncated, a CRC mismatch) is set aside and trained again, once, under the same
lock (`kdbench.files.cache.load_or_build`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from kdbench.api import Denoiser, ModelSpec, PreparedDataset
from kdbench.config import identity_settings
from kdbench.deploy.checkpoints import build_from_checkpoint, save_checkpoint
from kdbench.files.cache import load_or_build
from kdbench.run.identity import stable_id
from kdbench.train.own_teacher import OwnTeacher
from kdbench.train.trainer import train


def teacher_key(spec: ModelSpec, dataset_identity: str, settings: Mapping[str, Any]) -> str:
    return stable_id(
        "teacher",
        {"spec": spec.to_json(), "dataset": dataset_identity, "settings": identity_settings(settings)},
    )


def teacher_checkpoint(cache_dir: Path, key: str) -> Path:
    """Where the teacher with `key` (`teacher_key`) is cached."""
    return Path(cache_dir) / "teachers" / f"{key}.pt"


def teacher_file(
    spec: ModelSpec, dataset_identity: str, settings: Mapping[str, Any], cache_dir: Path
) -> Path:
    """Where a teacher's weights lie: the file `teacher.checkpoint` names, or the cache."""
    own = OwnTeacher.from_settings(settings)
    if own is not None:
        return own.path
    return teacher_checkpoint(cache_dir, teacher_key(spec, dataset_identity, settings))


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
    device: torch.device | None = None,
) -> tuple[Denoiser, dict[str, Any]]:
    """The frozen teacher on `device` (default CPU) and its checkpoint metadata: loaded from
    `teacher.checkpoint` when that names a file, else trained there if not cached."""
    own = OwnTeacher.from_settings(settings)
    if own is not None:
        model, spec = own.load(registry, spec)
        meta = {
            "teacher_key": teacher_key(spec, dataset.identity, own.identity()),
            "checkpoint_sha256": own.sha256,
            "path": str(own.path),
        }
        return freeze(model.to(device or "cpu")), meta
    key = teacher_key(spec, dataset.identity, settings)
    path = teacher_checkpoint(cache_dir, key)
    lock = path.with_name(path.name + ".lock")

    def build() -> None:
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
            device=device,
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
                "history": result.history,
            },
        )

    path.parent.mkdir(parents=True, exist_ok=True)
    model, payload = load_or_build(
        path, lambda checkpoint: build_from_checkpoint(checkpoint, registry), build, lock
    )
    return freeze(model.to(device or "cpu")), {**payload["meta"], "path": str(path)}
