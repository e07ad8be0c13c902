"""The `procedural` dataset: generated once per settings into the cache, then loaded.

The cache directory is named by the identity (a hash of the settings and the generator
version), written under a temporary name and renamed into place, so a reader never sees a
half-written corpus and an interrupted run leaves nothing that looks complete. A cached
corpus that fails its check when loaded (a split that does not load or whose CRC-32s,
stored by the npz format, do not match; settings other than its name says) is set aside
and generated again: the generator is deterministic in its settings.
"""

from __future__ import annotations

import hashlib
import json
import math
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from kdbench_plugins.datasets.procedural import generate
from kdbench_plugins.datasets.procedural.generate import (
    DEFAULT_GENERATOR,
    GENERATOR_STYLES,
    SPLITS,
    CorpusSettings,
    SplitAudio,
)
from kdbench_plugins.datasets.procedural.noise import NOISE_TYPES
from kdbench_plugins.datasets.procedural.speech import SAMPLE_RATE
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from kdbench.api import (
    ConfigError,
    CorruptFile,
    Dataset,
    Param,
    PreparedDataset,
    Utterance,
    hookimpl,
    load_or_build,
    staged_directory,
)

MIN_SECONDS = 1.0
"""PESQ and STOI need about a second of speech to give stable scores."""


