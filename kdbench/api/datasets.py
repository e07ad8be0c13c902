"""The dataset contract: (clean, noisy) utterances per split, with an identity that
changes whenever their content does, so caches and results know what they were made on."""

from __future__ import annotations

import dataclasses
import importlib.metadata
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from kdbench.api.params import Param


@dataclasses.dataclass
class Utterance:
    """A clean reference and its noisy mixture, mono float32 at the dataset's rate."""

    id: str
    clean: np.ndarray
    noisy: np.ndarray
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class PreparedDataset:
    """A dataset ready to use: its splits and an identity that changes with its content."""

    name: str
    identity: str
    sample_rate: int
    splits: Mapping[str, Sequence[Utterance]]
    description: str = ""


class Dataset:
    """A source of (clean, noisy) pairs for the train, valid and test splits."""

    name: ClassVar[str]
    description: ClassVar[str]
    params: ClassVar[Mapping[str, Param]] = {}

    def prepare(self, params: Mapping[str, Any], cache_dir: Path) -> PreparedDataset:
        """Load or generate the splits (caching under `cache_dir`) for resolved `params`."""
        raise NotImplementedError


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """`speech` plus `noise` scaled so the whole-clip power ratio is exactly `snr_db`.

    Whole-clip rather than active-speech power keeps the definition simple and exact (on
    generated speech, about 80 % active, the active-speech SNR is about 1 dB higher).
    Powers are summed in float64 whatever the inputs, so a float32 file and its float64
    copy mix alike; a silent noise adds nothing instead of dividing by zero. Every dataset
    mixes through this one function, so an SNR means the same in every corpus.
    """
    speech_power = float(np.mean(np.asarray(speech, dtype=np.float64) ** 2))
    noise_power = max(float(np.mean(np.asarray(noise, dtype=np.float64) ** 2)), 1e-20)
    gain = np.sqrt(speech_power / (noise_power * 10.0 ** (snr_db / 10.0)))
    return speech + gain * noise


def version_of(distribution: str) -> str:
    """The installed version of a package, for provenance (`Metric.provenance`, pages)."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"
