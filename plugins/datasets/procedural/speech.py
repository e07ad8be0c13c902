"""Source-filter speech: talkers drawn from a seed, and utterances of random syllables.

The aim is not intelligibility but the statistics a denoiser and the metrics react to:
harmonic voicing with moving formants, noisy fricatives and bursts, syllabic and phrasal
energy modulation, pauses, and talker variety. Everything is vectorised over samples or
blocks, so an utterance costs milliseconds and a whole corpus seconds.

A `Style` says how a talker delivers an utterance. `CLASSIC` is generator 2's speech,
kept sample for sample: every syllable at one level, the talker's one rate, full vowels.
`ARTICULATED` (generator 3) adds what real speech has and a denoiser trained on CLASSIC
learnt to remove as noise (see its docstring).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy import signal

SAMPLE_RATE = 16000
FRAME = 80
"""Control-rate hop (5 ms): formants, amplitudes and pitch are specified per frame."""
TRACT_BLOCK = 2 * FRAME
TRACT_FFT = 1024
"""FFT length of the block-wise vocal tract: a block plus over 800 samples of ring-out, by
which the narrowest formant has decayed far below the noise floor."""

SPEECH_RMS = 0.05
NOISE_FLOOR_DB = -70.0
"""Level of the floor below the speech RMS: metrics and log spectra never see exact zeros."""

BANDWIDTHS = np.array([80.0, 100.0, 140.0, 200.0, 280.0])
FIXED_HIGH_FORMANTS = (3500.0, 4500.0)
"""F4 and F5 of the adult-male reference; they shape the spectral tilt, not phone identity."""


Formants = tuple[float, float, float]


@dataclasses.dataclass(frozen=True)
class Phone:
    """One phone's targets. `formants` holds (onset, offset) F1-F3 so diphthongs can glide;
    None means the phone borrows its neighbours' formants (h, aspiration)."""

    name: str
    voicing: float
    formants: tuple[Formants, Formants] | None
    frication: float = 0.0
    band: tuple[float, float] = (0.0, 0.0)
    aspiration: float = 0.0
    plosive: bool = False
    duration: tuple[float, float] = (0.06, 0.09)
    order: int = 2
    """Butterworth order of the frication band: higher gives the sharper spectral peak of
    a sibilant, 1 the flat spectrum of a labiodental or dental fricative."""


def _vowel(
    name: str, start: Formants, end: Formants | None = None,
    duration: tuple[float, float] = (0.08, 0.15),
) -> Phone:
    return Phone(name, 1.0, (start, end or start), duration=duration)


def _steady(name: str, formants: Formants, **kw: Any) -> Phone:
    return Phone(name, formants=(formants, formants), **kw)


VOWELS = [
    _vowel("i", (270, 2290, 3010)),
    _vowel("I", (390, 1990, 2550)),
    _vowel("E", (530, 1840, 2480)),
    _vowel("ae", (660, 1720, 2410)),
    _vowel("A", (730, 1090, 2440)),
    _vowel("O", (570, 840, 2410)),
    _vowel("U", (440, 1020, 2240)),
    _vowel("u", (300, 870, 2240)),
    _vowel("V", (640, 1190, 2390)),
    _vowel("R", (490, 1350, 1690)),
    _vowel("ai", (730, 1090, 2440), (400, 2000, 2600), (0.14, 0.22)),
    _vowel("au", (730, 1090, 2440), (450, 900, 2300), (0.14, 0.22)),
    _vowel("ei", (530, 1840, 2480), (350, 2200, 2900), (0.12, 0.2)),
    _vowel("oi", (570, 840, 2410), (400, 1900, 2600), (0.14, 0.22)),
]

