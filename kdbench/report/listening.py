"""Audio examples for a published site: what a score difference sounds like.

For a few test utterances, one per input-SNR band (the first of the test split in each
band, so nothing is picked by how well a method did on it), the site plays the noisy
input, the clean reference, the teacher and, for one chosen pair, each method's
median-seed student, with the utterance's stored scores and a spectrogram thumbnail.

The estimates are recomputed from the trials' own checkpoints and scored again with the
trials' metrics; a clip whose recomputed scores differ from the stored ones is flagged, so
a page can never play a model other than the one its tables describe. Where a checkpoint
is missing (a store copied without its `students/` folder, a teacher cache that is gone)
the site says which, instead of failing.

Clips are MP3 (libsndfile's LAME encoder through soundfile, about 48 kbit/s at 16 kHz):
small, played by every browser, and, unlike libsndfile's Ogg/Opus whose stream serial is
random, the same bytes for the same samples, so a re-published site does not churn.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import torch
from matplotlib import image
from scipy import signal

from kdbench.api import Denoiser, ModelSpec, Utterance
from kdbench.deploy.checkpoints import build_from_checkpoint, student_checkpoint
from kdbench.deploy.denoise import denoise_array
from kdbench.errors import KdbenchError
from kdbench.plugin.registry import get_registry
from kdbench.report.leaderboard import LeaderboardData
from kdbench.run.evaluate import score_utterances
from kdbench.run.store import Store
from kdbench.run.trial import NoisyTrial, StudentTrial, TeacherTrial
from kdbench.train.teacher import freeze, teacher_file

SNR_BANDS = ((-math.inf, 2.5, "low SNR (< 2.5 dB)"), (2.5, 12.5, "mid SNR (2.5–12.5 dB)"),
             (12.5, math.inf, "high SNR (≥ 12.5 dB)"))
"""Input-SNR bands, one example each; the edges fall between the usual 5 dB mixing steps."""

MP3_COMPRESSION = 0.3
"""soundfile's compression level for LAME (0 best, 1 smallest); 0.3 ≈ 48 kbit/s at 16 kHz."""

_TOLERANCE = 1e-9


@dataclasses.dataclass
class Clip:
    """One thing to listen to: who made it, its files (relative to the site) and scores."""

    label: str
    detail: str
    audio: str
    spectrogram: str
    scores: dict[str, float]
    matches_store: bool | None = None
    """None where there is nothing stored to compare (the clean reference)."""


@dataclasses.dataclass
class Example:
    utterance: str
    snr_db: float
    band: str
    clips: list[Clip]


@dataclasses.dataclass
class AudioExamples:
    pair: str | None
    median_metric: str
    examples: list[Example]
    unavailable: list[str]
    """What could not be played and why (missing checkpoints, no such pair)."""


@dataclasses.dataclass
class _Source:
    label: str
    detail: str
    trial_id: str | None
    model: Denoiser | None
    threads: int = 1

    def denoise(self, noisy: np.ndarray) -> np.ndarray:
        """The estimate as the trial made it: with the trial's torch thread count, because
        a different count may pick other kernels and change the last bits."""
        if self.model is None:
            return noisy
        before = torch.get_num_threads()
        torch.set_num_threads(max(1, self.threads))
        try:
            return denoise_array(self.model, noisy)
        finally:
            torch.set_num_threads(before)


def input_snr_db(utterance: Utterance) -> float:
    """The mixture's SNR measured from its two signals (the noise is noisy − clean), so no
    dataset has to declare it."""
    clean = np.asarray(utterance.clean, dtype=np.float64)
    noise = np.asarray(utterance.noisy, dtype=np.float64) - clean
    noise_power = float(np.sum(noise**2))
    if noise_power == 0.0:
        return math.inf
    return 10.0 * math.log10(max(float(np.sum(clean**2)), 1e-30) / noise_power)


def choose_utterances(utterances: Sequence[Utterance]) -> list[tuple[str, Utterance, float]]:
    """(band, utterance, SNR) for the first utterance of each band, in split order."""
    chosen = []
    measured = [(utterance, input_snr_db(utterance)) for utterance in utterances]
    for low, high, band in SNR_BANDS:
        found = next(((u, snr) for u, snr in measured if low <= snr < high), None)
        if found is not None:
            chosen.append((band, found[0], found[1]))
    return chosen


