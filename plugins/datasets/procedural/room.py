"""Rooms: synthetic room impulse responses, and which part of the reverberant speech a
denoiser is asked to give back.

Real recordings are made in rooms; speech that was always dry in training teaches a
denoiser that the decaying energy after every syllable is noise. A room here is the
classic statistical model of a late reverberant tail: Gaussian noise under an
exponential envelope that falls 60 dB in RT60 (Schroeder; Polack 1988), with high
frequencies decaying faster (walls and air absorb them more), after a direct path.

The target is the EARLY speech: the direct path plus the first 50 ms of reflections.
Those reflections fuse with the direct sound and help intelligibility (the C50 clarity
boundary), every real recording contains them, and a denoiser cannot be asked to remove
what a clean reference recorded in a room also holds; the late tail, which smears
syllables into each other, is what the mixture has and the target has not. This is the
convention of recent enhancement corpora (e.g. the DNS challenges' early-reverberation
targets) and lies between the dry target, which asks for full dereverberation, and the
reverberant one, which asks for none.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
from kdbench_plugins.datasets.procedural.speech import SAMPLE_RATE
from scipy import signal

RT60_SECONDS = (0.2, 0.8)
"""Living rooms, offices and classrooms; studios and booths are the dry utterances."""
DRR_DB = (0.0, 12.0)
"""Direct-to-reverberant ratio: from a talker an arm's length away to a close microphone."""
HIGH_DECAY = (0.5, 0.8)
"""RT60 above CROSSOVER_HZ as a fraction of the RT60 below it."""
CROSSOVER_HZ = 2000.0
FIRST_REFLECTION_SECONDS = (0.001, 0.005)
EARLY_SECONDS = 0.05
EARLY_TAPER_SECONDS = 0.005
"""The early part ends with a half-cosine this long, so its spectrum has no sinc ripple."""


@dataclasses.dataclass(frozen=True)
class Room:
    rt60: float
    drr_db: float


def draw_room(rng: np.random.Generator, share: float) -> Room | None:
    """A room for one utterance with probability `share`, else None (dry speech)."""
    if rng.random() >= share:
        return None
    return Room(rt60=float(rng.uniform(*RT60_SECONDS)), drr_db=float(rng.uniform(*DRR_DB)))


@functools.lru_cache(maxsize=1)
def _crossover() -> tuple[np.ndarray, np.ndarray]:
    low = signal.butter(4, CROSSOVER_HZ, "lowpass", fs=SAMPLE_RATE, output="sos")
    high = signal.butter(4, CROSSOVER_HZ, "highpass", fs=SAMPLE_RATE, output="sos")
    return low, high


def impulse_response(room: Room, rng: np.random.Generator) -> np.ndarray:
    """The room's impulse response: a unit direct path at sample 0, then the tail scaled
    so its energy is `drr_db` below the direct path's."""
    n = int(room.rt60 * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    start = rng.uniform(*FIRST_REFLECTION_SECONDS)
    low_sos, high_sos = _crossover()
    high_rt60 = room.rt60 * rng.uniform(*HIGH_DECAY)
    decay = 3.0 * np.log(10.0)  # 60 dB of amplitude in one RT60
    tail = (signal.sosfilt(low_sos, rng.standard_normal(n)) * np.exp(-decay * t / room.rt60)
            + signal.sosfilt(high_sos, rng.standard_normal(n)) * np.exp(-decay * t / high_rt60))
    tail[t < start] = 0.0
    tail *= 10.0 ** (-room.drr_db / 20.0) / max(float(np.sqrt(np.sum(tail**2))), 1e-12)
    tail[0] = 1.0
    return tail


def early_part(response: np.ndarray) -> np.ndarray:
    """The direct path and reflections of the first `EARLY_SECONDS`, tapered at the end."""
    n = int(EARLY_SECONDS * SAMPLE_RATE)
    taper = int(EARLY_TAPER_SECONDS * SAMPLE_RATE)
    early = response[:n].copy()
    early[n - taper:] *= 0.5 * (1.0 + np.cos(np.pi * np.arange(taper) / taper))
    return early


def reverberate(speech: np.ndarray, room: Room, rng: np.random.Generator
                ) -> tuple[np.ndarray, np.ndarray]:
    """(reverberant speech, its early part), both as long as `speech`: what the
    microphone hears, and the target."""
    response = impulse_response(room, rng)
    n = len(speech)
    wet = signal.fftconvolve(speech, response)[:n]
    early = signal.fftconvolve(speech, early_part(response))[:n]
    return wet, early
