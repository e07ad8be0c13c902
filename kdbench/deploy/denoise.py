"""From a benchmark result to a usable denoiser: find a student's checkpoint, load it, and
denoise real audio files with it.

A student trial leaves its weights at ``<results dir>/students/<trial id>.pt`` (the results
dir is the folder holding the results database). Users think in trials ("the one I just
ran", "the best fgspkd student"), not in hashes, so a trial can be named by a unique id
prefix or picked as the best done student of a pair and method on a metric.

Files are denoised in one forward pass each. The UNet's cost is linear in the number of
frames, so memory grows linearly with duration; that is fine for files of minutes. For
unbounded input use `kdbench.deploy.streaming`, which works on bounded windows and reproduces the
offline result.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torchaudio.functional as AF

from kdbench.api import Denoiser, audio_info, read_audio, write_audio
from kdbench.deploy.checkpoints import build_from_checkpoint, student_checkpoint
from kdbench.errors import KdbenchError
from kdbench.plugin.registry import get_registry
from kdbench.run.store import Store

DEFAULT_SAMPLE_RATE = 16000
"""The benchmark's rate; used when neither the checkpoint nor the store records one."""

AUDIO_SUFFIXES = (".wav",)


@dataclasses.dataclass(frozen=True)
class StudentRef:
    """A student trial in a results store and where its weights are."""

    trial_id: str
    checkpoint: Path
    pair: str | None
    method: str | None
    seed: int | None
    sample_rate: int | None


@dataclasses.dataclass
class Student:
    """A loaded student, in eval mode, with what a deployment needs to know about it."""

    model: Denoiser
    sample_rate: int
    spec: dict[str, Any]
    trial_id: str | None
    checkpoint: Path
    kdbench_version: str


def checkpoint_path(store: Store, trial_id: str) -> Path:
    """Where `trial.py` saves a student's weights, relative to the store's folder."""
    return student_checkpoint(store.path.parent, trial_id)


def _students(store: Store) -> pd.DataFrame:
    frame = store.trials()
    return frame[frame["role"] == "student"]


def _ref(store: Store, row: pd.Series) -> StudentRef:
    if row["status"] != "done":
        raise KdbenchError(
            f"trial {row['id']} is {row['status']}, not done: it has no usable checkpoint"
        )
    path = checkpoint_path(store, row["id"])
    if not path.is_file():
        raise KdbenchError(
            f"trial {row['id']} is done but its checkpoint {path} is missing (was the "
            f"results folder copied without its students/ subfolder?)"
        )
    rate = (row["spec"].get("dataset_params") or {}).get("sample_rate")
    seed = row["seed"]
    return StudentRef(
        trial_id=row["id"],
        checkpoint=path,
        pair=row["pair"],
        method=row["method"],
        seed=None if seed is None or pd.isna(seed) else int(seed),
        sample_rate=None if rate is None else int(rate),
    )


def find_trial(store: Store, trial_id: str) -> StudentRef:
    """The student trial whose id is `trial_id` or starts with it (when unique)."""
    if not trial_id:
        raise KdbenchError("empty trial id")
    students = _students(store)
    exact = students[students["id"] == trial_id]
    matches = exact if len(exact) else students[students["id"].str.startswith(trial_id)]
    if len(matches) == 0:
        raise KdbenchError(f"no student trial with id {trial_id!r} in {store.path}")
    if len(matches) > 1:
        shown = ", ".join(sorted(matches["id"])[:5])
        raise KdbenchError(
            f"trial id prefix {trial_id!r} is ambiguous in {store.path}: {len(matches)} "
            f"student trials match ({shown}{', ...' if len(matches) > 5 else ''}); "
            f"give more characters"
        )
    return _ref(store, matches.iloc[0])


def best(
    store: Store, pair: str, method: str, metric: str = "si_sdr", dataset: str | None = None
) -> StudentRef:
    """The done student of `pair`/`method` with the best per-trial mean of `metric`.

    Means over utterances skip NaN (an utterance the metric could not score), so one
    unscorable file does not disqualify a seed. Scores from different datasets are not
    comparable, so candidates must come from one dataset identity.
    """
    higher_is_better = get_registry().get("metrics", metric).higher_is_better
    students = _students(store)
    candidates = students[
        (students["pair"] == pair) & (students["method"] == method) & (students["status"] == "done")
    ]
    if dataset is not None:
        candidates = candidates[candidates["dataset"] == dataset]
    where = f"pair {pair!r}, method {method!r}" + (f", dataset {dataset!r}" if dataset else "")
    if len(candidates) == 0:
        raise KdbenchError(f"no done student trial for {where} in {store.path}")
    identities = candidates["dataset_identity"].unique()
    if len(identities) > 1:
        names = ", ".join(sorted(set(candidates["dataset"])))
        raise KdbenchError(
            f"{where}: done students on {len(identities)} different datasets ({names}); "
            f"their scores are not comparable, choose one with --dataset"
        )
    scores = store.scores(candidates["id"])
    scores = scores[scores["metric"] == metric]
    means = scores.groupby("trial_id")["value"].mean().dropna()
    if means.empty:
        raise KdbenchError(f"{where}: no trial has a finite {metric} score")
    ordered = means.sort_index().sort_values(ascending=not higher_is_better, kind="stable")
    chosen = candidates[candidates["id"] == ordered.index[0]].iloc[0]
    return _ref(store, chosen)


