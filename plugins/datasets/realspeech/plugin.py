"""The `realspeech` and `realspeech_dev` datasets: real recordings shipped with kdbench.

About twenty utterances of six talkers (three female, three male; an audiobook, studio
recordings, a microphone and a telephone call) are far too few to train on, so `realspeech`
has a test split alone: it asks whether what a model learnt on generated speech holds on
real speech. That makes it unfit to choose anything, so `realspeech_dev` (about thirty
utterances of four other talkers: an audiobook, LibriSpeech, Spanish MLS, spontaneous
speech in two rooms) has a valid split alone, mixed the same way with other noise
instances: real speech that may choose a recipe, which the test set then measures once.
`splits` makes a grid refuse either where it does not belong, and the splits mapping refuses
the other splits to anyone else who asks, with the same advice.

Mixing takes a fraction of a second, so nothing is cached: `prepare` never writes, and
two preparations are sample-identical because every draw is seeded (see `mixtures`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from kdbench_plugins.datasets.procedural.plugin import checked_snrs
from kdbench_plugins.datasets.realspeech import shipped
from kdbench_plugins.datasets.realspeech.mixtures import NOISE_CHOICES, MixSettings, mix_all

from kdbench.api import (
    SPLITS,
    ConfigError,
    Dataset,
    Param,
    PreparedDataset,
    Utterance,
    hookimpl,
)

NAME = "realspeech"
DEV_NAME = "realspeech_dev"
NOT_FOR_TRAINING = (
    f"dataset {NAME} is a test-only set (real recordings, too few to train on): it has no "
    f"train or valid split; train on another dataset (run.datasets) and evaluate on {NAME} "
    "with run.test_datasets"
)
DEV_ONLY = (
    f"dataset {DEV_NAME} is a dev set (real recordings to choose settings on): it has a "
    f"valid split alone; train on another dataset, choose on {DEV_NAME}'s valid split and "
    f"report on {NAME} (run.test_datasets)"
)


class OneSplit(Mapping[str, Sequence[Utterance]]):
    """`split` alone; asking for another of the usual splits is a ConfigError saying what
    to do instead, where a plain dict would give a bare KeyError deep in training code."""

    def __init__(self, split: str, utterances: Sequence[Utterance], refusal: str) -> None:
        self._split, self._utterances, self._refusal = split, utterances, refusal

    def __getitem__(self, split: str) -> Sequence[Utterance]:
        if split == self._split:
            return self._utterances
        if split in SPLITS:
            raise ConfigError(self._refusal)
        raise KeyError(split)

    def __iter__(self) -> Iterator[str]:
        return iter((self._split,))

    def __len__(self) -> int:
        return 1


def mix_settings(params: Mapping[str, Any], owner: str) -> MixSettings:
    """Check resolved parameters and turn them into the mixer's settings."""
    snrs = checked_snrs(owner, params["snrs"])
    if not params["noises"]:
        raise ConfigError(f"{owner}.noises: at least one noise type is needed")
    if int(params["per_cell"]) < 1:
        raise ConfigError(f"{owner}.per_cell: must be >= 1, got {params['per_cell']}")
    if int(params["seed"]) < 0:
        raise ConfigError(f"{owner}.seed: must be >= 0, got {params['seed']}")
    return MixSettings(
        noises=tuple(dict.fromkeys(params["noises"])),
        snrs=tuple(dict.fromkeys(snrs)),
        per_cell=int(params["per_cell"]),
        seed=int(params["seed"]),
    )


def identity(settings: MixSettings, manifest: bytes) -> str:
    """The manifest (which holds every file's sha256, checked on load) and the settings."""
    text = json.dumps(
        {"manifest_sha256": hashlib.sha256(manifest).hexdigest(), "mixing": settings.to_json()},
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class RealSpeechDataset(Dataset):
    name: ClassVar[str] = NAME
    description: ClassVar[str] = (
        "TEST ONLY: real recordings of six talkers (LibriVox, CMU, CMU ARCTIC, telephone) "
        "shipped with kdbench, mixed with the procedural test noises, real babble and "
        "mains hum"
    )
    splits: ClassVar[tuple[str, ...]] = ("test",)
    folder: ClassVar[Path] = shipped.DATA_DIR
    refusal: ClassVar[str] = NOT_FOR_TRAINING
    params: ClassVar[Mapping[str, Param]] = {
        "snrs": Param([-5.0, 0.0, 5.0, 10.0], "SNRs (dB); every noise type at each", list),
        "noises": Param(list(NOISE_CHOICES), "noise types (procedural ones plus real_babble "
                        "and mains_hum)", list, NOISE_CHOICES),
        "per_cell": Param(2, "mixtures per (noise, SNR) cell; the number of clean "
                          "utterances puts every utterance in every cell", int),
        "seed": Param(0, "seed of the noise instances and babble draws", int),
    }

    def identify(self, params: Mapping[str, Any], cache_dir: Path) -> str:
        """The shipped manifest and the mixing settings: no recording need be read."""
        settings = mix_settings(params, f"dataset.{self.name}")
        return identity(settings, shipped.manifest_bytes(self.folder))

    def prepare(self, params: Mapping[str, Any], cache_dir: Path) -> PreparedDataset:
        """Mix the shipped recordings; `cache_dir` is unused (see the module docstring)."""
        settings = mix_settings(params, f"dataset.{self.name}")
        (split,) = self.splits
        utterances = mix_all(shipped.load_recordings(self.folder), settings, split)
        return PreparedDataset(
            name=self.name,
            identity=self.identify(params, cache_dir),
            sample_rate=shipped.SAMPLE_RATE,
            splits=OneSplit(split, utterances, self.refusal),
            description=self.description,
        )


class RealSpeechDevDataset(RealSpeechDataset):
    name: ClassVar[str] = DEV_NAME
    description: ClassVar[str] = (
        "DEV ONLY (valid split): real recordings of four talkers none of realspeech's "
        "(LibriVox, LibriSpeech, Spanish MLS, spontaneous speech), mixed like realspeech "
        "with other noise instances; for choosing settings, never for reporting"
    )
    splits: ClassVar[tuple[str, ...]] = ("valid",)
    folder: ClassVar[Path] = shipped.DEV_DIR
    refusal: ClassVar[str] = DEV_ONLY


@hookimpl
def kdbench_register_datasets(register: Any) -> None:
    register.add(RealSpeechDataset())
    register.add(RealSpeechDevDataset())
