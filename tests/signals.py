"""Deterministic speech-like test signals.

PESQ and STOI discard frames without speech-like activity (PESQ raises
`NoUtterancesError` on a tone or stationary noise), so metric tests need a signal with
voiced syllables, pauses and moving formants rather than a sine.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

# (F1, F2, F3) in Hz of a few vowels; each syllable takes one, so the spectrum moves.
_VOWELS = ((730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480))
_BANDWIDTHS = (90.0, 110.0, 170.0)


def _resonate(signal: np.ndarray, freq: float, bandwidth: float, sample_rate: int) -> np.ndarray:
    """A two-pole resonator with unit gain at DC, the usual model of one formant."""
    radius = np.exp(-np.pi * bandwidth / sample_rate)
    theta = 2 * np.pi * freq / sample_rate
    a = [1.0, -2 * radius * np.cos(theta), radius**2]
    return lfilter([sum(a)], a, signal)


def speech_like(seconds: float = 2.0, sample_rate: int = 16000, seed: int = 0) -> np.ndarray:
    """A float64 waveform at about -26 dBFS RMS: glottal pulses with a gliding pitch, shaped by
    formants per syllable, with a syllabic (about 4 Hz) envelope and short pauses.

    A faint noise floor keeps every frame non-zero, so frame-wise LPC stays defined.
    """
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sample_rate))
    t = np.arange(n) / sample_rate
    f0 = 120 + 25 * np.sin(2 * np.pi * 0.7 * t) + 10 * np.sin(2 * np.pi * 2.3 * t)
    phase = np.cumsum(f0) / sample_rate
    pulses = np.diff(np.floor(phase), prepend=0.0)
    source = lfilter([1.0], [1.0, -0.95], pulses) + 0.02 * rng.standard_normal(n)

    syllable = int(0.25 * sample_rate)
    out = np.zeros(n)
    for start in range(0, n, syllable):
        stop = min(start + syllable, n)
        segment = source[start:stop]
        for freq, bandwidth in zip(_VOWELS[rng.integers(len(_VOWELS))], _BANDWIDTHS):
            segment = _resonate(segment, freq * rng.uniform(0.9, 1.1), bandwidth, sample_rate)
        length = stop - start
        voiced = int(length * rng.uniform(0.6, 0.85))
        envelope = np.zeros(length)
        envelope[:voiced] = np.sin(np.pi * np.arange(voiced) / voiced) ** 2
        out[start:stop] = segment * envelope
    out = np.diff(out, prepend=0.0)  # lip radiation: a +6 dB/octave tilt
    out *= 0.05 / np.sqrt(np.mean(out**2))
    return out + 1e-4 * rng.standard_normal(n)


def white_noise_at_snr(
    clean: np.ndarray, snr_db: float, seed: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """(noisy, noise) with white noise scaled to exactly `snr_db` against `clean`."""
    noise = np.random.default_rng(seed).standard_normal(clean.shape)
    noise *= np.sqrt(np.sum(clean**2) / np.sum(noise**2) / 10 ** (snr_db / 10))
    return clean + noise, noise
