"""The corpus generator: settings, per-utterance seeding, shards and the worker pool.

Kept free of torch and kdbench imports so pool workers start fast. Every random draw of
utterance `u` in a split comes from generators seeded with (seed, split, purpose, u), so
the corpus depends neither on how utterances are grouped into shards nor on how many
workers run them.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
from kdbench_plugins.datasets.procedural.noise import make_noise, mix_at_snr
from kdbench_plugins.datasets.procedural.room import draw_room, reverberate
from kdbench_plugins.datasets.procedural.speech import (
    ARTICULATED,
    CLASSIC,
    SAMPLE_RATE,
    Style,
    Talker,
    draw_talker,
    synthesize,
)

GENERATOR_STYLES: dict[int, Style] = {2: CLASSIC, 3: ARTICULATED}
"""The generator versions (part of the corpus identity) and their speech. Version 3 adds
articulated speech (`speech.ARTICULATED`) and rooms (`room`). A listed version's audio
never changes: a change that would alter it adds a new version instead, so a corpus
named by its settings is the same corpus for as long as its version is listed.

Version 3 is the default: models trained on it denoise real recordings better on every
metric than models trained on version 2 (BENCHMARKS.md, "Transfer to real speech")."""
DEFAULT_GENERATOR = 3

SPLITS = ("train", "valid", "test")
SHARD_SIZE = 24
PEAK = 0.9
"""Pairs are scaled so the louder of clean and noisy peaks here: no clipping when written
as PCM, and the same gain on both keeps the pair's SNR."""

_TALKER, _SPEECH, _CHOICE, _NOISE, _ROOM = 1, 2, 3, 4, 5


@dataclasses.dataclass(frozen=True)
class CorpusSettings:
    """Everything the audio depends on; its JSON form (plus the version) is the identity."""

    counts: dict[str, int]
    talkers: dict[str, int]
    seconds: float
    snrs: tuple[float, ...]
    noises: tuple[str, ...]
    seed: int
    generator: int = DEFAULT_GENERATOR
    rooms: float = 0.0
    """Share of utterances recorded in a reverberant room (generator 3 and later)."""

    def to_json(self) -> dict[str, Any]:
        """Generator 2's form is unchanged from before there were versions to choose, so
        its corpora keep their identity (and caches)."""
        data = {
            "version": self.generator,
            "sample_rate": SAMPLE_RATE,
            "counts": dict(self.counts),
            "talkers": dict(self.talkers),
            "seconds": self.seconds,
            "snrs": list(self.snrs),
            "noises": list(self.noises),
            "seed": self.seed,
        }
        if self.generator >= 3:
            data["rooms"] = self.rooms
        return data


@dataclasses.dataclass(frozen=True)
class Shard:
    split: str
    start: int
    stop: int
    settings: CorpusSettings


@dataclasses.dataclass
class SplitAudio:
    clean: np.ndarray
    noisy: np.ndarray
    meta: list[dict[str, Any]]


def _rng(settings: CorpusSettings, split: str, purpose: int, index: int) -> np.random.Generator:
    return np.random.default_rng([settings.seed, SPLITS.index(split), purpose, index])


def noise_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of the noise that utterance `index` of `split` is mixed with.

    Public so that a corpus that must never reuse training noise (a test-only set) can
    draw the test split's instances: the split is part of the seed, so no index of the
    test split ever yields a training instance.
    """
    return np.random.default_rng([seed, SPLITS.index(split), _NOISE, index])


def scaled_pair(speech: np.ndarray, noise: np.ndarray, snr_db: float,
                target: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(clean, noisy) float32: `speech` mixed with `noise` at `snr_db`, both scaled by one
    gain so the louder peaks at `PEAK`. The clean side is `target` when the pair's
    reference is not the mixture's speech itself (in a room: its early part)."""
    clean = speech if target is None else target
    mixture = mix_at_snr(speech, noise, snr_db)
    gain = PEAK / max(float(np.abs(mixture).max()), float(np.abs(clean).max()))
    return (clean * gain).astype(np.float32), (mixture * gain).astype(np.float32)


