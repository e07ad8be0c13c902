"""kdbench.files.audio: every kind of bad file becomes a named AudioError or a logged conversion."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from kdbench import api
from kdbench.files.audio import forget_notices


@pytest.fixture(autouse=True)
def fresh_notices():
    forget_notices()
    yield
    forget_notices()


def tone(seconds: float, rate: int, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_round_trip_pcm16_and_float(tmp_path: Path) -> None:
    signal = tone(0.25, 16000)
    for subtype, tolerance in (("pcm16", 1e-4), ("float", 0.0)):
        path = api.write_audio(tmp_path / f"{subtype}.wav", signal, 16000, subtype=subtype)
        np.testing.assert_allclose(api.read_audio(path, 16000), signal, atol=tolerance)
    assert sf.info(str(tmp_path / "pcm16.wav")).subtype == "PCM_16"
    assert sf.info(str(tmp_path / "float.wav")).subtype == "FLOAT"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["float.wav", "pcm16.wav"]


def test_write_pcm16_clips_instead_of_wrapping(tmp_path: Path) -> None:
    path = api.write_audio(tmp_path / "loud.wav", np.array([2.0, -2.0, 0.5], np.float32), 8000)
    np.testing.assert_allclose(api.read_audio(path, 8000), [1.0, -1.0, 0.5], atol=1e-4)


def test_write_refuses_non_finite(tmp_path: Path) -> None:
    with pytest.raises(api.AudioError, match="bad.wav"):
        api.write_audio(tmp_path / "bad.wav", np.array([0.0, np.nan], np.float32), 8000)
    assert not list(tmp_path.iterdir())


def test_truncated_wav_names_file_and_cause(tmp_path: Path) -> None:
    path = api.write_audio(tmp_path / "cut.wav", tone(0.5, 16000), 16000)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(api.AudioError, match=r"cut\.wav.*truncated"):
        api.read_audio(path, 16000)


def test_wav_cut_inside_header(tmp_path: Path) -> None:
    path = api.write_audio(tmp_path / "stub.wav", tone(0.5, 16000), 16000)
    path.write_bytes(path.read_bytes()[:30])
    with pytest.raises(api.AudioError, match=r"stub\.wav"):
        api.read_audio(path, 16000)


def test_garbage_bytes(tmp_path: Path) -> None:
    path = tmp_path / "garbage.wav"
    path.write_bytes(np.random.default_rng(0).bytes(2000))
    with pytest.raises(api.AudioError, match=r"garbage\.wav.*cannot read"):
        api.read_audio(path, 16000)
    with pytest.raises(api.AudioError, match=r"garbage\.wav"):
        api.audio_info(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(api.AudioError, match=r"absent\.wav: no such file"):
        api.read_audio(tmp_path / "absent.wav", 16000)
    with pytest.raises(api.AudioError, match=r"absent\.wav: no such file"):
        api.audio_info(tmp_path / "absent.wav")


def test_empty_and_non_finite_files(tmp_path: Path) -> None:
    sf.write(str(tmp_path / "empty.wav"), np.zeros(0, np.float32), 16000)
    with pytest.raises(api.AudioError, match=r"empty\.wav.*no samples"):
        api.read_audio(tmp_path / "empty.wav", 16000)
    sf.write(str(tmp_path / "nan.wav"), np.array([0.1, np.nan], np.float32), 16000, "FLOAT")
    with pytest.raises(api.AudioError, match=r"nan\.wav.*NaN"):
        api.read_audio(tmp_path / "nan.wav", 16000)


def test_wrong_rate_is_resampled_and_logged_once(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="kdbench.files.audio")
    first = api.write_audio(tmp_path / "a.wav", tone(0.5, 48000), 48000)
    second = api.write_audio(tmp_path / "b.wav", tone(0.5, 48000), 48000)
    other = api.write_audio(tmp_path / "c.wav", tone(0.5, 8000), 8000)
    assert api.read_audio(first, 16000).shape == (8000,)
    assert api.read_audio(second, 16000).shape == (8000,)
    assert api.read_audio(other, 16000).shape == (8000,)
    messages = [r.getMessage() for r in caplog.records if r.name == "kdbench.files.audio"]
    assert len([m for m in messages if "48000 Hz" in m]) == 1
    assert len([m for m in messages if "8000 Hz" in m and "48000" not in m]) == 1
    assert "a.wav" in messages[0]


def test_resampled_tone_keeps_its_frequency(tmp_path: Path) -> None:
    path = api.write_audio(tmp_path / "a.wav", tone(0.5, 48000, freq=1000.0), 48000)
    audio = api.read_audio(path, 16000)
    spectrum = np.abs(np.fft.rfft(audio))
    assert np.argmax(spectrum) * 16000 / len(audio) == pytest.approx(1000.0, abs=4.0)


def test_stereo_is_downmixed_with_a_warning(tmp_path: Path, caplog) -> None:
    left, right = tone(0.25, 16000), tone(0.25, 16000, freq=300.0)
    path = tmp_path / "stereo.wav"
    sf.write(str(path), np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    with caplog.at_level(logging.WARNING, logger="kdbench.files.audio"):
        audio = api.read_audio(path, 16000)
    np.testing.assert_allclose(audio, (left + right) / 2, atol=1e-6)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "stereo.wav" in warnings[0].getMessage()


def test_audio_info_reads_the_header(tmp_path: Path) -> None:
    path = api.write_audio(tmp_path / "a.wav", tone(0.5, 22050), 22050)
    info = api.audio_info(path)
    assert (info.sample_rate, info.channels, info.frames) == (22050, 1, 11025)
    assert info.seconds == pytest.approx(0.5)


def test_a_sample_rate_no_recording_has_is_refused_before_resampling(tmp_path: Path) -> None:
    path = tmp_path / "damaged.wav"
    sf.write(str(path), np.zeros(160, dtype=np.float32), 16000)
    data = bytearray(path.read_bytes())
    data[24:28] = (1_700_000_000).to_bytes(4, "little")  # the fmt chunk's sample rate
    path.write_bytes(bytes(data))
    with pytest.raises(api.AudioError, match=r"damaged\.wav: declares a sample rate of 1700000000"):
        api.read_audio(path, 16000)
