"""What every on-disk dataset needs: finding audio files, pairing clean with noisy by name,
splitting reproducibly, loading with uniform error handling, and a content-based identity.

Kept apart from the dataset classes so that `folders`, `voicebank` and `mix` cannot drift
apart in how they treat a broken file or what their identity covers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kdbench.api import AudioError, ConfigError, Param, Utterance, read_audio

logger = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac")
SPLITS = ("train", "valid", "test")
IDENTITY_CHARS = 16
# Quieter than one 16-bit step: digital silence, for which PESQ and SNR are undefined.
SILENCE_PEAK = 1.0 / 32768
SPEAKER_PATTERN = re.compile(r"^([A-Za-z]+\d+)_")

SAMPLE_RATE_PARAM = Param(16000, "rate every file is resampled to (Hz)", int)
ON_ERROR_PARAM = Param(
    "raise",
    "an unreadable file: raise stops with an error naming it, skip leaves it out with a warning",
    str,
    choices=("raise", "skip"),
)


@dataclasses.dataclass(frozen=True, order=True)
class FilePair:
    """A clean file and its noisy partner, matched by file name."""

    name: str
    clean: Path
    noisy: Path


def require_dir(path: Path, layout: str) -> Path:
    """`path` if it is a directory; otherwise an error that tells the user what to create."""
    if not path.is_dir():
        raise ConfigError(f"{path}: folder not found; expected layout: {layout}")
    return path


def require_root(value: str, key: str, layout: str) -> Path:
    """The folder a user set as parameter `key`, resolved, so messages show the real place."""
    if not value:
        raise ConfigError(f"{key}: not set; point it at a folder laid out as: {layout}")
    return require_dir(Path(value).expanduser().resolve(), layout)


def list_audio(directory: Path) -> dict[str, Path]:
    """Audio files directly in `directory` by file name; hidden files (macOS `._x.wav`
    resource forks, editor droppings) are not audio even when named like it."""
    return {
        path.name: path
        for path in sorted(directory.iterdir())
        if path.is_file()
        and path.suffix.lower() in AUDIO_SUFFIXES
        and not path.name.startswith(".")
    }


def pair_by_name(clean_dir: Path, noisy_dir: Path) -> list[FilePair]:
    """Clean and noisy files with the same name; any file without a partner is an error,
    because silently dropping it would change the benchmark without anyone noticing."""
    clean, noisy = list_audio(clean_dir), list_audio(noisy_dir)
    unmatched = sorted(set(clean) ^ set(noisy))
    if unmatched:
        name = unmatched[0]
        have, other = (clean[name], noisy_dir) if name in clean else (noisy[name], clean_dir)
        more = f" (and {len(unmatched) - 1} more unmatched)" if len(unmatched) > 1 else ""
        raise ConfigError(f"{have}: no file of the same name in {other}{more}")
    if not clean:
        raise ConfigError(f"{clean_dir}: no audio files ({', '.join(AUDIO_SUFFIXES)})")
    return [FilePair(name, clean[name], noisy[name]) for name in sorted(clean)]


def speaker_of(name: str) -> str | None:
    """The speaker in names like `p226_001.wav` (VoiceBank, many corpora), else None."""
    match = SPEAKER_PATTERN.match(name)
    return match.group(1) if match else None


def check_fractions(owner: str, valid_fraction: float, test_fraction: float) -> None:
    """Reject fractions up front: a bad one would otherwise surface as an empty train split."""
    for key, value in (("valid_fraction", valid_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise ConfigError(f"{owner}.{key}: must be in [0, 1), got {value}")
    if valid_fraction + test_fraction >= 1.0:
        raise ConfigError(
            f"{owner}: valid_fraction + test_fraction must leave files for training, got "
            f"{valid_fraction} + {test_fraction}"
        )


def seeded_split(
    items: Sequence[Any], fractions: Mapping[str, float], seed: int, what: str
) -> dict[str, list[Any]]:
    """Split `items` into "train" plus the named held-out splits, by a seeded shuffle.

    Items are sorted first so the split depends only on the names and the seed, not on
    the order a file system lists them in. A held-out split with a non-zero fraction gets
    at least one item, so a small dataset still has something to validate and test on.
    """
    ordered = sorted(items)
    order = np.random.default_rng(seed).permutation(len(ordered))
    shuffled = [ordered[index] for index in order]
    splits: dict[str, list[Any]] = {}
    start = 0
    for split, fraction in fractions.items():
        count = max(1, round(fraction * len(shuffled))) if fraction > 0 else 0
        splits[split] = sorted(shuffled[start : start + count])
        start += count
    splits["train"] = sorted(shuffled[start:])
    if not splits["train"] or any(
        fraction > 0 and not splits[split] for split, fraction in fractions.items()
    ):
        raise ConfigError(
            f"{what}: {len(ordered)} item(s) are too few to split into train and "
            + ", ".join(f"{split} ({fraction:g})" for split, fraction in fractions.items())
        )
    return splits


class ContentHasher:
    """sha256 of file contents, remembered by (path, size, mtime) under `cache_dir`.

    Hashing a full corpus takes minutes, re-hashing it on every run would make the
    identity expensive; a file whose size and mtime are unchanged is trusted unchanged.
    """

    def __init__(self, cache_dir: Path | None) -> None:
        self.path = cache_dir / "content_hashes.json" if cache_dir is not None else None
        self.entries: dict[str, list[Any]] = {}
        self.dirty = False
        if self.path is not None and self.path.is_file():
            try:
                self.entries = json.loads(self.path.read_text())
            except (OSError, ValueError):
                logger.warning("%s: unreadable hash cache, rebuilding it", self.path)

    def digest(self, path: Path) -> str:
        stat = path.stat()
        key = str(path.resolve())
        cached = self.entries.get(key)
        if cached is not None and cached[:2] == [stat.st_size, stat.st_mtime_ns]:
            return cached[2]
        sha = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                sha.update(block)
        self.entries[key] = [stat.st_size, stat.st_mtime_ns, sha.hexdigest()]
        self.dirty = True
        return sha.hexdigest()

    def save(self) -> None:
        """Store new hashes atomically: concurrent workers may race, and a torn cache file
        would cost a full re-hash, while losing one writer's entries costs little."""
        if self.path is None or not self.dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.path.parent, suffix=".tmp")
        with os.fdopen(handle, "w") as stream:
            json.dump(self.entries, stream)
        os.replace(temporary, self.path)
        self.dirty = False