def median_seed_trial(data: LeaderboardData, dataset: str, pair: str, method: str,
                      metric: str) -> tuple[StudentTrial, float] | None:
    """The student whose per-seed mean of `metric` is the median (the lower one for an even
    count; ties by seed), with that mean, or None when no seed has a score."""
    scores = data.scores
    chosen = scores[(scores["dataset"] == dataset) & (scores["pair"] == pair)
                    & (scores["method"] == method) & (scores["metric"] == metric)]
    means = chosen.groupby("seed")["value"].mean().dropna()
    if means.empty:
        return None
    ordered = sorted(means.items(), key=lambda item: (item[1], item[0]))
    seed, value = ordered[(len(ordered) - 1) // 2]
    trained_on = data.blocks[dataset].dataset
    trial = next(t for t in data.grid.students if t.dataset == trained_on and t.pair == pair
                 and t.method == method and t.seed == seed)
    return trial, float(value)


def _teacher_trial(data: LeaderboardData, student: StudentTrial) -> TeacherTrial | None:
    """The teacher `student` distilled from (with several teacher seeds, its own one)."""
    return next((t for t in data.grid.anchors if isinstance(t, TeacherTrial)
                 and t.dataset == student.dataset and t.teacher_spec == student.teacher_spec
                 and t.teacher_seed == student.teacher_seed), None)


def _noisy_trial(data: LeaderboardData, dataset: str) -> NoisyTrial | None:
    return next((t for t in data.grid.anchors if isinstance(t, NoisyTrial) and t.dataset == dataset),
                None)


def _load(path: Path, what: str, unavailable: list[str]) -> Denoiser | None:
    if not path.is_file():
        unavailable.append(f"{what}: no checkpoint at {path}")
        return None
    try:
        model, _ = build_from_checkpoint(path, get_registry())
    except KdbenchError as exc:
        unavailable.append(f"{what}: {exc}")
        return None
    return freeze(model)


def _sources(data: LeaderboardData, dataset: str, pair: str, metric: str,
             unavailable: list[str]) -> list[_Source]:
    trained_on = data.blocks[dataset].dataset
    prepared = data.grid.datasets[trained_on]
    noisy = _noisy_trial(data, trained_on)
    sources = [_Source("noisy input", "the mixture", noisy.id if noisy else None, None)]
    students = []
    for method in data.methods:
        found = median_seed_trial(data, dataset, pair, method, metric)
        if found is None:
            unavailable.append(f"{method}: no scored student on pair {pair}")
        else:
            students.append((method, *found))
    # The teacher of the first method's median-seed student: with several teacher seeds the
    # clip then plays the teacher that student (and every method at its seed) distilled from.
    teacher = _teacher_trial(data, students[0][1]) if students else None
    if teacher is not None:
        spec = ModelSpec(teacher.teacher_spec["family"], teacher.teacher_spec["params"])
        path = teacher_file(spec, prepared.identity, teacher.teacher_settings, Path(teacher.cache_dir))
        model = _load(path, "teacher", unavailable)
        if model is not None:
            sources.append(_Source("teacher", f"frozen, as distilled (teacher seed "
                                   f"{teacher.teacher_seed})", teacher.id, model, teacher.threads))
    for method, trial, value in students:
        path = student_checkpoint(trial.results_dir, trial.id)
        model = _load(path, f"{method} (seed {trial.seed})", unavailable)
        if model is not None:
            detail = f"seed {trial.seed}: median {metric} over seeds ({value:.3f})"
            sources.append(_Source(method, detail, trial.id, model, trial.threads))
    return sources


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "clip"


def write_mp3(path: Path, samples: np.ndarray, sample_rate: int) -> Path:
    """Mono float samples as MP3, clipped to [-1, 1] (the encoder would wrap them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0), sample_rate,
             format="MP3", subtype="MPEG_LAYER_III", compression_level=MP3_COMPRESSION)
    return path


def _log_spectrogram(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    _, _, power = signal.spectrogram(samples, fs=sample_rate, nperseg=256, noverlap=128)
    return 10.0 * np.log10(power + 1e-12)


def write_spectrogram(path: Path, pixels: np.ndarray, vmin: float, vmax: float) -> Path:
    """A thumbnail: one pixel per STFT bin and frame, low frequencies at the bottom."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image.imsave(path, pixels[::-1], cmap="magma", vmin=vmin, vmax=vmax)
    return path


def _stored_scores(
    store: Store, trial_ids: Sequence[str], metrics: Sequence[str], test_set: str
) -> pd.DataFrame:
    """The trials' stored scores on the block's test set."""
    scores = store.scores(trial_ids)
    chosen = scores["metric"].isin(metrics) & (scores["test_set"] == test_set)
    return scores[chosen].set_index(["trial_id", "utterance", "metric"])


def write_audio_examples(data: LeaderboardData, dataset: str, store: Store, pair: str | None,
                         out: Path, folder: str = "audio") -> AudioExamples:
    """Write the clips under `out/folder/` and describe them; nothing here raises for a
    missing checkpoint, it is listed in `unavailable` instead. Without a single playable
    model (teacher or student) no clip is written: the inputs alone say nothing."""
    metric = data.metrics[0]
    pair = pair or (data.pairs[0] if data.pairs else None)
    unavailable: list[str] = []
    if pair is None or pair not in data.pairs:
        return AudioExamples(pair, metric, [], [f"pair {pair!r} is not shown on this page"])
    block = data.blocks[dataset]
    prepared = block.tested_on
    sources = _sources(data, dataset, pair, metric, unavailable)
    stored = _stored_scores(
        store, [s.trial_id for s in sources if s.trial_id], data.metrics, block.test_set
    )
    sources = [s for s in sources if _same_trial(data, dataset, stored, s, unavailable)]
    if not any(source.model is not None for source in sources):
        return AudioExamples(pair, metric, [], unavailable)
    registry = get_registry()
    metrics = [registry.get("metrics", name) for name in data.metrics]
    examples = []
    for index, (band, utterance, snr) in enumerate(choose_utterances(prepared.splits["test"])):
        clean = np.asarray(utterance.clean, dtype=np.float32)
        noisy = np.asarray(utterance.noisy, dtype=np.float32)
        signals = [("clean reference", "what the students are scored against", None, clean)]
        for source in sources:
            signals.append((source.label, source.detail, source.trial_id, source.denoise(noisy)))
        noisy_image = _log_spectrogram(noisy, prepared.sample_rate)
        vmax = float(noisy_image.max())
        clips = []
        for label, detail, trial_id, samples in signals:
            stem = f"{folder}/{index + 1}-{_slug(label)}"
            write_mp3(out / f"{stem}.mp3", samples, prepared.sample_rate)
            write_spectrogram(out / f"{stem}.png", _log_spectrogram(samples, prepared.sample_rate),
                              vmax - 80.0, vmax)
            clip = Clip(label, detail, f"{stem}.mp3", f"{stem}.png", {})
            if trial_id is not None:
                clip.scores, clip.matches_store = _scores(
                    metrics, stored, trial_id, utterance.id, clean, samples, prepared.sample_rate)
            clips.append(clip)
        examples.append(Example(utterance.id, snr, band, clips))
    return AudioExamples(pair, metric, examples, unavailable)


def _same_trial(data: LeaderboardData, dataset: str, stored: pd.DataFrame, source: _Source,
                unavailable: list[str]) -> bool:
    """Whether the store's scores of the trial are those the page's tables were made from
    (they can differ when the page is read from an export and the trial was re-run)."""
    if source.trial_id is None:
        return True
    key = (source.trial_id, dataset)
    if key not in data.trial_means.index:
        unavailable.append(f"{source.label}: trial {source.trial_id} is not in the page's data")
        return False
    rows = stored.loc[source.trial_id] if source.trial_id in stored.index.get_level_values(0) else None
    for metric in data.metrics:
        page = float(data.trial_means.loc[key, metric])
        ours = math.nan if rows is None else float(rows.xs(metric, level="metric")["value"].mean())
        if math.isnan(ours) and not math.isnan(page):
            unavailable.append(f"{source.label}: trial {source.trial_id} has no scores in the store")
            return False
        if not np.isclose(ours, page, rtol=_TOLERANCE, atol=_TOLERANCE, equal_nan=True):
            unavailable.append(
                f"{source.label}: trial {source.trial_id} in the store has {metric} "
                f"{ours:.10g}, the page {page:.10g} (a re-run on another numeric platform, or "
                "another store): not the page's trial"
            )
            return False
    return True


def _scores(metrics, stored: pd.DataFrame, trial_id: str, utterance: str, clean: np.ndarray,
            estimate: np.ndarray, sample_rate: int) -> tuple[dict[str, float], bool]:
    """The stored per-utterance scores, and whether scoring this estimate again gives them."""
    again = score_utterances(metrics, [(utterance, clean, estimate)], sample_rate)
    scores, same = {}, True
    for score in again:
        key = (trial_id, utterance, score.metric)
        value = float(stored.loc[key, "value"]) if key in stored.index else math.nan
        scores[score.metric] = value
        same = same and bool(np.isclose(value, score.value, rtol=_TOLERANCE, atol=_TOLERANCE,
                                        equal_nan=True))
    return scores, same