def split_talkers(settings: CorpusSettings, split: str) -> list[Talker]:
    """The split's voices; the split is part of every talker's seed, so splits never share
    one."""
    return [
        draw_talker(_rng(settings, split, _TALKER, k), f"{split}-t{k:03d}")
        for k in range(settings.talkers[split])
    ]


def generate_shard(shard: Shard) -> tuple[Shard, SplitAudio]:
    """Utterances `start..stop` of one split: speech, a noise type and SNR, maybe a room,
    the mixture. The SNR is that of the speech the microphone hears (reverberant in a
    room) to the noise."""
    settings = shard.settings
    style = GENERATOR_STYLES[settings.generator]
    n = int(round(settings.seconds * SAMPLE_RATE))
    talkers = split_talkers(settings, shard.split)
    clean = np.empty((shard.stop - shard.start, n), np.float32)
    noisy = np.empty_like(clean)
    meta = []
    for row, u in enumerate(range(shard.start, shard.stop)):
        talker = talkers[u % len(talkers)]
        speech = synthesize(talker, _rng(settings, shard.split, _SPEECH, u), settings.seconds,
                            style)
        choice = _rng(settings, shard.split, _CHOICE, u)
        kind = settings.noises[int(choice.integers(len(settings.noises)))]
        snr = settings.snrs[int(choice.integers(len(settings.snrs)))]
        noise = make_noise(kind, noise_rng(settings.seed, shard.split, u), n, style)
        info: dict[str, Any] = {
            "talker": talker.id,
            "talker_kind": talker.kind,
            "noise": kind,
            "snr_db": float(snr),
            "split": shard.split,
        }
        target = None
        if settings.generator >= 3:
            room_rng = _rng(settings, shard.split, _ROOM, u)
            room = draw_room(room_rng, settings.rooms)
            if room is not None:
                speech, target = reverberate(speech, room, room_rng)
            info["rt60_s"] = None if room is None else room.rt60
            info["drr_db"] = None if room is None else room.drr_db
        clean[row], noisy[row] = scaled_pair(speech, noise, snr, target)
        meta.append(info)
    return shard, SplitAudio(clean, noisy, meta)


def plan_shards(settings: CorpusSettings) -> list[Shard]:
    return [
        Shard(split, start, min(start + SHARD_SIZE, settings.counts[split]), settings)
        for split in SPLITS
        for start in range(0, settings.counts[split], SHARD_SIZE)
    ]


def _run(shards: list[Shard], workers: int) -> Iterator[tuple[Shard, SplitAudio]]:
    """Shards in plan order; in-process when one worker suffices, which spares small
    corpora (tests) the pool's start-up. Fork where available: a spawned worker would
    re-import the caller's modules (torch included) for seconds of start-up each."""
    if workers <= 1 or len(shards) <= 1:
        yield from map(generate_shard, shards)
        return
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    with ProcessPoolExecutor(min(workers, len(shards)), mp_context=context) as pool:
        yield from pool.map(generate_shard, shards)


def generate_corpus(
    settings: CorpusSettings,
    workers: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, SplitAudio]:
    """All splits, generated over `workers` processes (default: every core).

    `on_progress(done, total)` counts utterances, for a progress bar.
    """
    shards = plan_shards(settings)
    total = sum(settings.counts.values())
    n = int(round(settings.seconds * SAMPLE_RATE))
    parts: dict[str, list[SplitAudio]] = {split: [] for split in SPLITS}
    done = 0
    for shard, audio in _run(shards, workers or os.cpu_count() or 1):
        parts[shard.split].append(audio)
        done += shard.stop - shard.start
        if on_progress is not None:
            on_progress(done, total)
    empty = np.empty((0, n), np.float32)
    return {
        split: SplitAudio(
            clean=np.concatenate([empty] + [p.clean for p in pieces]),
            noisy=np.concatenate([empty] + [p.noisy for p in pieces]),
            meta=[m for p in pieces for m in p.meta],
        )
        for split, pieces in parts.items()
    }
