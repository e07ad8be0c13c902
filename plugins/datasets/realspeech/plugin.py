"""The `realspeech` dataset: real recordings shipped with kdbench, as a test split only.

About twenty utterances of six talkers (three female, three male; an audiobook, studio
recordings, a microphone and a telephone call) are far too few to train on, so the set
has no train or valid split: it is for asking whether what a model learnt on generated speech holds on real
speech. `test_only` makes a grid refuse it in `run.datasets`, and the splits mapping
refuses `train`/`valid` to anyone else who asks, with the same advice.

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
    ConfigError,
    Dataset,
    Param,
    PreparedDataset,
    Utterance,
    hookimpl,
)

NAME = "realspeech"
NOT_FOR_TRAINING = (
    f"dataset {NAME} is a test-only set (real recordings, too few to train on): it has no "
    f"train or valid split; train on another dataset (run.datasets) and evaluate on {NAME} "
    "with run.test_datasets"
)


class TestOnlySplits(Mapping[str, Sequence[Utterance]]):
    """`test` alone; asking for `train` or `valid` is a ConfigError saying what to do
    instead, where a plain dict would give a bare KeyError deep in training code."""

    def __init__(self, test: Sequence[Utterance]) -> None:
        self._test = test

    def __getitem__(self, split: str) -> Sequence[Utterance]:
        if split == "test":
            return self._test
        if split in ("train", "valid"):
            raise ConfigError(NOT_FOR_TRAINING)
        raise KeyError(split)

    def __iter__(self) -> Iterator[str]:
        return iter(("test",))

    def __len__(self) -> int:
        return 1


def mix_settings(params: Mapping[str, Any]) -> MixSettings:
    """Check resolved parameters and turn them into the mixer's settings."""
    owner = f"dataset.{NAME}"
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
    test_only: ClassVar[bool] = True
    params: ClassVar[Mapping[str, Param]] = {
        "snrs": Param([-5.0, 0.0, 5.0, 10.0], "SNRs (dB); every noise type at each", list),
        "noises": Param(list(NOISE_CHOICES), "noise types (procedural ones plus real_babble "
                        "and mains_hum)", list, NOISE_CHOICES),
        "per_cell": Param(2, "mixtures per (noise, SNR) cell; the number of clean "
                          "utterances puts every utterance in every cell", int),
        "seed": Param(0, "seed of the noise instances and babble draws", int),
    }

    def prepare(self, params: Mapping[str, Any], cache_dir: Path) -> PreparedDataset:
        """Mix the shipped recordings; `cache_dir` is unused (see the module docstring)."""
        settings = mix_settings(params)
        manifest = shipped.manifest_bytes()
        test = mix_all(shipped.load_recordings(), settings)
        return PreparedDataset(
            name=self.name,
            identity=identity(settings, manifest),
            sample_rate=shipped.SAMPLE_RATE,
            splits=TestOnlySplits(test),
            description=self.description,
        )


@hookimpl
def kdbench_register_datasets(register: Any) -> None:
    register.add(RealSpeechDataset())
