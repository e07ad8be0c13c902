"""Procedural noises and mixing at a given SNR.

Each generator returns unit-RMS float64 audio so the mixer alone sets the level. The types
span what matters to a denoiser: stationary coloured noise (white, pink, brown), noise
sharing speech's spectrum (speech-shaped), noise that *is* speech (babble), tonal
(hum + fan), and non-stationary (modulated noise, clicks). The two made of speech take the
corpus's speech `Style`, so babble sounds like the talkers it surrounds.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
from kdbench_plugins.datasets.procedural.speech import (
    CLASSIC,
    SAMPLE_RATE,
    Style,
    draw_talker,
    synthesize,
)
from scipy import signal

NoiseGenerator = Callable[[np.random.Generator, int], np.ndarray]

LOWEST_SHAPED_HZ = 20.0
"""Below this, 1/f shapes are held flat so pink and brown noise have no DC drift."""


def _unit_rms(x: np.ndarray) -> np.ndarray:
    return x / max(float(np.sqrt(np.mean(x**2))), 1e-12)


def _shaped(rng: np.random.Generator, n: int, amplitude: Callable[[np.ndarray], np.ndarray]
            ) -> np.ndarray:
    """White noise coloured in the frequency domain: exact slopes, one FFT pair."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    spectrum *= amplitude(np.maximum(freqs, LOWEST_SHAPED_HZ))
    spectrum[0] = 0.0
    return _unit_rms(np.fft.irfft(spectrum, n))


def white(rng: np.random.Generator, n: int) -> np.ndarray:
    return _unit_rms(rng.standard_normal(n))


def pink(rng: np.random.Generator, n: int) -> np.ndarray:
    return _shaped(rng, n, lambda f: f**-0.5)


def brown(rng: np.random.Generator, n: int) -> np.ndarray:
    return _shaped(rng, n, lambda f: 1.0 / f)


@functools.lru_cache(maxsize=4)
def speech_spectrum(style: Style = CLASSIC) -> tuple[np.ndarray, np.ndarray]:
    """Long-term average spectrum of generated speech (frequencies, amplitude).

    Computed from a fixed set of talkers, not the corpus's, so it is the same in every
    split and worker; once per process and style, as it costs a dozen utterances.
    """
    rng = np.random.default_rng(20240601)
    utterances = [
        synthesize(draw_talker(rng, f"ltass-{k}"), rng, 2.0, style) for k in range(12)
    ]
    freqs, power = signal.welch(np.concatenate(utterances), SAMPLE_RATE, nperseg=512)
    return freqs, np.sqrt(power)


def speech_shaped(rng: np.random.Generator, n: int, style: Style = CLASSIC) -> np.ndarray:
    freqs, amplitude = speech_spectrum(style)
    return _shaped(rng, n, lambda f: np.interp(f, freqs, amplitude))


def babble(rng: np.random.Generator, n: int, style: Style = CLASSIC) -> np.ndarray:
    """Four to seven talkers of its own at random levels and offsets, so phrase onsets do
    not line up and the sum has few gaps."""
    seconds = n / SAMPLE_RATE
    total = np.zeros(n)
    for k in range(int(rng.integers(4, 8))):
        voice = synthesize(draw_talker(rng, f"babble-{k}"), rng, seconds, style)
        gain = 10.0 ** (rng.uniform(-4.0, 4.0) / 20.0)
        total += gain * np.roll(voice, int(rng.integers(n)))
    return _unit_rms(total)


def mains_hum(rng: np.random.Generator, n: int) -> np.ndarray:
    """Mains hum alone: 50 or 60 Hz and its harmonics up to the 12th, slowly drifting.

    Not one of `NOISE_TYPES` (adding it would change every procedural corpus's identity);
    `hum_fan` mixes it with a fan, and datasets that want pure hum call it directly.
    """
    t = np.arange(n) / SAMPLE_RATE
    mains = float(rng.choice([50.0, 60.0]))
    drift = 1.0 + 0.002 * np.sin(2 * np.pi * rng.uniform(0.05, 0.3) * t + rng.uniform(0, 6.3))
    phase = 2 * np.pi * mains * np.cumsum(drift) / SAMPLE_RATE
    hum = np.zeros(n)
    for harmonic in range(1, 13):
        level = rng.lognormal(0.0, 0.5) / harmonic ** (0.7 if harmonic % 2 == 0 else 1.2)
        hum += level * np.sin(harmonic * phase + rng.uniform(0, 2 * np.pi))
    return _unit_rms(hum)


