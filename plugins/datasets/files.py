"""Datasets read from audio files on disk: any paired folders, VoiceBank-DEMAND, and speech
mixed with noise at chosen SNRs."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from kdbench_plugins.datasets.file_pairs import (
    ON_ERROR_PARAM,
    SAMPLE_RATE_PARAM,
    SPLITS,
    FilePair,
    check_fractions,
    dataset_identity,
    list_audio,
    load_files,
    load_pairs,
    pair_by_name,
    require_dir,
    require_root,
    seeded_split,
    speaker_of,
    warn_if_silent,
)
from kdbench_plugins.datasets.procedural.noise import mix_at_snr

from kdbench.api import (
    AudioError,
    ConfigError,
    Dataset,
    Param,
    PreparedDataset,
    Utterance,
    hookimpl,
)

FOLDERS_LAYOUT = (
    "ROOT/train/{clean}/*.wav + ROOT/train/{noisy}/*.wav (same file names in both), "
    "ROOT/test/... and optionally ROOT/valid/... (else valid is held out of train); or, "
    "split by a seeded shuffle of file names, ROOT/{clean}/*.wav + ROOT/{noisy}/*.wav"
)

VOICEBANK_DIRS = {
    "train": ("clean_trainset_28spk_wav", "noisy_trainset_28spk_wav"),
    "test": ("clean_testset_wav", "noisy_testset_wav"),
}
VOICEBANK_LAYOUT = (
    " + ".join(f"ROOT/{folder}/*.wav" for pair in VOICEBANK_DIRS.values() for folder in pair)
    + " (48 kHz, named like p226_001.wav)"
)
logger = logging.getLogger(__name__)

MIX_LAYOUT = "SPEECH_DIR/*.wav (clean speech) + NOISE_DIR/*.wav (noise recordings)"


def _pair_files(root: Path, pairs_by_split: Mapping[str, list[FilePair]]) -> list[tuple[str, Path]]:
    return [
        (str(path.relative_to(root)), path)
        for pairs in pairs_by_split.values()
        for pair in pairs
        for path in (pair.clean, pair.noisy)
    ]


def _without(params: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    """Params minus where the data lives: the identity hashes the files themselves."""
    return {key: value for key, value in params.items() if key not in keys}


class _FileDataset(Dataset):
    """What the three file datasets share once they know their files.

    `recipe` names how files become utterances; bump it when that changes, so old results
    do not carry the identity of data made differently.
    """

    recipe: ClassVar[str]

    def _prepared(
        self, identity: str, sample_rate: int, splits: Mapping[str, list[Utterance]]
    ) -> PreparedDataset:
        """Every split present, possibly empty, so callers never need to check for a key."""
        return PreparedDataset(
            name=self.name,
            identity=identity,
            sample_rate=sample_rate,
            splits={split: splits.get(split, []) for split in SPLITS},
            description=self.description,
        )

    def _from_pairs(
        self,
        root: Path,
        p: Mapping[str, Any],
        pairs: Mapping[str, list[FilePair]],
        cache_dir: Path,
    ) -> PreparedDataset:
        """Identity first, over every file found, so fixing a skipped file changes it."""
        files = _pair_files(root, pairs)
        identity = dataset_identity(self.recipe, _without(p, "root"), files, cache_dir)
        splits = {
            split: load_pairs(split_pairs, split, p["sample_rate"], p["on_error"])
            for split, split_pairs in pairs.items()
        }
        return self._prepared(identity, p["sample_rate"], splits)


class FoldersDataset(_FileDataset):
    name = "folders"
    description = "clean/noisy wav pairs matched by file name, in split folders or split by seed"
    recipe = "folders-v1"
    params = {
        "root": Param("", "folder holding the data (see the layout in errors)", str),
        "clean_dir": Param("clean", "name of the clean sub-folder", str),
        "noisy_dir": Param("noisy", "name of the noisy sub-folder", str),
        "sample_rate": SAMPLE_RATE_PARAM,
        "valid_fraction": Param(0.1, "share of files held out for validation if no valid/"),
        "test_fraction": Param(0.1, "share of files held out for testing if no split folders"),
        "seed": Param(0, "seed of the shuffle that splits the files", int),
        "on_error": ON_ERROR_PARAM,
    }

    def _pairs(self, root: Path, p: Mapping[str, Any], layout: str) -> dict[str, list[FilePair]]:
        """Pairs per split: from split folders when any exist, else by a seeded shuffle."""

        def pairs_in(base: Path) -> list[FilePair]:
            return pair_by_name(
                require_dir(base / p["clean_dir"], layout),
                require_dir(base / p["noisy_dir"], layout),
            )

        check_fractions(f"dataset.{self.name}", p["valid_fraction"], p["test_fraction"])
        if any((root / split).is_dir() for split in SPLITS):
            pairs = {
                "train": pairs_in(require_dir(root / "train", layout)),
                "test": pairs_in(require_dir(root / "test", layout)),
            }
            if (root / "valid").is_dir():
                pairs["valid"] = pairs_in(root / "valid")
            else:
                held_out = {"valid": p["valid_fraction"]}
                train = pairs["train"]
                pairs.update(seeded_split(train, held_out, p["seed"], str(root / "train")))
            return pairs
        if not (root / p["clean_dir"]).is_dir() and not (root / p["noisy_dir"]).is_dir():
            raise ConfigError(
                f"{root}: neither split folders (train/, test/) nor {p['clean_dir']}/ and "
                f"{p['noisy_dir']}/ found; expected layout:\n{layout}"
            )
        fractions = {"valid": p["valid_fraction"], "test": p["test_fraction"]}
        return seeded_split(pairs_in(root), fractions, p["seed"], str(root))

    def prepare(self, params: Mapping[str, Any], cache_dir: Path) -> PreparedDataset:
        layout = FOLDERS_LAYOUT.format(clean=params["clean_dir"], noisy=params["noisy_dir"])
        root = require_root(params["root"], f"dataset.{self.name}.root", layout)
        pairs = self._pairs(root, params, layout)
        return self._from_pairs(root, params, pairs, cache_dir)


class VoiceBankDataset(_FileDataset):
    name = "voicebank"
    description = "VoiceBank-DEMAND (28 speakers), valid = held-out training speakers"
    recipe = "voicebank-v1"
    params = {
        "root": Param("", "folder holding the four VoiceBank-DEMAND wav folders", str),
        "sample_rate": SAMPLE_RATE_PARAM,
        "valid_speakers": Param(
            ["p226", "p287"], "training speakers held out for validation (the common choice)", list
        ),
        "on_error": ON_ERROR_PARAM,
    }

    def prepare(self, params: Mapping[str, Any], cache_dir: Path) -> PreparedDataset:
        root = require_root(params["root"], f"dataset.{self.name}.root", VOICEBANK_LAYOUT)
        found = {
            split: pair_by_name(
                require_dir(root / clean, VOICEBANK_LAYOUT),
                require_dir(root / noisy, VOICEBANK_LAYOUT),
            )
            for split, (clean, noisy) in VOICEBANK_DIRS.items()
        }
        held_out = set(params["valid_speakers"])
        speakers = {speaker_of(pair.name) for pair in found["train"]}
        unknown = sorted(held_out - speakers)
        if unknown:
            raise ConfigError(
                f"dataset.{self.name}.valid_speakers: no training files of speaker(s) "
                f"{', '.join(unknown)}; "
                f"training speakers: {', '.join(sorted(s for s in speakers if s))}"
            )
        pairs = {
            "train": [pair for pair in found["train"] if speaker_of(pair.name) not in held_out],
            "valid": [pair for pair in found["train"] if speaker_of(pair.name) in held_out],
            "test": found["test"],
        }
        return self._from_pairs(root, params, pairs, cache_dir)


def _fit_length(
    signal: np.ndarray, length: int, rng: np.random.Generator
) -> tuple[np.ndarray, int]:
    """`length` samples of `signal` from a random offset, looping it when it is too short."""
    if len(signal) >= length:
        offset = int(rng.integers(0, len(signal) - length + 1))
    else:
        offset = int(rng.integers(0, len(signal)))
    indices = (offset + np.arange(length)) % len(signal)
    return signal[indices], offset


class MixDataset(_FileDataset):
    name = "mix"
    description = "clean speech mixed with noise recordings at chosen SNRs (seeded)"
    recipe = "mix-v1"
    params = {
        "speech_dir": Param("", "folder of clean speech files", str),
        "noise_dir": Param("", "folder of noise files", str),
        "snrs": Param([-5.0, 0.0, 5.0, 10.0], "SNRs (dB) drawn from for each mixture", list),
        "seed": Param(0, "seed of the file split and of every draw", int),
        "train_count": Param(1000, "mixtures in the train split", int, at_least=0),
        "valid_count": Param(100, "mixtures in the valid split", int, at_least=0),
        "test_count": Param(200, "mixtures in the test split", int, at_least=0),
        "seconds": Param(4.0, "longest mixture; longer speech is cropped", above=0.0),
        "valid_fraction": Param(0.1, "share of speech and of noise files kept for valid"),
        "test_fraction": Param(0.2, "share of speech and of noise files kept for test"),
        "sample_rate": SAMPLE_RATE_PARAM,
        "on_error": ON_ERROR_PARAM,
    }

    def _snrs(self, values: list[Any]) -> list[float]:
        try:
            snrs = [float(value) for value in values]
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"dataset.{self.name}.snrs: expected numbers, got {values}") from exc
        if not snrs:
            raise ConfigError(f"dataset.{self.name}.snrs: give at least one SNR")
        return snrs

    def prepare(self, params: Mapping[str, Any], cache_dir: Path) -> PreparedDataset:
        owner = f"dataset.{self.name}"
        snrs = self._snrs(params["snrs"])
        check_fractions(owner, params["valid_fraction"], params["test_fraction"])
        speech_root = require_root(params["speech_dir"], f"{owner}.speech_dir", MIX_LAYOUT)
        noise_root = require_root(params["noise_dir"], f"{owner}.noise_dir", MIX_LAYOUT)
        speech_files, noise_files = list_audio(speech_root), list_audio(noise_root)
        for folder, files in ((speech_root, speech_files), (noise_root, noise_files)):
            if not files:
                raise ConfigError(f"{folder}: no audio files; expected layout: {MIX_LAYOUT}")
        identity = dataset_identity(
            self.recipe,
            _without(params, "speech_dir", "noise_dir"),
            [(f"speech/{name}", path) for name, path in speech_files.items()]
            + [(f"noise/{name}", path) for name, path in noise_files.items()],
            cache_dir,
        )
        fractions = {"valid": params["valid_fraction"], "test": params["test_fraction"]}
        speech_split = seeded_split(list(speech_files), fractions, params["seed"], str(speech_root))
        noise_split = seeded_split(list(noise_files), fractions, params["seed"] + 1, str(noise_root))
        splits = {}
        for index, split in enumerate(SPLITS):
            rng = np.random.default_rng([params["seed"], index])
            speech = load_files(
                [speech_files[n] for n in speech_split[split]], params["sample_rate"], params["on_error"]
            )
            noise = load_files(
                [noise_files[n] for n in noise_split[split]], params["sample_rate"], params["on_error"]
            )
            splits[split] = self._mixtures(split, params[f"{split}_count"], speech, noise, snrs, params, rng)
        return self._prepared(identity, params["sample_rate"], splits)

    def _mixtures(
        self,
        split: str,
        count: int,
        speech: Mapping[Path, np.ndarray],
        noise: Mapping[Path, np.ndarray],
        snrs: list[float],
        p: Mapping[str, Any],
        rng: np.random.Generator,
    ) -> list[Utterance]:
        """`count` mixtures drawn with `rng` from this split's own speech and noise files."""
        for path in sorted(path for path, audio in noise.items() if not np.any(audio)):
            logger.warning("%s: silent noise file cannot be scaled to an SNR; not used", path)
        noise = {path: audio for path, audio in noise.items() if np.any(audio)}
        if count > 0 and (not speech or not noise):
            raise AudioError(
                f"dataset.{self.name}: no usable {'speech' if not speech else 'noise'} files "
                f"left for the {split} split (noise files must not be silent)"
            )
        speech_paths, noise_paths = sorted(speech), sorted(noise)
        longest = int(round(p["seconds"] * p["sample_rate"]))
        utterances = []
        for number in range(count):
            speech_path = speech_paths[rng.integers(len(speech_paths))]
            noise_path = noise_paths[rng.integers(len(noise_paths))]
            snr_db = snrs[rng.integers(len(snrs))]
            source = speech[speech_path]
            clean, speech_offset = _fit_length(source, min(longest, len(source)), rng)
            noise_clip, noise_offset = _fit_length(noise[noise_path], len(clean), rng)
            warn_if_silent(clean, speech_path)
            noisy = (
                mix_at_snr(clean, noise_clip, snr_db).astype(np.float32)
                if np.any(clean)
                else clean + noise_clip
            )
            meta = {
                "speaker": speaker_of(speech_path.name),
                "snr_db": snr_db if np.any(clean) else float("nan"),
                "split": split,
                "clean_path": str(speech_path),
                "noisy_path": None,
                "noise_path": str(noise_path),
                "speech_offset": speech_offset,
                "noise_offset": noise_offset,
            }
            utterance_id = f"{split}/{number:05d}-{speech_path.stem}-{noise_path.stem}"
            utterances.append(Utterance(utterance_id, clean, noisy, meta))
        return utterances


@hookimpl
def kdbench_register_datasets(register: Any) -> None:
    register.add(FoldersDataset())
    register.add(VoiceBankDataset())
    register.add(MixDataset())
