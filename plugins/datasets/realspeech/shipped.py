"""The recordings that ship beside this module, checked against their manifest: the test
set's in this folder, the dev set's in `dev/` (the same layout, other talkers).

Every load verifies each FLAC's sha256 (about a megabyte in all, milliseconds), so an
installation whose data was altered or truncated fails naming the file instead of
scoring on different audio under the same identity.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
from kdbench_plugins.datasets.procedural.speech import SAMPLE_RATE

from kdbench.api import AudioError, read_audio

DATA_DIR = Path(__file__).resolve().parent
"""The test set's folder (tools/build_realspeech.py)."""
DEV_DIR = DATA_DIR / "dev"
"""The dev set's folder (tools/build_realspeech_dev.py)."""


@dataclasses.dataclass(frozen=True)
class CleanRecording:
    """One shipped clean utterance and what the manifest says about it."""

    id: str
    speaker: str
    audio: np.ndarray
    entry: dict[str, Any]
    speaker_info: dict[str, Any]


def manifest_bytes(folder: Path) -> bytes:
    path = folder / "MANIFEST.json"
    try:
        return path.read_bytes()
    except OSError as exc:
        raise AudioError(f"{path}: cannot read the real-speech manifest ({exc}); "
                         "reinstall kdbench") from exc


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_recordings(folder: Path) -> list[CleanRecording]:
    """Every clean utterance shipped in `folder`, in manifest order, each checked against
    its hash."""
    manifest = json.loads(manifest_bytes(folder))
    if manifest["sample_rate"] != SAMPLE_RATE:
        raise AudioError(f"{folder / 'MANIFEST.json'}: sample_rate {manifest['sample_rate']}, expected "
                         f"{SAMPLE_RATE}")
    recordings = []
    for entry in manifest["utterances"]:
        path = folder / entry["file"]
        if not path.is_file() or file_sha256(path) != entry["sha256"]:
            raise AudioError(f"{path}: missing or not the file MANIFEST.json lists "
                             "(sha256 differs); reinstall kdbench")
        audio = read_audio(path, SAMPLE_RATE)
        recordings.append(CleanRecording(entry["id"], entry["speaker"], audio, entry,
                                         manifest["speakers"][entry["speaker"]]))
    return recordings