CONSONANTS = {
    "m": _steady("m", (280, 1000, 2300), voicing=0.35),
    "n": _steady("n", (280, 1700, 2500), voicing=0.35),
    "l": _steady("l", (360, 1000, 2700), voicing=0.5),
    "r": _steady("r", (420, 1250, 1600), voicing=0.5),
    "w": _steady("w", (300, 650, 2200), voicing=0.45, duration=(0.04, 0.07)),
    "j": _steady("j", (280, 2200, 3000), voicing=0.45, duration=(0.04, 0.07)),
    "s": _steady("s", (400, 1700, 2600), voicing=0.0, frication=0.5, band=(4000, 7500),
                 duration=(0.08, 0.13)),
    "S": _steady("S", (400, 1900, 2400), voicing=0.0, frication=0.5, band=(2000, 5000),
                 duration=(0.08, 0.13)),
    "f": _steady("f", (400, 1100, 2300), voicing=0.0, frication=0.15, band=(1500, 7500),
                 duration=(0.07, 0.11)),
    "T": _steady("T", (400, 1400, 2600), voicing=0.0, frication=0.1, band=(2500, 7500),
                 duration=(0.07, 0.11)),
    "z": _steady("z", (400, 1700, 2600), voicing=0.25, frication=0.3, band=(4000, 7500)),
    "v": _steady("v", (400, 1100, 2300), voicing=0.3, frication=0.1, band=(1500, 7000)),
    "h": Phone("h", 0.0, None, aspiration=0.35, duration=(0.05, 0.08)),
    "p": _steady("p", (400, 900, 2200), voicing=0.0, frication=0.3, band=(500, 2000),
                 aspiration=0.3, plosive=True),
    "t": _steady("t", (400, 1800, 2700), voicing=0.0, frication=0.5, band=(3000, 6500),
                 aspiration=0.3, plosive=True),
    "k": _steady("k", (400, 2000, 2500), voicing=0.0, frication=0.45, band=(1500, 3500),
                 aspiration=0.3, plosive=True),
    "b": _steady("b", (400, 900, 2200), voicing=0.12, frication=0.2, band=(500, 2000),
                 plosive=True),
    "d": _steady("d", (400, 1800, 2700), voicing=0.12, frication=0.3, band=(3000, 6500),
                 plosive=True),
    "g": _steady("g", (400, 2000, 2500), voicing=0.12, frication=0.3, band=(1500, 3500),
                 plosive=True),
}
ONSETS = list(CONSONANTS)
CODAS = [name for name in CONSONANTS if name not in ("h", "w", "j")]

ARTICULATED_CONSONANTS = {
    **CONSONANTS,
    "s": _steady("s", (400, 1700, 2600), voicing=0.0, frication=0.63, band=(3800, 7600),
                 order=3, duration=(0.08, 0.13)),
    "S": _steady("S", (400, 1900, 2400), voicing=0.0, frication=0.76, band=(2200, 6000),
                 order=3, duration=(0.08, 0.13)),
    "f": _steady("f", (400, 1100, 2300), voicing=0.0, frication=0.15, band=(1000, 7600),
                 order=1, duration=(0.07, 0.11)),
    "T": _steady("T", (400, 1400, 2600), voicing=0.0, frication=0.1, band=(1500, 7600),
                 order=1, duration=(0.07, 0.11)),
    "z": _steady("z", (400, 1700, 2600), voicing=0.25, frication=0.3, band=(3800, 7600),
                 order=3),
    "v": _steady("v", (400, 1100, 2300), voicing=0.3, frication=0.1, band=(1000, 7600),
                 order=1),
    "h": Phone("h", 0.0, None, aspiration=0.11, duration=(0.05, 0.08)),
    "p": _steady("p", (400, 900, 2200), voicing=0.0, frication=0.3, band=(400, 2000),
                 aspiration=0.17, plosive=True),
    "t": _steady("t", (400, 1800, 2700), voicing=0.0, frication=0.5, band=(3000, 7000),
                 order=3, aspiration=0.17, plosive=True),
    "k": _steady("k", (400, 2000, 2500), voicing=0.0, frication=0.45, band=(1500, 3200),
                 order=3, aspiration=0.17, plosive=True),
    "b": _steady("b", (400, 900, 2200), voicing=0.12, frication=0.2, band=(400, 2000),
                 plosive=True),
    "d": _steady("d", (400, 1800, 2700), voicing=0.12, frication=0.3, band=(3000, 7000),
                 order=3, plosive=True),
    "g": _steady("g", (400, 2000, 2500), voicing=0.12, frication=0.3, band=(1500, 3200),
                 order=3, plosive=True),
}
"""CONSONANTS with the spectra and levels of English obstruents (Jongman, Wayland & Wong
2000; Behrens & Blumstein 1988; Stevens 1998): sibilants with a sharp high-frequency peak
5-10 dB below the vowels, /f v T/ flat and about 20 dB below, /h/ and aspiration about
15 dB below, alveolar bursts strongest and rising, velar bursts a compact mid-frequency
peak, labial bursts diffuse and low. Amplitudes are set so the synthesised levels match
those figures (measured on generated training speech, see BENCHMARKS.md section 8)."""

