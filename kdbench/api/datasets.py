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


SPLITS = ("train", "valid", "test")


class Dataset:
    """A source of (clean, noisy) pairs for the train, valid and test splits.

    `splits` names the splits `prepare` returns. Real recordings too few to train on come
    as a test set (`("test",)`: it reports, in `run.test_datasets`) or as a dev set
    (`("valid",)`: it chooses settings, and must then never report). A grid refuses a
    dataset without `train` and `valid` in `run.datasets` and one without `test` in
    `run.test_datasets`, before anything is prepared, saying which use the dataset is for.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    params: ClassVar[Mapping[str, Param]] = {}
    splits: ClassVar[tuple[str, ...]] = SPLITS

    def prepare(self, params: Mapping[str, Any], cache_dir: Path) -> PreparedDataset:
        """Load or generate the splits (caching under `cache_dir`) for resolved `params`."""
        raise NotImplementedError

    def identify(self, params: Mapping[str, Any], cache_dir: Path) -> str | None:
        """The identity `prepare` would give resolved `params`, found without generating,
        loading or caching audio; None (the default) where only preparing can tell.

        Commands that only read results (`kdbench leaderboard`, `status`) need a dataset's
        identity to find its trials, not its audio: a dataset that can say it here is not
        generated into a fresh cache just to show a table, and needs no cache its user may
        write. It must equal `prepare(...).identity` (calling it from `prepare` ensures so).
        """
        return None


def version_of(distribution: str) -> str:
    """The installed version of a package, for provenance (`Metric.provenance`, pages)."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"
