"""Reading and writing audio files for dataset plugins.

Every dataset goes through these functions so that a broken, truncated, multi-channel or
wrongly sampled file is handled the same way everywhere: either it becomes mono float32 at
the rate the benchmark runs at, or it raises `AudioError` naming the file and the cause.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import struct
import tempfile
import threading
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from kdbench.errors import AudioError

logger = logging.getLogger("kdbench.files.audio")

SUBTYPES = {"pcm16": "PCM_16", "float": "FLOAT"}

RATE_RANGE = (1_000, 768_000)
"""Sample rates (Hz) a file may declare. Outside them the header is taken to be damaged:
resampling from a rate of billions would try to allocate tens of gigabytes."""

_notice_lock = threading.Lock()
_noticed: set[tuple[object, ...]] = set()


@dataclasses.dataclass(frozen=True)
class AudioInfo:
    """What a file's header says, read without decoding the samples."""

    path: Path
    sample_rate: int
    channels: int
    frames: int

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate


def forget_notices() -> None:
    """Let once-per-run notices (resampling, downmixing) be logged again, e.g. for a new run."""
    with _notice_lock:
        _noticed.clear()


def _first_time(key: tuple[object, ...]) -> bool:
    with _notice_lock:
        if key in _noticed:
            return False
        _noticed.add(key)
        return True


def _wav_truncation(path: Path) -> str | None:
    """Why a RIFF/WAVE file is shorter than its header claims, or None if it is not.

    libsndfile silently returns the samples that are present when a wav was cut short
    (an interrupted copy or download), which would quietly shorten the utterance or break
    its pairing, so the declared data size is checked against the bytes on disk here.
    """
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            header = handle.read(12)
            if len(header) < 12 or header[8:12] != b"WAVE" or header[:4] not in (b"RIFF", b"RIFX"):
                return None
            fmt = "<I" if header[:4] == b"RIFF" else ">I"
            offset = 12
            while offset + 8 <= size:
                handle.seek(offset)
                chunk = handle.read(8)
                chunk_id, chunk_size = chunk[:4], struct.unpack(fmt, chunk[4:8])[0]
                if chunk_id == b"data":
                    available = size - offset - 8
                    # 0 and 0xFFFFFFFF are what streaming writers leave when the length was unknown.
                    if chunk_size not in (0, 0xFFFFFFFF) and chunk_size > available:
                        return (
                            f"truncated: header declares {chunk_size} bytes of samples, "
                            f"only {available} present"
                        )
                    return None
                offset += 8 + chunk_size + (chunk_size & 1)
    except OSError:
        return None
    return None


def _unreadable(path: Path, exc: Exception) -> AudioError:
    """libsndfile says 'System error' for a missing file; say what is wrong instead."""
    if not path.exists():
        return AudioError(f"{path}: no such file")
    return AudioError(f"{path}: cannot read audio file: {exc}")


def audio_info(path: str | os.PathLike[str]) -> AudioInfo:
    """Header facts about `path`, so a dataset can check rates and lengths cheaply."""
    path = Path(path)
    try:
        info = sf.info(str(path))
    except (sf.SoundFileError, OSError) as exc:
        raise _unreadable(path, exc) from exc
    return AudioInfo(path, int(info.samplerate), int(info.channels), int(info.frames))


def read_audio(path: str | os.PathLike[str], sample_rate: int) -> np.ndarray:
    """Mono float32 samples of `path` at `sample_rate`, or `AudioError` saying what is wrong."""
    path = Path(path)
    truncation = _wav_truncation(path)
    if truncation is not None:
        raise AudioError(f"{path}: {truncation}")
    try:
        data, source_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.SoundFileError, OSError) as exc:
        raise _unreadable(path, exc) from exc
    if not RATE_RANGE[0] <= source_rate <= RATE_RANGE[1]:
        raise AudioError(
            f"{path}: declares a sample rate of {source_rate} Hz, outside "
            f"{RATE_RANGE[0]}-{RATE_RANGE[1]} Hz (a damaged header?)"
        )
    if data.shape[0] == 0:
        raise AudioError(f"{path}: contains no samples")
    if not np.isfinite(data).all():
        raise AudioError(f"{path}: contains NaN or infinite samples")
    if data.shape[1] > 1:
        if _first_time(("downmix", data.shape[1])):
            logger.warning(
                "%s: %d channels downmixed to mono by averaging (further %d-channel files "
                "are downmixed without notice)",
                path,
                data.shape[1],
                data.shape[1],
            )
        audio = data.mean(axis=1, dtype=np.float32)
    else:
        audio = data[:, 0]
    if source_rate != sample_rate:
        if _first_time(("resample", source_rate, sample_rate)):
            logger.info(
                "resampling %d Hz audio to %d Hz (first file: %s; not reported again)",
                source_rate,
                sample_rate,
                path,
            )
        audio = AF.resample(torch.from_numpy(np.ascontiguousarray(audio)), source_rate, sample_rate)
        audio = audio.numpy()
    return np.ascontiguousarray(audio, dtype=np.float32)


def write_audio(
    path: str | os.PathLike[str],
    audio: np.ndarray,
    sample_rate: int,
    subtype: str = "pcm16",
) -> Path:
    """Write mono `audio` as a wav file (`subtype` "pcm16" or "float") without ever leaving a
    half-written file at `path`: an interrupted write would otherwise pass for a short file.

    For "pcm16" samples are clipped to [-1, 1], because libsndfile would otherwise wrap
    out-of-range values around into loud clicks.
    """
    path = Path(path)
    if subtype not in SUBTYPES:
        raise ValueError(f"subtype must be one of {sorted(SUBTYPES)}, got {subtype!r}")
    samples = np.asarray(audio, dtype=np.float32)
    if samples.ndim != 1:
        raise AudioError(f"{path}: expected mono samples, got shape {samples.shape}")
    if not np.isfinite(samples).all():
        raise AudioError(f"{path}: refusing to write NaN or infinite samples")
    if subtype == "pcm16":
        samples = np.clip(samples, -1.0, 1.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        sf.write(temporary, samples, sample_rate, subtype=SUBTYPES[subtype], format="WAV")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