def checked_snrs(owner: str, value: Any) -> tuple[float, ...]:
    """`value` as a non-empty tuple of finite SNRs in dB, or an error naming `owner`.snrs;
    shared by the datasets that mix at a list of SNRs."""
    try:
        snrs = tuple(float(s) for s in value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{owner}.snrs: not a list of numbers: {value!r}") from exc
    if not snrs or not all(math.isfinite(s) for s in snrs):
        raise ConfigError(f"{owner}.snrs: need finite values, got {value!r}")
    return snrs


def corpus_settings(params: Mapping[str, Any]) -> CorpusSettings:
    """Turn resolved parameters into the generator's settings; their ranges were checked
    where they are declared (`ProceduralDataset.params`), what a range cannot say here."""
    snrs = checked_snrs("dataset.procedural", params["snrs"])
    noises = tuple(params["noises"])
    if not noises:
        raise ConfigError("dataset.procedural.noises: at least one noise type is needed")
    seconds, rooms = float(params["seconds"]), float(params["rooms"])
    generator = int(params["generator"])
    return CorpusSettings(
        counts={split: int(params[f"n_{split}"]) for split in SPLITS},
        talkers={split: int(params[f"talkers_{split}"]) for split in SPLITS},
        seconds=seconds,
        snrs=snrs,
        noises=noises,
        seed=int(params["seed"]),
        generator=generator,
        rooms=rooms if generator >= 3 else 0.0,
    )


def identity(settings: CorpusSettings) -> str:
    text = json.dumps(settings.to_json(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class ProceduralDataset(Dataset):
    name: ClassVar[str] = "procedural"
    description: ClassVar[str] = (
        "Embedded source-filter speech (many generated talkers) mixed with procedural "
        "noises (white, pink, brown, speech-shaped, babble, hum+fan, non-stationary)"
    )
    params: ClassVar[Mapping[str, Param]] = {
        "n_train": Param(600, "training utterances", int, at_least=0),
        "n_valid": Param(60, "validation utterances", int, at_least=0),
        "n_test": Param(60, "test utterances", int, at_least=0),
        "seconds": Param(2.0, "utterance length in seconds", float, at_least=MIN_SECONDS),
        "talkers_train": Param(40, "distinct talkers in the training split", int, at_least=1),
        "talkers_valid": Param(6, "distinct talkers in the validation split", int, at_least=1),
        "talkers_test": Param(8, "distinct talkers in the test split", int, at_least=1),
        "snrs": Param([-5.0, 0.0, 5.0, 10.0, 15.0, 20.0], "SNRs (dB) drawn uniformly", list,
                      item_type=float),
        "seed": Param(0, "corpus seed: talkers, sentences and noise instances", int, at_least=0),
        "noises": Param(list(NOISE_TYPES), "noise types drawn uniformly", list, NOISE_TYPES),
        "generator": Param(DEFAULT_GENERATOR, "generator version: 2 = classic source-filter "
                           "speech, dry; 3 (default) = articulated speech (consonant spectra, syllable "
                           "levels, tempo, vowel reduction, creak) and rooms", int,
                           tuple(GENERATOR_STYLES)),
        "rooms": Param(0.5, "generator 3: share of utterances recorded in a reverberant room "
                       "(target: the direct path and first 50 ms); generator 2 has none", float,
                       at_least=0.0, at_most=1.0),
    }

    def identify(self, params: Mapping[str, Any], cache_dir: Path) -> str:
        """A hash of the generator's settings: known before any audio exists."""
        return identity(corpus_settings(params))

    def prepare(self, params: Mapping[str, Any], cache_dir: Path) -> PreparedDataset:
        """Load the cached corpus for these settings, generating it first if absent."""
        settings = corpus_settings(params)
        ident = self.identify(params, cache_dir)
        folder = Path(cache_dir) / f"procedural-{ident}"
        splits = load_or_build(
            folder,
            lambda corpus: _load_corpus(corpus, settings),
            lambda: _generate_into(settings, folder),
            folder.with_name(folder.name + ".lock"),
        )
        return PreparedDataset(
            name=self.name,
            identity=ident,
            sample_rate=SAMPLE_RATE,
            splits=splits,
            description=self.description,
        )


def _generate_into(settings: CorpusSettings, folder: Path) -> None:
    with staged_directory(folder) as staging:
        corpus = _generate_with_progress(settings)
        for split, audio in corpus.items():
            _save_split(staging / f"{split}.npz", audio)
        (staging / "settings.json").write_text(json.dumps(settings.to_json(), indent=2))


def _generate_with_progress(settings: CorpusSettings) -> dict[str, SplitAudio]:
    console = Console(stderr=True)
    columns = (TextColumn("procedural corpus"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console, disable=not console.is_terminal) as progress:
        task = progress.add_task("generate", total=sum(settings.counts.values()))
        return generate.generate_corpus(
            settings, on_progress=lambda done, total: progress.update(task, completed=done)
        )


def _save_split(path: Path, audio: SplitAudio) -> None:
    """Uncompressed so loading is a plain read; metadata as one JSON string, no pickles."""
    np.savez(path, clean=audio.clean, noisy=audio.noisy, meta=np.array(json.dumps(audio.meta)))


def _load_corpus(folder: Path, settings: CorpusSettings) -> dict[str, list[Utterance]]:
    """Every split, or `CorruptFile` naming what fails its check."""
    path = folder / "settings.json"
    try:
        written_for = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CorruptFile(f"{path}: unreadable corpus settings: {exc}") from exc
    if written_for != settings.to_json():
        raise CorruptFile(f"{path}: the corpus was written for other settings")
    return {
        split: _load_split(folder / f"{split}.npz", settings.counts[split]) for split in SPLITS
    }


def _load_split(path: Path, count: int) -> list[Utterance]:
    try:
        with np.load(path, allow_pickle=False) as data:
            clean, noisy = data["clean"], data["noisy"]
            meta = json.loads(str(data["meta"]))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise CorruptFile(f"{path}: unreadable corpus split: {exc}") from exc
    if not len(clean) == len(noisy) == len(meta) == count:
        raise CorruptFile(
            f"{path}: holds {len(clean)} clean, {len(noisy)} noisy and {len(meta)} "
            f"described utterances, expected {count}"
        )
    split = path.stem
    return [
        Utterance(id=f"{split}-{index:05d}", clean=clean[index], noisy=noisy[index], meta=info)
        for index, info in enumerate(meta)
    ]


@hookimpl
def kdbench_register_datasets(register: Any) -> None:
    register.add(ProceduralDataset())
