"""Bring your own teacher: ``teacher.checkpoint = PATH`` loads a teacher instead of training one.

PATH is a kdbench checkpoint (it names its own model spec, which then replaces the pair's
teacher spec) or a plain state dict of tensors for the pair's teacher spec. It is read
with `torch.load(weights_only=True)`, so a file that would need pickled code is refused
rather than run, and every problem is an error naming the file.

The file's sha256 is the teacher's identity in place of the training settings, which do
not apply to it: the same weights give the same teacher and student trial ids wherever the
file lies, and edited weights give new ones instead of mixing with old rows. The hash is
taken once when the grid is built and checked again when a worker loads the file, so a
file changed in between fails its trials rather than scoring other weights.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from kdbench.api import Denoiser, ModelSpec
from kdbench.deploy.checkpoints import (
    is_kdbench_checkpoint,
    load_weights_only,
    verified_checkpoint,
)
from kdbench.config import CHECKPOINT_POLICIES
from kdbench.errors import KdbenchError
from kdbench.run.identity import file_sha256


@dataclasses.dataclass(frozen=True)
class OwnTeacher:
    """A teacher checkpoint file and the sha256 its weights were identified by."""

    path: Path
    sha256: str

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> OwnTeacher | None:
        """The file `teacher.checkpoint` names, or None when the teacher is trained."""
        value = str(settings["checkpoint"])
        if value in CHECKPOINT_POLICIES:
            return None
        path = Path(value)
        if not path.is_file():
            raise KdbenchError(f"teacher.checkpoint: {path}: no such file")
        return cls(path, settings.get("checkpoint_sha256") or file_sha256(path))

    def identity(self) -> dict[str, str]:
        """What the teacher's and its students' trial ids hash instead of the settings."""
        return {"checkpoint_sha256": self.sha256}

    def settings(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """The teacher settings a worker receives: the file and the hash to check."""
        return {**settings, "checkpoint": str(self.path), "checkpoint_sha256": self.sha256}

    def _contents(self, pair_spec: ModelSpec) -> tuple[ModelSpec, Mapping[str, torch.Tensor]]:
        payload = load_weights_only(self.path)
        if is_kdbench_checkpoint(payload):
            spec = verified_checkpoint(self.path, payload)["spec"]
            return ModelSpec(spec["family"], spec["params"]), payload["state_dict"]
        if isinstance(payload, dict) and payload and all(
            isinstance(key, str) and isinstance(value, torch.Tensor)
            for key, value in payload.items()
        ):
            return pair_spec, payload
        raise KdbenchError(
            f"{self.path}: neither a kdbench checkpoint nor a state dict of tensors"
        )

    def trained_on(self) -> str | None:
        """The dataset identity a kdbench checkpoint records its teacher was trained on
        (None for a plain state dict, which does not say)."""
        payload = load_weights_only(self.path)
        if not is_kdbench_checkpoint(payload):
            return None
        dataset = verified_checkpoint(self.path, payload).get("meta", {}).get("dataset")
        return str(dataset) if dataset else None

    def spec(self, pair_spec: ModelSpec) -> ModelSpec:
        """The teacher's spec: the checkpoint's own, or the pair's for a plain state dict."""
        return self._contents(pair_spec)[0]

    def load(self, registry: Any, pair_spec: ModelSpec) -> tuple[Denoiser, ModelSpec]:
        """The teacher in eval mode and its spec, after checking the file is unchanged."""
        if file_sha256(self.path) != self.sha256:
            raise KdbenchError(
                f"{self.path}: changed since the grid was built (sha256 no longer "
                f"{self.sha256[:12]}…); run again to identify the new weights"
            )
        spec, state = self._contents(pair_spec)
        model = registry.get("models", spec.family).build(spec.params)
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise KdbenchError(
                f"{self.path}: its weights do not fit a {spec.family} teacher with "
                f"{dict(spec.params)}: {exc}"
            ) from exc
        return model.eval(), spec
