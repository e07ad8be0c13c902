"""Version-stamped model checkpoints, written atomically and loaded without pickled code.

A checkpoint holds only tensors and plain data (the model spec, the kdbench version that
wrote it, provenance), so `torch.load(weights_only=True)` can read it; a file that needs
arbitrary unpickling is refused rather than executed. It also holds a CRC-32 of its spec
and weights: a torn or truncated file fails to load, but a flipped bit in the weights
loads silently, and a teacher cache that served altered weights would change every
result distilled from it. Checkpoints written before the CRC was added are checked for
structure only.
"""

from __future__ import annotations

import json
import pickle
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from kdbench import RESULT_VERSION, __version__
from kdbench.api import Denoiser, ModelSpec
from kdbench.errors import CorruptFile, KdbenchError
from kdbench.files.cache import save_atomically


def weights_crc32(spec: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor]) -> int:
    """CRC-32 of the spec (as sorted JSON) and every tensor's name and bytes, by name."""
    crc = zlib.crc32(json.dumps(spec, sort_keys=True).encode())
    for name in sorted(state_dict):
        if not isinstance(state_dict[name], torch.Tensor):
            continue
        raw = state_dict[name].detach().cpu().contiguous().reshape(-1).view(torch.uint8)
        crc = zlib.crc32(raw.numpy(), zlib.crc32(name.encode(), crc))
    return crc


def student_checkpoint(results_dir: Path | str, trial_id: str) -> Path:
    """Where a student trial keeps its weights: `students/` beside the results database."""
    return Path(results_dir) / "students" / f"{trial_id}.pt"


def save_checkpoint(
    path: Path, spec: ModelSpec, model: torch.nn.Module, meta: dict[str, Any]
) -> None:
    state_dict = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {
        "format": "kdbench-checkpoint",
        "kdbench_version": __version__,
        "result_version": RESULT_VERSION,
        "spec": spec.to_json(),
        "state_dict": state_dict,
        "crc32": weights_crc32(spec.to_json(), state_dict),
        "meta": meta,
    }
    save_atomically(payload, path)


def load_weights_only(path: Path) -> Any:
    """A file's tensors and plain data; refuses files that carry pickled code, and raises
    `CorruptFile` for one that is torn or truncated."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise KdbenchError(f"{path}: no such checkpoint") from None
    except pickle.UnpicklingError as exc:
        raise CorruptFile(
            f"{path}: refused: not a plain-weights checkpoint (it may carry pickled code, "
            f"which kdbench never loads): {exc}"
        ) from exc
    except (OSError, RuntimeError, EOFError, ValueError, zipfile.BadZipFile) as exc:
        raise CorruptFile(f"{path}: unreadable checkpoint (truncated or damaged): {exc}") from exc


def is_kdbench_checkpoint(payload: Any) -> bool:
    """Whether a loaded file claims to be a kdbench checkpoint (rather than, say, a plain
    state dict); `verified_checkpoint` then checks that the claim holds."""
    return isinstance(payload, dict) and payload.get("format") == "kdbench-checkpoint"


def verified_checkpoint(path: Path, payload: Any) -> dict[str, Any]:
    """A loaded payload, once it is a whole kdbench checkpoint that passes its CRC."""
    if not is_kdbench_checkpoint(payload) or not {"spec", "state_dict"} <= payload.keys():
        raise CorruptFile(f"{path}: not a kdbench checkpoint")
    if "crc32" in payload and payload["crc32"] != weights_crc32(
        payload["spec"], payload["state_dict"]
    ):
        raise CorruptFile(f"{path}: checkpoint fails its CRC-32 (altered or damaged)")
    return payload


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint's payload; refuses files that carry pickled code or aren't ours, and
    raises `CorruptFile` for one that is torn, truncated or fails its CRC."""
    return verified_checkpoint(path, load_weights_only(path))


def build_from_checkpoint(path: Path, registry: Any) -> tuple[Denoiser, dict[str, Any]]:
    """Rebuild the model a checkpoint describes, in eval mode."""
    payload = load_checkpoint(path)
    spec = payload["spec"]
    family = registry.get("models", spec["family"])
    model = family.build(spec["params"])
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise CorruptFile(
            f"{path}: weights do not fit the model its spec describes: {exc}"
        ) from exc
    model.eval()
    return model, payload
