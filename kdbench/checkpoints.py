"""Version-stamped model checkpoints, written atomically and loaded without pickled code.

A checkpoint holds only tensors and plain data (the model spec, the kdbench version that
wrote it, provenance), so `torch.load(weights_only=True)` can read it; a file that needs
arbitrary unpickling is refused rather than executed.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from kdbench import RESULT_VERSION, __version__
from kdbench.api import Denoiser, ModelSpec
from kdbench.cache import save_atomically
from kdbench.errors import KdbenchError


def save_checkpoint(
    path: Path, spec: ModelSpec, model: torch.nn.Module, meta: dict[str, Any]
) -> None:
    payload = {
        "format": "kdbench-checkpoint",
        "kdbench_version": __version__,
        "result_version": RESULT_VERSION,
        "spec": spec.to_json(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": meta,
    }
    save_atomically(payload, path)


def load_weights_only(path: Path) -> Any:
    """A file's tensors and plain data; refuses files that carry pickled code."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise KdbenchError(f"{path}: no such checkpoint") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        raise KdbenchError(
            f"{path}: refused: not a plain-weights checkpoint (it may carry pickled code, "
            f"which kdbench never loads): {exc}"
        ) from exc


def is_kdbench_checkpoint(payload: Any) -> bool:
    return isinstance(payload, dict) and payload.get("format") == "kdbench-checkpoint"


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint's payload; refuses files that carry pickled code or aren't ours."""
    payload = load_weights_only(path)
    if not is_kdbench_checkpoint(payload):
        raise KdbenchError(f"{path}: not a kdbench checkpoint")
    return payload


def build_from_checkpoint(path: Path, registry: Any) -> tuple[Denoiser, dict[str, Any]]:
    """Rebuild the model a checkpoint describes, in eval mode."""
    payload = load_checkpoint(path)
    spec = payload["spec"]
    family = registry.get("models", spec["family"])
    model = family.build(spec["params"])
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model, payload