SCHWA: Formants = (500.0, 1500.0, 2500.0)
"""The neutral vowel that unstressed vowels are reduced towards."""


@dataclasses.dataclass(frozen=True)
class Style:
    """How utterances are delivered, beyond the talker's fixed voice.

    Real speech varies in level from syllable to syllable (stressed ones louder, phrase
    ends softer: a few dB each, Lehiste 1970), in tempo from utterance to utterance and
    phrase to phrase, reduces its unstressed vowels towards schwa, varies the span of its
    pitch, and often ends phrases in creaky voice: irregular, low glottal pulses (Redi &
    Shattuck-Hufnagel 2001). A corpus without these teaches a denoiser that soft
    syllables, weak consonants and irregular pulses are noise. The consonant table (a
    dict) is left out of equality and hashing, so a style can key a cache.
    """

    name: str
    consonants: Mapping[str, Phone] = dataclasses.field(compare=False)
    stress_db: float = 0.0
    """Stressed syllables this much above the phrase's level, unstressed ones below."""
    syllable_sd_db: float = 0.0
    phrase_sd_db: float = 0.0
    final_drop_db: float = 0.0
    """How much softer a phrase's last syllable is."""
    tempo_sd: float = 0.0
    """Standard deviation of the log tempo, per utterance and again per phrase."""
    pause: tuple[float, float] = (0.12, 0.45)
    reduction: tuple[float, float] = (0.0, 0.0)
    """Range of an unstressed vowel's move from its targets towards SCHWA (0: none)."""
    pitch_span: tuple[float, float] = (1.0, 1.0)
    """Range of the per-utterance factor on the talker's pitch range."""
    creak: float = 0.0
    """Largest per-utterance probability that a phrase ends in creak."""


CLASSIC = Style("classic", CONSONANTS)
ARTICULATED = Style(
    "articulated",
    ARTICULATED_CONSONANTS,
    stress_db=3.0,
    syllable_sd_db=2.0,
    phrase_sd_db=2.5,
    final_drop_db=4.0,
    tempo_sd=0.1,
    pause=(0.1, 0.6),
    reduction=(0.2, 0.5),
    pitch_span=(0.8, 1.6),
    creak=0.5,
)
CREAK_F0_DROP = 0.4
"""Creak lowers F0 by up to this fraction, and adds this much jitter and shimmer:"""
CREAK_JITTER = 0.12
CREAK_SHIMMER = 0.3
CREAK_SECONDS = (0.08, 0.2)


@dataclasses.dataclass(frozen=True)
class Talker:
    """A voice: everything that stays fixed across one talker's utterances."""

    id: str
    kind: str
    f0: float
    pitch_range: float
    vtl: float
    formant_bias: tuple[float, float, float]
    rate: float
    jitter: float
    shimmer: float
    breath: float
    open_phase: float
    close_phase: float


_KINDS = {
    # kind: (probability, f0 range Hz, formant scale range)
    "male": (0.45, (85.0, 150.0), (0.92, 1.05)),
    "female": (0.43, (165.0, 250.0), (1.10, 1.22)),
    "child": (0.12, (240.0, 330.0), (1.25, 1.38)),
}


def draw_talker(rng: np.random.Generator, talker_id: str) -> Talker:
    """A talker whose every trait comes from `rng`, so a seed names a voice."""
    kinds = list(_KINDS)
    kind = kinds[rng.choice(len(kinds), p=[_KINDS[k][0] for k in kinds])]
    _, f0_range, vtl_range = _KINDS[kind]
    bias = rng.uniform(0.95, 1.05, 3)
    return Talker(
        id=talker_id,
        kind=kind,
        f0=float(rng.uniform(*f0_range)),
        pitch_range=float(rng.uniform(2.0, 6.0)),
        vtl=float(rng.uniform(*vtl_range)),
        formant_bias=(float(bias[0]), float(bias[1]), float(bias[2])),
        rate=float(rng.uniform(0.8, 1.25)),
        jitter=float(rng.uniform(0.003, 0.015)),
        shimmer=float(rng.uniform(0.02, 0.08)),
        breath=float(rng.uniform(0.02, 0.12) * (1.0 if kind == "male" else 1.6)),
        open_phase=float(rng.uniform(0.33, 0.45)),
        close_phase=float(rng.uniform(0.10, 0.20)),
    )


