"""Which clean utterance meets which noise at which SNR, and the noises made for this set.

The design is a full grid of (noise type, SNR) cells with `per_cell` mixtures each, so
every cell of a per-noise or per-SNR breakdown has data. Clean utterances are dealt to
the cells in a fixed rotation that spreads each talker evenly (`talker_rotation`), so a
cell's mixtures come from different talkers and every utterance is used about equally.

Noise instances, for the test set (split `test`) and the dev set (split `valid`) alike:
- the procedural corpus's types are drawn exactly as its split of the same name draws them
  (`noise_rng(seed, split, j)` for mixture j), so no training instance of the procedural
  or eSpeak corpora is ever reused here, and the dev set never meets a test instance;
- `real_babble` sums three to five utterances of the same set by talkers other than the
  target's; `mains_hum` is the procedural hum without its fan. Both draw from generators
  seeded with (seed, OWN_STREAMS[split], purpose, j): no stream is a split index, so these
  seeds never coincide with the procedural corpus's (seed, split, purpose, u) nor with each
  other's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
from kdbench_plugins.datasets.procedural.generate import (
    GENERATOR_STYLES,
    noise_rng,
    scaled_pair,
)
from kdbench_plugins.datasets.procedural.noise import NOISE_TYPES, mains_hum, make_noise
from kdbench_plugins.datasets.realspeech.shipped import CleanRecording

from kdbench.api import Utterance

MIXING_VERSION = 1
"""Part of the identity: bump it whenever a change alters the mixtures."""
NOISE_GENERATOR = 2
"""The procedural generator version whose noises (babble and speech-shaped noise of its
speech style) this set draws: pinned, so a new procedural default leaves the set as is."""

OWN_NOISES = ("real_babble", "mains_hum")
NOISE_CHOICES = (*NOISE_TYPES, *OWN_NOISES)
OWN_STREAMS = {"test": 100, "valid": 101}
_BABBLE, _HUM = 1, 2
BABBLE_UTTERANCES = (3, 5)
"""Fewest and most utterances summed into one real babble."""
BABBLE_LEVEL_DB = 4.0
"""Each babble utterance's level is drawn within ± this, so one voice can stand out."""


@dataclasses.dataclass(frozen=True)
class MixSettings:
    """Everything the mixtures depend on besides the shipped recordings."""

    noises: tuple[str, ...]
    snrs: tuple[float, ...]
    per_cell: int
    seed: int

    def to_json(self) -> dict[str, Any]:
        return {
            "mixing_version": MIXING_VERSION,
            "procedural_generator_version": NOISE_GENERATOR,
            "noises": list(self.noises),
            "snrs": list(self.snrs),
            "per_cell": self.per_cell,
            "seed": self.seed,
        }


def talker_rotation(recordings: Sequence[CleanRecording]) -> list[CleanRecording]:
    """The clean utterances in the order they are dealt to the cells: each talker's
    utterances (in manifest order) at evenly spaced places, so that neighbours, and so
    the mixtures of one cell, come from different talkers while no talker has half of
    all utterances. Ties go by talker name, so the order is fixed by the manifest."""
    by_talker: dict[str, list[CleanRecording]] = {}
    for recording in recordings:
        by_talker.setdefault(recording.speaker, []).append(recording)
    placed = [
        ((k + 0.5) / len(queue), name, recording)
        for name, queue in by_talker.items()
        for k, recording in enumerate(queue)
    ]
    return [recording for _, _, recording in sorted(placed, key=lambda item: item[:2])]


def _own_rng(seed: int, split: str, purpose: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, OWN_STREAMS[split], purpose, index])


def _unit_rms(x: np.ndarray) -> np.ndarray:
    return x / max(float(np.sqrt(np.mean(x**2))), 1e-12)


def real_babble(
    target: CleanRecording, pool: Sequence[CleanRecording], rng: np.random.Generator, n: int
) -> tuple[np.ndarray, list[CleanRecording]]:
    """Unit-RMS babble of `n` samples from utterances in `pool` by talkers other than the
    target's, each looped to length, at its own level and circular offset; and which
    utterances it used."""
    others = [r for r in pool if r.speaker != target.speaker]
    low, high = BABBLE_UTTERANCES
    count = min(len(others), int(rng.integers(low, high + 1)))
    chosen = [others[i] for i in sorted(rng.choice(len(others), size=count, replace=False))]
    total = np.zeros(n)
    for voice in chosen:
        looped = _unit_rms(np.resize(voice.audio.astype(np.float64), n))
        gain = 10.0 ** (rng.uniform(-BABBLE_LEVEL_DB, BABBLE_LEVEL_DB) / 20.0)
        total += gain * np.roll(looped, int(rng.integers(n)))
    return _unit_rms(total), chosen


def noise_for(
    kind: str, index: int, target: CleanRecording, pool: Sequence[CleanRecording],
    seed: int, n: int, split: str,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Mixture `index`'s noise of type `kind`, and the metadata that says where it came from."""
    if kind == "real_babble":
        noise, used = real_babble(target, pool, _own_rng(seed, split, _BABBLE, index), n)
        return noise, {
            "noise_source": "realspeech",
            "babble_utterances": [r.id for r in used],
            "babble_speakers": sorted({r.speaker for r in used}),
        }
    if kind == "mains_hum":
        return mains_hum(_own_rng(seed, split, _HUM, index), n), {"noise_source": "realspeech"}
    noise = make_noise(kind, noise_rng(seed, split, index), n, GENERATOR_STYLES[NOISE_GENERATOR])
    return noise, {"noise_source": "procedural", "noise_split": split, "noise_index": index}


def mix_all(
    recordings: Sequence[CleanRecording], settings: MixSettings, split: str
) -> list[Utterance]:
    """The whole split (`test` or `valid`): for each noise, each SNR, `per_cell` mixtures."""
    rotation = talker_rotation(recordings)
    mixtures = []
    for kind in settings.noises:
        for snr in settings.snrs:
            for _ in range(settings.per_cell):
                index = len(mixtures)
                target = rotation[index % len(rotation)]
                speech = target.audio.astype(np.float64)
                noise, origin = noise_for(kind, index, target, recordings, settings.seed,
                                          len(speech), split)
                clean, noisy = scaled_pair(speech, noise, snr)
                mixtures.append(Utterance(
                    id=f"{split}-{index:04d}-{target.id}-{kind}{snr:+g}dB",
                    clean=clean,
                    noisy=noisy,
                    meta={
                        "split": split,
                        "speaker": target.speaker,
                        "sex": target.speaker_info["sex"],
                        "language": target.speaker_info["language"],
                        "channel": target.speaker_info["channel"],
                        "clean_id": target.id,
                        "source_package": target.entry["source"]["package"],
                        "noise": kind,
                        "snr_db": float(snr),
                        **origin,
                    },
                ))
    return mixtures
