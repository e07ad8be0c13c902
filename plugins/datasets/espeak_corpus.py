"""The eSpeak corpus generator: voices per split, utterance scripts, shards in fresh
processes, and the mixing with the procedural corpus's noises.

Every draw for utterance `u` of a split comes from a generator seeded with (seed, split,
purpose, u), as in the procedural corpus. Unlike there, an utterance's samples also depend
on the utterances synthesised before it in its shard (see `espeak_engine`), so the shard
plan is fixed by the settings alone (`SHARD_SIZE` is part of the identity) and never by the
number of workers.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchaudio.functional as AF
from kdbench_plugins.datasets import espeak_engine
from kdbench_plugins.datasets.espeak_engine import ShardAudio, UtteranceScript, Voice
from kdbench_plugins.datasets.espeak_sentences import sentence
from kdbench_plugins.datasets.procedural.generate import noise_rng, scaled_pair
from kdbench_plugins.datasets.procedural.noise import make_noise
from kdbench_plugins.datasets.procedural.speech import SAMPLE_RATE

GENERATOR_VERSION = 1
"""Part of the corpus identity: bump it whenever a change alters the generated audio."""

SPLITS = ("train", "valid", "test")
SHARD_SIZE = 24
EXTRA_SECONDS = 0.25
"""Synthesised beyond the utterance length, so resampling edges fall in the cropped part."""
FADE_SECONDS = 0.01
"""The crop usually cuts a word; a short fade-out keeps the clean reference free of a click."""
SENTENCES_PER_SCRIPT = 6
"""More than any utterance length needs at eSpeak's slowest rate here; they are cycled
if a very long utterance runs out of them."""
RATE_WPM, PITCH, RANGE = (140, 200), (25, 75), (20, 80)
"""Per-voice prosody, drawn uniformly (eSpeak's defaults are 175 wpm, 50 and 50)."""

_VOICE, _SPEECH, _CHOICE = 1, 2, 3
"""Purposes of the per-utterance seeds; the noise comes from the procedural corpus's
`noise_rng`, so a split's noise instances are the same in both corpora."""


@dataclasses.dataclass(frozen=True)
class EspeakSettings:
    """Everything the audio depends on besides the library; its JSON form is hashed."""

    counts: dict[str, int]
    voices: dict[str, int]
    seconds: float
    snrs: tuple[float, ...]
    noises: tuple[str, ...]
    accents: tuple[str, ...]
    variants: tuple[str, ...]
    seed: int

    def to_json(self) -> dict[str, Any]:
        return {
            "version": GENERATOR_VERSION,
            "shard_size": SHARD_SIZE,
            "sample_rate": SAMPLE_RATE,
            "counts": dict(self.counts),
            "voices": dict(self.voices),
            "seconds": self.seconds,
            "snrs": list(self.snrs),
            "noises": list(self.noises),
            "accents": list(self.accents),
            "variants": list(self.variants),
            "seed": self.seed,
        }


@dataclasses.dataclass
class GeneratedUtterance:
    clean: np.ndarray
    noisy: np.ndarray
    meta: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class _Shard:
    split: str
    start: int
    stop: int


def _rng(settings: EspeakSettings, split: str, purpose: int, index: int) -> np.random.Generator:
    return np.random.default_rng([settings.seed, SPLITS.index(split), purpose, index])


def split_voices(settings: EspeakSettings) -> dict[str, list[Voice]]:
    """Each split's voices. Variants are dealt out from one seeded shuffle, so no variant
    (and hence no voice) is shared between splits; accents and prosody are drawn per voice.
    """
    order = np.random.default_rng([settings.seed, _VOICE]).permutation(len(settings.variants))
    shuffled = [sorted(settings.variants)[i] for i in order]
    voices, start = {}, 0
    for split in SPLITS:
        voices[split] = []
        for k, variant in enumerate(shuffled[start:start + settings.voices[split]]):
            rng = _rng(settings, split, _VOICE, k)
            voices[split].append(Voice(
                id=f"{split}-{variant}",
                accent=settings.accents[int(rng.integers(len(settings.accents)))],
                variant=variant,
                rate=int(rng.integers(RATE_WPM[0], RATE_WPM[1] + 1)),
                pitch=int(rng.integers(PITCH[0], PITCH[1] + 1)),
                pitch_range=int(rng.integers(RANGE[0], RANGE[1] + 1)),
            ))
        start += settings.voices[split]
    return voices


def _script(settings: EspeakSettings, split: str, u: int, voice: Voice) -> UtteranceScript:
    rng = _rng(settings, split, _SPEECH, u)
    return UtteranceScript(
        voice=voice,
        sentences=tuple(sentence(rng) for _ in range(SENTENCES_PER_SCRIPT)),
        seconds=settings.seconds + EXTRA_SECONDS,
        rand_seed=int(rng.integers(2**31)),
    )


def _plan(settings: EspeakSettings) -> list[_Shard]:
    return [
        _Shard(split, start, min(start + SHARD_SIZE, settings.counts[split]))
        for split in SPLITS
        for start in range(0, settings.counts[split], SHARD_SIZE)
    ]


def _synthesize_in_process(scripts: list[UtteranceScript]) -> ShardAudio:
    """One shard in a new interpreter running only the engine module.

    A new interpreter rather than a multiprocessing spawn: spawn re-runs the caller's main
    module in every child, which breaks scripts without a ``__main__`` guard and imports
    torch (through the CLI) once per shard.
    """
    payload = json.dumps([dataclasses.asdict(script) for script in scripts])
    with tempfile.TemporaryDirectory(prefix="kdbench-espeak-") as folder:
        out = Path(folder) / "shard.npz"
        done = subprocess.run(
            [sys.executable, "-m", espeak_engine.__name__, str(out)],
            input=payload, capture_output=True, text=True, check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"eSpeak NG worker failed (exit {done.returncode}):\n{done.stderr[-2000:]}"
            )
        with np.load(out, allow_pickle=False) as data:
            spoken = [int(k) for k in data["spoken"]]
            return int(data["rate"]), [(data[f"u{k}"], n) for k, n in enumerate(spoken)]


def _synthesize(
    jobs: list[list[UtteranceScript]], workers: int
) -> Iterator[ShardAudio]:
    """Each shard in a fresh process of its own (never one that synthesised before),
    results in plan order; threads only wait on the processes."""
    with ThreadPoolExecutor(min(workers, len(jobs))) as pool:
        yield from pool.map(_synthesize_in_process, jobs)


def _fit(samples: np.ndarray, rate: int, n: int) -> np.ndarray:
    """int16 at the engine's rate to `n` float64 samples at the corpus rate."""
    wave = torch.from_numpy(samples.astype(np.float32) / 32768.0)
    speech = AF.resample(wave, rate, SAMPLE_RATE).numpy().astype(np.float64)[:n]
    speech = np.pad(speech, (0, n - len(speech)))
    fade = int(FADE_SECONDS * SAMPLE_RATE)
    speech[n - fade:] *= np.linspace(1.0, 0.0, fade)
    return speech


def _mixed(
    settings: EspeakSettings, shard: _Shard, u: int, script: UtteranceScript,
    speech: np.ndarray, spoken: int,
) -> GeneratedUtterance:
    n = len(speech)
    choice = _rng(settings, shard.split, _CHOICE, u)
    kind = settings.noises[int(choice.integers(len(settings.noises)))]
    snr = settings.snrs[int(choice.integers(len(settings.snrs)))]
    noise = make_noise(kind, noise_rng(settings.seed, shard.split, u), n)
    clean, noisy = scaled_pair(speech, noise, snr)
    voice = script.voice
    return GeneratedUtterance(
        clean=clean,
        noisy=noisy,
        meta={
            "voice": voice.id,
            "accent": voice.accent,
            "variant": voice.variant,
            "rate_wpm": voice.rate,
            "pitch": voice.pitch,
            "pitch_range": voice.pitch_range,
            "text": " ".join(script.sentences[k % len(script.sentences)] for k in range(spoken)),
            "noise": kind,
            "snr_db": float(snr),
            "split": shard.split,
        },
    )


def generate_corpus(
    settings: EspeakSettings,
    workers: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, list[GeneratedUtterance]]:
    """All splits, over `workers` processes (default: every core); `on_progress(done,
    total)` counts utterances. The text runs past the end: utterances are cropped."""
    voices = split_voices(settings)
    shards = _plan(settings)
    jobs = [
        [
            _script(settings, s.split, u, voices[s.split][u % len(voices[s.split])])
            for u in range(s.start, s.stop)
        ]
        for s in shards
    ]
    n = int(round(settings.seconds * SAMPLE_RATE))
    corpus: dict[str, list[GeneratedUtterance]] = {split: [] for split in SPLITS}
    total, done = sum(settings.counts.values()), 0
    if not jobs:
        return corpus
    for shard, scripts, (rate, results) in zip(
        shards, jobs, _synthesize(jobs, workers or os.cpu_count() or 1)
    ):
        for u, script, (samples, spoken) in zip(range(shard.start, shard.stop), scripts, results):
            speech = _fit(samples, rate, n)
            corpus[shard.split].append(_mixed(settings, shard, u, script, speech, spoken))
        done += shard.stop - shard.start
        if on_progress is not None:
            on_progress(done, total)
    return corpus