def dataset_identity(
    recipe: str,
    params: Mapping[str, Any],
    files: Iterable[tuple[str, Path]],
    cache_dir: Path | None,
) -> str:
    """A short hash of what a dataset is: its recipe, its settings and its files' contents.

    `files` are (label, path) with labels relative to the dataset root and `params` should
    leave out where the data lives, so the same corpus in another folder or on another
    machine has the same identity, while any edited file gives a different one.
    """
    hasher = ContentHasher(cache_dir)
    listing = [
        [label, path.stat().st_size, hasher.digest(path)]
        for label, path in sorted(files, key=lambda item: item[0])
    ]
    hasher.save()
    document = {"recipe": recipe, "params": dict(sorted(params.items())), "files": listing}
    blob = json.dumps(document, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:IDENTITY_CHARS]


def warn_if_silent(audio: np.ndarray, path: Path) -> None:
    """A silent reference is kept (its metrics become NaN with a reason) but announced,
    since it usually means a bad export rather than a real recording."""
    if float(np.max(np.abs(audio), initial=0.0)) < SILENCE_PEAK:
        logger.warning("%s: clean reference is silent; metrics needing speech will be NaN", path)


def load_pair(pair: FilePair, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Clean and noisy samples of `pair`, which must have the same length to be aligned."""
    clean = read_audio(pair.clean, sample_rate)
    noisy = read_audio(pair.noisy, sample_rate)
    if clean.shape != noisy.shape:
        raise AudioError(
            f"{pair.clean} has {clean.shape[0]} samples but {pair.noisy} has "
            f"{noisy.shape[0]} (at {sample_rate} Hz); paired files must be equally long"
        )
    return clean, noisy


def load_pairs(
    pairs: Sequence[FilePair], split: str, sample_rate: int, on_error: str
) -> list[Utterance]:
    """Utterances of `pairs`; with on_error="skip" a broken pair is left out with a warning."""
    utterances = []
    for pair in pairs:
        try:
            clean, noisy = load_pair(pair, sample_rate)
        except AudioError as exc:
            if on_error != "skip":
                raise
            logger.warning("skipping %s: %s", pair.name, exc)
            continue
        warn_if_silent(clean, pair.clean)
        meta = {
            "speaker": speaker_of(pair.name),
            "split": split,
            "clean_path": str(pair.clean),
            "noisy_path": str(pair.noisy),
        }
        utterances.append(Utterance(f"{split}/{Path(pair.name).stem}", clean, noisy, meta))
    return utterances


def load_files(paths: Iterable[Path], sample_rate: int, on_error: str) -> dict[Path, np.ndarray]:
    """Samples of single files by path, under the same on_error policy as `load_pairs`."""
    loaded = {}
    for path in paths:
        try:
            loaded[path] = read_audio(path, sample_rate)
        except AudioError as exc:
            if on_error != "skip":
                raise
            logger.warning("skipping %s", exc)
    return loaded
