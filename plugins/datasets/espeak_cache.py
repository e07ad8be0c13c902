"""The eSpeak corpus on disk: one float wav per signal, and a manifest of sha256 hashes that
every load checks.

Hashes are over the decoded samples (float32, little-endian), not the file bytes: the
float wav header carries a write timestamp, so byte hashes would differ between two
generations of identical audio. The folder is written under a temporary name and renamed
into place, as the procedural corpus is, so a half-written corpus never looks complete; a
check that fails raises `CorruptFile`, and the dataset sets the corpus aside and rebuilds it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from kdbench_plugins.datasets.espeak_corpus import SPLITS, GeneratedUtterance
from kdbench_plugins.datasets.procedural.speech import SAMPLE_RATE

from kdbench.api import (
    AudioError,
    CorruptFile,
    Utterance,
    read_audio,
    staged_directory,
    write_audio,
)

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1


def samples_sha256(audio: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(audio, dtype="<f4").tobytes()).hexdigest()


def content_digest(manifest: Mapping[str, Any]) -> str:
    """One hash of every utterance's hashes and metadata, in split order: equal digests mean
    equal corpora."""
    entries = {split: manifest["splits"][split] for split in SPLITS}
    return hashlib.sha256(json.dumps(entries, sort_keys=True).encode()).hexdigest()


def write_corpus(
    folder: Path,
    corpus: Mapping[str, list[GeneratedUtterance]],
    header: Mapping[str, Any],
) -> None:
    """Write the wavs and the manifest (`header` plus per-utterance entries) into `folder`."""
    with staged_directory(folder) as staging:
        splits: dict[str, list[dict[str, Any]]] = {}
        for split in SPLITS:
            splits[split] = []
            for index, utterance in enumerate(corpus[split]):
                entry: dict[str, Any] = {"id": f"{split}-{index:05d}"}
                for signal in ("clean", "noisy"):
                    audio = getattr(utterance, signal)
                    name = f"{split}/{index:05d}-{signal}.wav"
                    write_audio(staging / name, audio, SAMPLE_RATE, subtype="float")
                    entry[signal] = {"file": name, "sha256": samples_sha256(audio)}
                entry["meta"] = utterance.meta
                splits[split].append(entry)
        manifest = {"format": MANIFEST_FORMAT, **header, "splits": splits}
        manifest["content_sha256"] = content_digest(manifest)
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1))


def read_manifest(folder: Path, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest, checked against itself and against the settings it should be for."""
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text())
        if manifest["format"] != MANIFEST_FORMAT or set(manifest["splits"]) != set(SPLITS):
            raise ValueError(f"unexpected format {manifest['format']!r}")
        if manifest["content_sha256"] != content_digest(manifest):
            raise ValueError("its content_sha256 does not match its entries")
        if manifest["settings"] != settings:
            raise ValueError("it was written for other settings")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CorruptFile(
            f"{path}: unreadable or inconsistent eSpeak corpus manifest ({exc})"
        ) from exc
    return manifest


def load_corpus(folder: Path, manifest: Mapping[str, Any]) -> dict[str, list[Utterance]]:
    """Every utterance, each signal checked against its manifest hash before use."""
    splits = {}
    for split in SPLITS:
        splits[split] = []
        for entry in manifest["splits"][split]:
            clean, noisy = (_verified(folder, entry[signal]) for signal in ("clean", "noisy"))
            splits[split].append(Utterance(entry["id"], clean, noisy, dict(entry["meta"])))
    return splits


def _verified(folder: Path, file: Mapping[str, str]) -> np.ndarray:
    path = folder / file["file"]
    try:
        audio = read_audio(path, SAMPLE_RATE)
    except AudioError as exc:
        raise CorruptFile(str(exc)) from exc
    found = samples_sha256(audio)
    if found != file["sha256"]:
        raise CorruptFile(
            f"{path}: samples do not match the corpus manifest (sha256 {found[:16]}..., "
            f"expected {file['sha256'][:16]}...): the cache was modified or corrupted"
        )
    return audio