def load_student(
    checkpoint: Path, ref: StudentRef | None = None, device: torch.device | str = "cpu"
) -> Student:
    """Rebuild a student from its checkpoint (plain weights only; pickled code is refused),
    on `device`.

    The sample rate comes from the checkpoint's meta if it records one, else from the
    trial's dataset parameters in the store, else the benchmark's 16 kHz.
    """
    model, payload = build_from_checkpoint(Path(checkpoint), get_registry())
    model.to(device)
    meta = payload.get("meta") or {}
    rate = meta.get("sample_rate") or (ref.sample_rate if ref else None) or DEFAULT_SAMPLE_RATE
    return Student(
        model=model,
        sample_rate=int(rate),
        spec=payload["spec"],
        trial_id=meta.get("trial") or (ref.trial_id if ref else None),
        checkpoint=Path(checkpoint),
        kdbench_version=str(payload.get("kdbench_version", "?")),
    )


def denoise_array(model: Denoiser, audio: np.ndarray) -> np.ndarray:
    """Mono float32 in, mono float32 out, at the model's rate, on the model's device."""
    with torch.inference_mode():
        wave = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None]
        return model.denoise(wave.to(model.device))[0].cpu().numpy()


def denoise_file(
    student: Student, in_path: Path | str, out_path: Path | str, subtype: str = "pcm16"
) -> Path:
    """Denoise one file of any rate and channel count into a mono file at the input's rate.

    The model runs at its own rate on the downmixed signal; the estimate is resampled back
    so the output lines up sample for sample with the input. The input is never
    overwritten: a denoiser's output replacing the only copy of a recording is unrecoverable.
    """
    in_path, out_path = Path(in_path), Path(out_path)
    if out_path.resolve() == in_path.resolve():
        raise KdbenchError(
            f"{out_path}: refusing to overwrite the input file; choose another output"
        )
    info = audio_info(in_path)
    audio = read_audio(in_path, student.sample_rate)
    minimum = student.model.n_fft // 2 + 1
    if audio.shape[0] < minimum:
        raise KdbenchError(
            f"{in_path}: too short to denoise ({audio.shape[0]} samples at "
            f"{student.sample_rate} Hz; at least {minimum} needed)"
        )
    estimate = denoise_array(student.model, audio)
    if info.sample_rate != student.sample_rate:
        estimate = AF.resample(
            torch.from_numpy(estimate), student.sample_rate, info.sample_rate
        ).numpy()
    estimate = np.pad(estimate[: info.frames], (0, max(0, info.frames - estimate.shape[0])))
    return write_audio(out_path, estimate, info.sample_rate, subtype=subtype)


def plan_folder(in_dir: Path, out_dir: Path) -> list[tuple[Path, Path]]:
    """(input, output) pairs for every wav under `in_dir`, mirrored under `out_dir`."""
    source, target = in_dir.resolve(), out_dir.resolve()
    if target == source:
        raise KdbenchError(f"{out_dir}: output folder is the input folder; choose another")
    if not source.is_dir():
        raise KdbenchError(f"{in_dir}: no such folder")
    # An output folder inside the input folder must not feed a rerun its own outputs.
    files = sorted(
        path
        for path in in_dir.rglob("*")
        if path.is_file()
        and path.suffix.lower() in AUDIO_SUFFIXES
        and not path.resolve().is_relative_to(target)
    )
    if not files:
        raise KdbenchError(f"{in_dir}: no .wav files found")
    return [(path, out_dir / path.relative_to(in_dir)) for path in files]


def denoise_folder(
    student: Student, in_dir: Path, out_dir: Path, subtype: str = "pcm16", progress: bool = True
) -> list[Path]:
    """Denoise every wav under `in_dir` into the same relative names under `out_dir`."""
    from rich.progress import Progress

    plan = plan_folder(Path(in_dir), Path(out_dir))
    written: list[Path] = []
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("denoising", total=len(plan))
        for source, target in plan:
            written.append(denoise_file(student, source, target, subtype))
            bar.advance(task)
    return written


def seconds_of(paths: Sequence[Path]) -> float:
    """Total duration of `paths`, for a summary line."""
    return math.fsum(audio_info(path).seconds for path in paths)