@dataclasses.dataclass
class _Segment:
    phone: Phone
    start: float
    duration: float
    formants: tuple[Formants, Formants] | None = None
    """The phone's formants as spoken (a reduced vowel's); None: the phone's own."""
    level_db: float = 0.0


@dataclasses.dataclass
class _Plan:
    segments: list[_Segment]
    phrases: list[tuple[float, float]]
    accents: list[tuple[float, float]]


def _syllable(rng: np.random.Generator, consonants: Mapping[str, Phone]) -> list[Phone]:
    shape = rng.choice(["CV", "CVC", "V", "CCV"], p=[0.45, 0.35, 0.1, 0.1])
    vowel = VOWELS[rng.integers(len(VOWELS))]
    phones = []
    if shape == "CCV":
        phones.append(consonants[rng.choice(["s", "p", "t", "k", "b", "f"])])
        phones.append(consonants[rng.choice(["l", "r", "w"])])
    elif shape in ("CV", "CVC"):
        phones.append(consonants[ONSETS[rng.integers(len(ONSETS))]])
    phones.append(vowel)
    if shape == "CVC":
        phones.append(consonants[CODAS[rng.integers(len(CODAS))]])
    return phones


def _reduced(formants: tuple[Formants, Formants], amount: float) -> tuple[Formants, Formants]:
    def towards_schwa(target: Formants) -> Formants:
        f1, f2, f3 = ((1.0 - amount) * f + amount * s for f, s in zip(target, SCHWA))
        return (f1, f2, f3)

    return towards_schwa(formants[0]), towards_schwa(formants[1])


def _plan(talker: Talker, rng: np.random.Generator, seconds: float, style: Style) -> _Plan:
    """Phrases of 3-8 syllables separated by pauses, until the clip is full.

    Stressed syllables are longer and carry a pitch accent; phrase-final syllables are
    lengthened, as in natural speech. The style's variations draw from `rng` only where
    it has them, so CLASSIC makes generator 2's draws, in its order.
    """
    segments: list[_Segment] = []
    phrases: list[tuple[float, float]] = []
    accents: list[tuple[float, float]] = []
    utterance_tempo = float(np.exp(rng.normal(0.0, style.tempo_sd))) if style.tempo_sd else 1.0
    t = float(rng.uniform(0.05, 0.25))
    while t < seconds - 0.3:
        phrase_start = t
        n_syllables = int(rng.integers(3, 9))
        tempo = utterance_tempo
        phrase_db = 0.0
        if style.tempo_sd:
            tempo *= float(np.exp(rng.normal(0.0, style.tempo_sd)))
            phrase_db = float(rng.normal(0.0, style.phrase_sd_db))
        for index in range(n_syllables):
            stressed = rng.random() < 0.35
            final = index == n_syllables - 1
            stretch = (1.3 if stressed else 1.0) * (1.4 if final else 1.0)
            level_db, reduction = 0.0, 0.0
            if style.stress_db:
                level_db = (phrase_db + (style.stress_db if stressed else -style.stress_db)
                            + float(rng.normal(0.0, style.syllable_sd_db))
                            - (style.final_drop_db if final else 0.0))
                if not stressed:
                    reduction = float(rng.uniform(*style.reduction))
            for phone in _syllable(rng, style.consonants):
                duration = rng.uniform(*phone.duration) * stretch / (talker.rate * tempo)
                if phone.plosive:
                    duration += 0.03
                if phone.voicing == 1.0 and stressed:
                    accents.append((t + duration / 2, float(rng.uniform(0.4, 1.0))))
                formants = None
                if reduction and phone.voicing == 1.0 and phone.formants is not None:
                    formants = _reduced(phone.formants, reduction)
                segments.append(_Segment(phone, t, duration, formants, level_db))
                t += duration
        phrases.append((phrase_start, t))
        t += float(rng.uniform(*style.pause))
    return _Plan(segments, phrases, accents)


