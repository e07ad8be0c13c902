"""The optional `espeak` dataset: sentences synthesised by eSpeak NG in many voices, mixed
with the procedural corpus's noises at its SNRs, split by voice.

A formant synthesiser is no substitute for recorded speech, but it gives a corpus with
real phonetics, prosody and dozens of distinct voices without any download, and a test set
whose voices were never heard in training. It needs the extra ``kdbench[espeak]``; without
it the dataset still registers (so `kdbench list datasets` shows it) and `prepare` says
how to install it.

Reproducibility: each shard is synthesised in a fresh interpreter process with a fixed call
sequence and eSpeak's noise generator seeded per utterance; two generations with the same
eSpeak NG build are then sample-identical (checked by the tests). Other builds or
platforms may speak differently, so the identity covers the library version and the
content hash recorded in the manifest, which every load verifies; a cached corpus that
fails the check is set aside and synthesised again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from kdbench_plugins.datasets import espeak_cache, espeak_corpus, espeak_engine
from kdbench_plugins.datasets.espeak_corpus import SPLITS, EspeakSettings, GeneratedUtterance
from kdbench_plugins.datasets.procedural.plugin import (
    MIN_SECONDS,
    ProceduralDataset,
    checked_snrs,
)
from kdbench_plugins.datasets.procedural.speech import SAMPLE_RATE
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from kdbench.api import (
    ConfigError,
    Dataset,
    Param,
    PreparedDataset,
    Utterance,
    hookimpl,
    load_or_build,
)

ACCENTS = ("en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
           "en-029", "en-us-nyc")
"""English voices of eSpeak NG: the sentences are English, and the accents add variety."""

EXCLUDED_VARIANTS = frozenset({
    "Demonic", "UniRobot", "anikaRobot", "croak", "fast", "whisper", "whisperf", "Mr serious",
    *(f"robosoft{suffix}" for suffix in ("", "2", "3", "4", "5", "6", "7", "8")),
})
"""Variants named as robotic, whispered, distorted or sped up (judged by name, not by
ear): a denoiser should learn to keep voiced speech, not these effects."""

REPRODUCIBILITY = (
    "each shard synthesised in a fresh interpreter process, fixed call order, "
    "espeak_ng_SetRandSeed per utterance: sample-identical across runs of the same "
    "eSpeak NG build; other builds or platforms may differ (compare content_sha256)"
)
"""Recorded in the manifest, so a copied cache says what its hashes promise."""


def espeak_settings(params: Mapping[str, Any], installed: frozenset[str]) -> EspeakSettings:
    """Check resolved parameters against the installed voices and build the settings."""
    owner = "dataset.espeak"
    seconds = float(params["seconds"])
    snrs = checked_snrs(owner, params["snrs"])
    if not params["noises"]:
        raise ConfigError(f"{owner}.noises: at least one noise type is needed")
    if not params["accents"]:
        raise ConfigError(f"{owner}.accents: at least one accent is needed")
    variants = tuple(dict.fromkeys(params["variants"])) or tuple(
        sorted(installed - EXCLUDED_VARIANTS)
    )
    unknown = sorted(set(variants) - installed)
    if unknown:
        raise ConfigError(
            f"{owner}.variants: not installed: {', '.join(unknown)}; installed: "
            f"{', '.join(sorted(installed))}"
        )
    needed = sum(int(params[f"voices_{split}"]) for split in SPLITS)
    if needed > len(variants):
        raise ConfigError(
            f"{owner}: voices_train + voices_valid + voices_test = {needed}, but only "
            f"{len(variants)} variants are available and splits never share one"
        )
    return EspeakSettings(
        counts={split: int(params[f"n_{split}"]) for split in SPLITS},
        voices={split: int(params[f"voices_{split}"]) for split in SPLITS},
        seconds=seconds,
        snrs=snrs,
        noises=tuple(params["noises"]),
        accents=tuple(params["accents"]),
        variants=variants,
        seed=int(params["seed"]),
    )


def settings_key(settings: EspeakSettings, versions: Mapping[str, str]) -> str:
    """Names the cache folder: what generation is asked for, before any audio exists."""
    text = json.dumps({"settings": settings.to_json(), "versions": dict(versions)},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def identity(key: str, manifest: Mapping[str, Any]) -> str:
    """The settings key and the content hash together: should another eSpeak NG build
    speak differently, its corpus gets another identity rather than borrowing this one."""
    text = f"{key}:{manifest['content_sha256']}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class EspeakDataset(Dataset):
    name: ClassVar[str] = "espeak"
    description: ClassVar[str] = (
        "eSpeak NG sentences in many voices/variants (disjoint per split) mixed with the "
        "procedural noises; needs the espeakng-loader package"
    )
    params: ClassVar[Mapping[str, Param]] = {
        **{name: ProceduralDataset.params[name] for name in ("n_train", "n_valid", "n_test")},
        "seconds": Param(3.0, "utterance length in seconds; sentences are cropped", float,
                         at_least=MIN_SECONDS),
        "voices_train": Param(60, "voices (each its own variant) in the training split", int,
                              at_least=1),
        "voices_valid": Param(12, "voices in the validation split", int, at_least=1),
        "voices_test": Param(16, "voices in the test split", int, at_least=1),
        "snrs": ProceduralDataset.params["snrs"],
        "noises": ProceduralDataset.params["noises"],
        "accents": Param(list(ACCENTS), "English accents drawn per voice", list, ACCENTS),
        "variants": Param(
            [], "eSpeak voice variants dealt to the splits (empty: all but robotic, "
            "whispered and effect variants)", list,
        ),
        "seed": Param(0, "corpus seed: voices, sentences, noises and eSpeak's own noise", int,
                      at_least=0),
    }

    def prepare(self, params: Mapping[str, Any], cache_dir: Path) -> PreparedDataset:
        """Load and verify the cached corpus for these settings, generating it if absent."""
        resolved = params
        try:
            installed = espeak_engine.available_variants()
            versions = espeak_engine.versions()
        except espeak_engine.EspeakUnavailable as exc:
            raise ConfigError(f"dataset.{self.name}: {exc}") from exc
        settings = espeak_settings(resolved, installed)
        key = settings_key(settings, versions)
        folder = Path(cache_dir) / f"espeak-{key}"

        def generate() -> None:
            corpus = _generate_with_progress(settings)
            header = {"settings": settings.to_json(), "versions": versions,
                      "reproducibility": REPRODUCIBILITY}
            espeak_cache.write_corpus(folder, corpus, header)

        def load(corpus: Path) -> tuple[dict[str, Any], dict[str, list[Utterance]]]:
            manifest = espeak_cache.read_manifest(corpus, settings.to_json())
            return manifest, espeak_cache.load_corpus(corpus, manifest)

        manifest, splits = load_or_build(
            folder, load, generate, folder.with_name(folder.name + ".lock")
        )
        return PreparedDataset(
            name=self.name,
            identity=identity(key, manifest),
            sample_rate=SAMPLE_RATE,
            splits=splits,
            description=self.description,
        )


def _generate_with_progress(settings: EspeakSettings) -> dict[str, list[GeneratedUtterance]]:
    console = Console(stderr=True)
    columns = (TextColumn("espeak corpus"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console, disable=not console.is_terminal) as progress:
        task = progress.add_task("generate", total=sum(settings.counts.values()))
        return espeak_corpus.generate_corpus(
            settings, on_progress=lambda done, total: progress.update(task, completed=done)
        )


@hookimpl
def kdbench_register_datasets(register: Any) -> None:
    register.add(EspeakDataset())