def hum_fan(rng: np.random.Generator, n: int) -> np.ndarray:
    """Mains hum (see `mains_hum`) over a fan: low-passed broadband noise with a
    blade-pass tone and its harmonics."""
    hum = mains_hum(rng, n)
    t = np.arange(n) / SAMPLE_RATE
    cutoff = rng.uniform(600.0, 3000.0)
    lowpass = signal.butter(2, cutoff, fs=SAMPLE_RATE, output="sos")
    fan = _unit_rms(signal.sosfilt(lowpass, pink(rng, n)))
    blade = rng.uniform(80.0, 250.0)
    wobble = 1.0 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.5, 3.0) * t)
    for harmonic in (1, 2, 3):
        fan += 0.4 / harmonic * wobble * np.sin(2 * np.pi * blade * harmonic * t
                                                 + rng.uniform(0, 2 * np.pi))
    hum_share = rng.uniform(0.2, 0.8)
    return _unit_rms(hum_share * hum + (1.0 - hum_share) * _unit_rms(fan))


def nonstationary(rng: np.random.Generator, n: int) -> np.ndarray:
    """Noise whose level a denoiser cannot estimate once and keep: a sinusoidal and a
    random on/off modulation of white or pink noise, plus sparse clicks."""
    t = np.arange(n) / SAMPLE_RATE
    base = pink(rng, n) if rng.random() < 0.5 else white(rng, n)
    depth = rng.uniform(0.5, 0.95)
    sine = 1.0 - depth * 0.5 * (1.0 + np.sin(2 * np.pi * rng.uniform(0.5, 6.0) * t))
    gates = rng.random(int(n / SAMPLE_RATE * 8) + 2) < 0.6
    gate = np.repeat(gates, SAMPLE_RATE // 8)[:n].astype(float)
    gate = np.convolve(gate, np.hanning(801) / np.hanning(801).sum(), mode="same")
    noisy = base * sine * (0.15 + gate)
    n_clicks = rng.poisson(rng.uniform(2.0, 15.0) * n / SAMPLE_RATE)
    decay = np.exp(-np.arange(160) / rng.uniform(8.0, 80.0))
    rms = float(np.sqrt(np.mean(noisy**2)))
    for start in rng.integers(0, max(n - 160, 1), n_clicks):
        click = rng.standard_normal(160) * decay * rng.uniform(3.0, 10.0) * rms
        noisy[start:start + 160] += click[: n - start]
    return _unit_rms(noisy)


SPEECH_NOISES: dict[str, Callable[[np.random.Generator, int, Style], np.ndarray]] = {
    "speech_shaped": speech_shaped,
    "babble": babble,
}
"""The types made of generated speech, which follow the corpus's speech style."""
GENERATORS: dict[str, NoiseGenerator] = {
    "white": white,
    "pink": pink,
    "brown": brown,
    "speech_shaped": speech_shaped,
    "babble": babble,
    "hum_fan": hum_fan,
    "nonstationary": nonstationary,
}
NOISE_TYPES = tuple(GENERATORS)


def make_noise(
    kind: str, rng: np.random.Generator, n: int, style: Style = CLASSIC
) -> np.ndarray:
    """Unit-RMS noise of type `kind` and `n` samples; babble and speech-shaped noise are
    made of (or shaped like) speech of `style`."""
    if kind in SPEECH_NOISES:
        return SPEECH_NOISES[kind](rng, n, style)
    return GENERATORS[kind](rng, n)


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """`speech` plus `noise` scaled so the whole-clip power ratio is exactly `snr_db`.

    The one mixer of every kdbench corpus (procedural, espeak, realspeech, and `mix` for
    files), so an SNR means the same everywhere; here, in a torch-free module, because the
    corpus generators' pool workers import it and must start fast. Whole-clip rather than
    active-speech power keeps the definition simple and exact (on generated speech, about
    80 % active, the active-speech SNR is about 1 dB higher). Powers are summed in float64
    whatever the inputs; a silent noise adds nothing instead of dividing by zero.
    """
    speech_power = float(np.mean(np.asarray(speech, dtype=np.float64) ** 2))
    noise_power = max(float(np.mean(np.asarray(noise, dtype=np.float64) ** 2)), 1e-20)
    gain = np.sqrt(speech_power / (noise_power * 10.0 ** (snr_db / 10.0)))
    return speech + gain * noise