def _smooth(track: np.ndarray, frames: int) -> np.ndarray:
    kernel = np.hanning(frames + 2)[1:-1]
    return np.convolve(track, kernel / kernel.sum(), mode="same")


def _control_tracks(talker: Talker, plan: _Plan, n_frames: int) -> dict[str, np.ndarray]:
    """Per-frame formants, voicing and aspiration: formants interpolate between phone
    targets (coarticulation for free), amplitudes are smoothed steps."""
    times = (np.arange(n_frames) + 0.5) * FRAME / SAMPLE_RATE
    voicing = np.zeros(n_frames)
    aspiration = np.zeros(n_frames)
    points: list[float] = []
    targets: list[tuple[float, float, float]] = []
    for seg in plan.segments:
        phone = seg.phone
        first = int(seg.start * SAMPLE_RATE / FRAME)
        last = int((seg.start + seg.duration) * SAMPLE_RATE / FRAME)
        if phone.plosive:
            closure = first + int(0.6 * (last - first))
            voicing[first:closure] = phone.voicing
            aspiration[closure:last] = phone.aspiration
        else:
            voicing[first:last] = phone.voicing
            aspiration[first:last] = phone.aspiration
        spoken = seg.formants if seg.formants is not None else phone.formants
        if spoken is not None:
            points += [seg.start + 0.3 * seg.duration, seg.start + 0.7 * seg.duration]
            targets += list(spoken)
    formant_targets = np.array(targets) * np.array(talker.formant_bias) * talker.vtl
    formants = np.stack([np.interp(times, points, formant_targets[:, k]) for k in range(3)], 1)
    high = np.broadcast_to(np.array(FIXED_HIGH_FORMANTS) * talker.vtl, (n_frames, 2))
    return {
        "formants": np.concatenate([formants, high], axis=1),
        "voicing": _smooth(voicing, 4),
        "aspiration": _smooth(aspiration, 3),
    }


def _pitch(
    talker: Talker, plan: _Plan, rng: np.random.Generator, n_frames: int, span: float = 1.0
) -> np.ndarray:
    """F0 in Hz per frame: declination over each phrase, accents as bumps, a final fall or
    rise, and a slow random drift, all in semitones around the talker's median; `span`
    scales the talker's pitch range for this utterance."""
    times = (np.arange(n_frames) + 0.5) * FRAME / SAMPLE_RATE
    semitones = np.zeros(n_frames)
    pitch_range = talker.pitch_range * span
    for start, end in plan.phrases:
        inside = (times >= start) & (times < end + 0.2)
        progress = np.clip((times - start) / max(end - start, 1e-3), 0.0, 1.0)
        contour = pitch_range * (0.4 - 0.6 * progress)
        final = -2.0 if rng.random() < 0.8 else 3.0
        contour += final * np.clip((times - end + 0.25) / 0.25, 0.0, 1.0)
        semitones[inside] = contour[inside]
    for centre, height in plan.accents:
        semitones += height * pitch_range * np.exp(-0.5 * ((times - centre) / 0.06) ** 2)
    drift = _smooth(rng.standard_normal(n_frames), 40) * 3.0
    return talker.f0 * 2.0 ** ((_smooth(semitones, 8) + drift) / 12.0)


def _per_cycle(track: np.ndarray | None, phase: np.ndarray, n_cycles: int) -> np.ndarray | float:
    """A per-sample track's value at the start of each glottal cycle (0 without a track)."""
    if track is None:
        return 0.0
    starts = np.searchsorted(phase, np.arange(n_cycles))
    return track[np.minimum(starts, len(track) - 1)]


def _glottal_source(
    talker: Talker, f0_frames: np.ndarray, rng: np.random.Generator, n: int,
    creak: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Rosenberg-pulse derivative (glottal flow plus lip radiation) with per-cycle jitter
    and shimmer, and the flow itself to modulate breath noise. `creak` (per sample, 0-1)
    raises both, for the irregular pulses of creaky voice."""
    frame_times = (np.arange(len(f0_frames)) + 0.5) * FRAME
    f0 = np.interp(np.arange(n), frame_times, f0_frames)
    nominal = np.cumsum(f0) / SAMPLE_RATE
    n_cycles = int(nominal[-1]) + 2
    jitter = talker.jitter + CREAK_JITTER * _per_cycle(creak, nominal, n_cycles)
    period_scale = 1.0 + jitter * rng.standard_normal(n_cycles)
    f0 = f0 / period_scale[nominal.astype(int)]
    phase = np.cumsum(f0) / SAMPLE_RATE
    cycle = phase.astype(int)
    p = phase - cycle
    tp, tn = talker.open_phase, talker.close_phase
    flow = np.where(
        p < tp,
        0.5 * (1.0 - np.cos(np.pi * p / tp)),
        np.where(p < tp + tn, np.cos(0.5 * np.pi * np.minimum(p - tp, tn) / tn), 0.0),
    )
    shimmer = talker.shimmer + CREAK_SHIMMER * _per_cycle(creak, phase, cycle[-1] + 1)
    amplitude = 1.0 + shimmer * rng.standard_normal(cycle[-1] + 1)
    flow = flow * amplitude[cycle]
    derivative = np.diff(flow, prepend=0.0) * (SAMPLE_RATE / f0) * (2.0 * tn / np.pi)
    return derivative, flow


def _cascade_response(formants: np.ndarray, bandwidths: np.ndarray) -> np.ndarray:
    """Frequency response, per block, of a cascade of Klatt's unity-DC-gain resonators
    (one per formant column), on the `TRACT_FFT` grid.

    Single precision: several times faster here, and its error sits far below the floor.
    """
    r = np.exp(-np.pi * bandwidths / SAMPLE_RATE)
    theta = 2.0 * np.pi * np.minimum(formants, 0.45 * SAMPLE_RATE) / SAMPLE_RATE
    a1 = (-2.0 * r * np.cos(theta)).astype(np.float32)
    a2 = (r * r).astype(np.float32)
    z = np.exp(-1j * np.pi * np.linspace(0.0, 1.0, TRACT_FFT // 2 + 1)).astype(np.complex64)
    z2 = z * z
    denominator = np.ones((formants.shape[0], z.size), np.complex64)
    for k in range(formants.shape[1]):
        section = a1[:, k, None] * z
        section += a2[k] * z2
        section += np.float32(1.0)
        denominator *= section
    return np.prod(1.0 + a1 + a2, axis=1)[:, None] / denominator


def _vocal_tract(excitation: np.ndarray, formants: np.ndarray, vtl: float) -> np.ndarray:
    """The formant cascade as a time-varying filter: each 10 ms block of the source is
    filtered with the formants at its centre and its full ring-out overlap-added.

    Vectorised over blocks (one FFT pair in all) and continuous by construction, whereas
    switching a recursive filter's coefficients per block costs a Python-level call each.
    10 ms is the update rate of classic formant synthesisers.
    """
    step = TRACT_BLOCK // FRAME
    n_blocks = -(-len(excitation) // TRACT_BLOCK)
    centres = np.minimum(np.arange(n_blocks) * step + step // 2, len(formants) - 1)
    formants = formants[centres]
    blocks = np.zeros(n_blocks * TRACT_BLOCK, np.float32)
    blocks[: len(excitation)] = excitation
    spectra = np.fft.rfft(blocks.reshape(n_blocks, TRACT_BLOCK), TRACT_FFT, axis=1)
    spectra *= _cascade_response(formants, BANDWIDTHS * np.sqrt(vtl))
    rings = np.fft.irfft(spectra, TRACT_FFT, axis=1)
    hops = -(-TRACT_FFT // TRACT_BLOCK)
    width = hops * TRACT_BLOCK
    rings = np.pad(rings, ((0, 0), (0, width - TRACT_FFT))).reshape(n_blocks, hops, TRACT_BLOCK)
    out = np.zeros((n_blocks + hops) * TRACT_BLOCK)
    for hop in range(hops):
        out[hop * TRACT_BLOCK : (hop + n_blocks) * TRACT_BLOCK] += rings[:, hop].reshape(-1)
    return out[: len(excitation)]


@functools.lru_cache(maxsize=256)
def _band_sos(low: float, high: float, order: int) -> np.ndarray:
    return signal.butter(order, [low, high], btype="band", fs=SAMPLE_RATE, output="sos")


def _frication(talker: Talker, plan: _Plan, rng: np.random.Generator, n: int) -> np.ndarray:
    """Band-passed noise for fricatives and release bursts, added after the tract as in a
    parallel formant synthesiser: a constriction's noise bypasses most of the tract."""
    out = np.zeros(n)
    scale = np.sqrt(talker.vtl)
    for seg in plan.segments:
        phone = seg.phone
        if phone.frication == 0.0:
            continue
        low = round(phone.band[0] * scale, -2)
        high = min(round(phone.band[1] * scale, -2), 7600.0)
        if phone.plosive:
            start = int((seg.start + 0.6 * seg.duration) * SAMPLE_RATE)
            length = int(0.02 * SAMPLE_RATE)
            envelope = np.exp(-np.arange(length) / (0.004 * SAMPLE_RATE)) * 2.0
        else:
            start = int(seg.start * SAMPLE_RATE)
            length = int(seg.duration * SAMPLE_RATE)
            envelope = np.hanning(length) ** 0.5
        length = min(length, n - start)
        if length <= 16:
            continue
        noise = signal.sosfilt(_band_sos(low, high, phone.order), rng.standard_normal(length))
        out[start:start + length] += phone.frication * envelope[:length] * noise
    return out


def _creak(plan: _Plan, rng: np.random.Generator, style: Style, n_frames: int) -> np.ndarray:
    """Per frame, 0-1: how creaky the voice is. Each phrase's last 80-200 ms creak with
    one probability per utterance; the onset ramps over 30 ms."""
    times = (np.arange(n_frames) + 0.5) * FRAME / SAMPLE_RATE
    track = np.zeros(n_frames)
    chance = rng.uniform(0.0, style.creak)
    for _, end in plan.phrases:
        if rng.random() < chance:
            start = end - rng.uniform(*CREAK_SECONDS)
            track = np.maximum(track, np.clip((times - start) / 0.03, 0.0, 1.0) * (times < end))
    return track


def _levels(plan: _Plan, n: int) -> np.ndarray:
    """Per-sample gain: each segment's level at its centre, linear in dB between them."""
    centres = [(seg.start + seg.duration / 2) * SAMPLE_RATE for seg in plan.segments]
    levels_db = [seg.level_db for seg in plan.segments]
    return 10.0 ** (np.interp(np.arange(n), centres, levels_db) / 20.0)


def synthesize(
    talker: Talker, rng: np.random.Generator, seconds: float, style: Style = CLASSIC
) -> np.ndarray:
    """One utterance of `seconds` by `talker`, at `SPEECH_RMS` with a -70 dB floor, float64."""
    n = int(round(seconds * SAMPLE_RATE))
    n_frames = -(-n // FRAME)
    plan = _plan(talker, rng, seconds, style)
    tracks = _control_tracks(talker, plan, n_frames)
    frame_times = (np.arange(n_frames) + 0.5) * FRAME
    samples = np.arange(n)
    span = float(rng.uniform(*style.pitch_span)) if style.pitch_span != (1.0, 1.0) else 1.0
    f0 = _pitch(talker, plan, rng, n_frames, span)
    creak = None
    if style.creak:
        creak_frames = _creak(plan, rng, style, n_frames)
        f0 *= 1.0 - CREAK_F0_DROP * creak_frames
        creak = np.interp(samples, frame_times, creak_frames)
    pulses, flow = _glottal_source(talker, f0, rng, n, creak)
    voicing = np.interp(samples, frame_times, tracks["voicing"])
    aspiration = np.interp(samples, frame_times, tracks["aspiration"])
    noise = rng.standard_normal(n)
    source = voicing * (pulses + talker.breath * 4.0 * noise * (0.3 + flow)) + aspiration * noise
    speech = _vocal_tract(source, tracks["formants"], talker.vtl)
    speech += _frication(talker, plan, rng, n)
    if style.stress_db:
        speech *= _levels(plan, n)
    fade = min(n // 10, int(0.02 * SAMPLE_RATE))
    speech[n - fade:] *= np.linspace(1.0, 0.0, fade)
    speech *= SPEECH_RMS / max(float(np.sqrt(np.mean(speech**2))), 1e-12)
    floor = SPEECH_RMS * 10.0 ** (NOISE_FLOOR_DB / 20.0)
    return speech + floor * rng.standard_normal(n)
