"""The folders, voicebank and mix datasets on small generated folders."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from kdbench_plugins.datasets import files
from kdbench_plugins.datasets.files import FoldersDataset, MixDataset, VoiceBankDataset

from kdbench.api import AudioError, ConfigError, write_audio
from kdbench.testing import prepare_dataset

RATE = 8000


def signal(seed: int, seconds: float = 0.25, rate: int = RATE) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * rng.uniform(200, 800) * t)).astype(np.float32)


def make_pair(base: Path, name: str, seed: int, seconds: float = 0.25, rate: int = RATE) -> None:
    clean = signal(seed, seconds, rate)
    noise = 0.05 * np.random.default_rng(seed + 1000).standard_normal(len(clean))
    write_audio(base / "clean" / name, clean, rate)
    write_audio(base / "noisy" / name, clean + noise.astype(np.float32), rate)


def flat_folder(root: Path, count: int = 10) -> Path:
    for index in range(count):
        make_pair(root, f"spk{index % 3}_{index:03d}.wav", index)
    return root


def folders(root: Path, cache: Path, **params):
    return prepare_dataset(FoldersDataset(), {"root": str(root), "sample_rate": RATE, **params}, cache)


def test_registers_three_datasets() -> None:
    class Collect:
        def __init__(self) -> None:
            self.names: list[str] = []

        def add(self, obj) -> None:
            self.names.append(obj.name)

    collected = Collect()
    files.kdbench_register_datasets(collected)
    assert collected.names == ["folders", "voicebank", "mix"]


def test_folders_flat_layout_split_by_seed(tmp_path: Path) -> None:
    root = flat_folder(tmp_path / "data")
    prepared = folders(root, tmp_path / "cache", valid_fraction=0.2, test_fraction=0.2)
    sizes = {split: len(utts) for split, utts in prepared.splits.items()}
    assert sizes == {"train": 6, "valid": 2, "test": 2}
    ids = [u.id.split("/")[1] for utts in prepared.splits.values() for u in utts]
    assert len(set(ids)) == 10
    again = folders(root, tmp_path / "cache", valid_fraction=0.2, test_fraction=0.2)
    assert [u.id for u in again.splits["test"]] == [u.id for u in prepared.splits["test"]]
    other = folders(root, tmp_path / "cache", valid_fraction=0.2, test_fraction=0.2, seed=5)
    assert other.identity != prepared.identity
    utterance = prepared.splits["train"][0]
    assert utterance.clean.dtype == np.float32 and utterance.clean.shape == utterance.noisy.shape
    assert utterance.meta["split"] == "train"
    assert utterance.meta["speaker"] in {"spk0", "spk1", "spk2"}
    assert Path(utterance.meta["clean_path"]).parent.name == "clean"
    assert Path(utterance.meta["noisy_path"]).parent.name == "noisy"


def test_folders_too_few_files_or_bad_fractions(tmp_path: Path) -> None:
    root = flat_folder(tmp_path / "data", count=2)
    with pytest.raises(ConfigError, match="too few"):
        folders(root, tmp_path / "cache")
    with pytest.raises(ConfigError, match="valid_fraction"):
        folders(root, tmp_path / "cache", valid_fraction=0.6, test_fraction=0.5)


def test_folders_split_folders_and_held_out_valid(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for index in range(5):
        make_pair(root / "train", f"a_{index}.wav", index)
    make_pair(root / "test", "b_0.wav", 50)
    prepared = folders(root, tmp_path / "cache", valid_fraction=0.2)
    assert [len(prepared.splits[s]) for s in ("train", "valid", "test")] == [4, 1, 1]
    make_pair(root / "valid", "c_0.wav", 60)
    prepared = folders(root, tmp_path / "cache")
    assert [u.id for u in prepared.splits["valid"]] == ["valid/c_0"]
    assert len(prepared.splits["train"]) == 5


def test_folders_missing_folder_names_path_and_layout(tmp_path: Path) -> None:
    expected = r"(?s)nowhere: folder not found.*expected layout.*ROOT/train/clean/\*\.wav"
    with pytest.raises(ConfigError, match=expected) as raised:
        folders(tmp_path / "nowhere", tmp_path / "cache")
    assert str(tmp_path / "nowhere") in str(raised.value)
    root = tmp_path / "data"
    make_pair(root / "train", "a_0.wav", 0)
    shutil.rmtree(root / "train" / "noisy")
    with pytest.raises(ConfigError, match=r"(?s)train/noisy: folder not found.*expected layout"):
        folders(root, tmp_path / "cache")
    make_pair(root / "train", "a_0.wav", 0)
    with pytest.raises(ConfigError, match=r"data/test: folder not found"):
        folders(root, tmp_path / "cache")


def test_folders_root_not_set(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"dataset\.folders\.root: not set"):
        prepare_dataset(FoldersDataset(), {}, tmp_path)


def test_folders_unmatched_file_is_named(tmp_path: Path) -> None:
    root = flat_folder(tmp_path / "data", count=4)
    write_audio(root / "clean" / "lonely.wav", signal(9), RATE)
    expected = r"clean/lonely\.wav: no file of the same name in .*noisy"
    with pytest.raises(ConfigError, match=expected):
        folders(root, tmp_path / "cache")


def test_folders_length_mismatch_names_both_files(tmp_path: Path) -> None:
    root = flat_folder(tmp_path / "data", count=4)
    write_audio(root / "noisy" / "spk0_000.wav", signal(0, seconds=0.3), RATE)
    with pytest.raises(AudioError, match=r"clean/spk0_000\.wav.*noisy/spk0_000\.wav"):
        folders(root, tmp_path / "cache")


def test_folders_on_error_skip_leaves_out_broken_files(tmp_path: Path, caplog) -> None:
    root = flat_folder(tmp_path / "data", count=6)
    (root / "noisy" / "spk1_001.wav").write_bytes(b"not audio at all" * 20)
    with pytest.raises(AudioError, match=r"spk1_001\.wav"):
        folders(root, tmp_path / "cache")
    with caplog.at_level(logging.WARNING):
        prepared = folders(root, tmp_path / "cache", on_error="skip")
    assert sum(len(utts) for utts in prepared.splits.values()) == 5
    assert any("spk1_001.wav" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    with pytest.raises(ConfigError, match="on_error"):
        folders(root, tmp_path / "cache", on_error="ignore")


def test_silent_clean_reference_is_kept_with_a_warning(tmp_path: Path, caplog) -> None:
    root = flat_folder(tmp_path / "data", count=4)
    write_audio(root / "clean" / "spk0_000.wav", np.zeros(int(0.25 * RATE), np.float32), RATE)
    with caplog.at_level(logging.WARNING):
        prepared = folders(root, tmp_path / "cache")
    assert sum(len(utts) for utts in prepared.splits.values()) == 4
    messages = [r.getMessage() for r in caplog.records]
    assert any("spk0_000.wav" in m and "silent" in m for m in messages)


def test_identity_follows_content_not_location(tmp_path: Path) -> None:
    root = flat_folder(tmp_path / "data", count=4)
    cache = tmp_path / "cache"
    first = folders(root, cache).identity
    assert len(first) == 16 and folders(root, cache).identity == first
    assert (cache / "content_hashes.json").is_file()
    copy = shutil.copytree(root, tmp_path / "copy")
    assert folders(copy, cache).identity == first
    target = root / "noisy" / "spk1_001.wav"
    audio = signal(77)
    write_audio(target, audio + 0.01, RATE)
    assert folders(root, cache).identity != first


def make_voicebank(root: Path) -> None:
    for index, speaker in enumerate(["p226", "p227", "p228", "p287"]):
        for number in range(2):
            base = root / "trainset"
            make_pair(base, f"{speaker}_{number:03d}.wav", index * 10 + number, 0.2, 48000)
    for number in range(2):
        make_pair(root / "testset", f"p232_{number:03d}.wav", 90 + number, 0.2, 48000)
    for split, folder in (("trainset", "trainset_28spk_wav"), ("testset", "testset_wav")):
        for kind in ("clean", "noisy"):
            (root / split / kind).rename(root / f"{kind}_{folder}")
        (root / split).rmdir()


def test_voicebank_resamples_and_holds_out_speakers(tmp_path: Path) -> None:
    root = tmp_path / "vb"
    make_voicebank(root)
    prepared = prepare_dataset(VoiceBankDataset(), {"root": str(root)}, tmp_path / "cache")
    assert prepared.sample_rate == 16000
    speakers = {s: {u.meta["speaker"] for u in utts} for s, utts in prepared.splits.items()}
    assert speakers == {"train": {"p227", "p228"}, "valid": {"p226", "p287"}, "test": {"p232"}}
    utterance = prepared.splits["test"][0]
    assert utterance.clean.shape == (int(0.2 * 16000),)
    assert utterance.id == "test/p232_000"
    with pytest.raises(ConfigError, match="p999"):
        prepare_dataset(VoiceBankDataset(), {"root": str(root), "valid_speakers": "p226,p999"}, tmp_path)


def test_voicebank_missing_folder_names_layout(tmp_path: Path) -> None:
    root = tmp_path / "vb"
    make_voicebank(root)
    shutil.rmtree(root / "noisy_testset_wav")
    expected = r"(?s)noisy_testset_wav: folder not found.*ROOT/clean_trainset_28spk_wav"
    with pytest.raises(ConfigError, match=expected):
        prepare_dataset(VoiceBankDataset(), {"root": str(root)}, tmp_path / "cache")


def make_mix_sources(root: Path) -> tuple[Path, Path]:
    for index in range(10):
        write_audio(root / "speech" / f"s{index}_{index:02d}.wav", signal(index, 0.3), RATE)
    rng = np.random.default_rng(0)
    for index in range(10):
        seconds = 0.1 if index % 2 else 0.5
        noise = 0.2 * rng.standard_normal(int(seconds * RATE)).astype(np.float32)
        write_audio(root / "noise" / f"n{index}.wav", noise, RATE)
    return root / "speech", root / "noise"


def mix(speech: Path, noise: Path, cache: Path, **params):
    base = {
        "speech_dir": str(speech),
        "noise_dir": str(noise),
        "sample_rate": RATE,
        "snrs": "-5,0,7.5",
        "train_count": 12,
        "valid_count": 4,
        "test_count": 6,
        "seconds": 0.2,
    }
    return prepare_dataset(MixDataset(), {**base, **params}, cache)


def test_mix_hits_snr_and_splits_disjointly(tmp_path: Path) -> None:
    speech, noise = make_mix_sources(tmp_path)
    prepared = mix(speech, noise, tmp_path / "cache")
    assert {s: len(u) for s, u in prepared.splits.items()} == {"train": 12, "valid": 4, "test": 6}
    for utterances in prepared.splits.values():
        for utterance in utterances:
            residual = utterance.noisy.astype(np.float64) - utterance.clean
            measured = 10 * np.log10(np.mean(utterance.clean**2.0) / np.mean(residual**2))
            assert utterance.meta["snr_db"] in (-5.0, 0.0, 7.5)
            assert measured == pytest.approx(utterance.meta["snr_db"], abs=0.1)
            assert len(utterance.clean) == int(0.2 * RATE)
    for key in ("clean_path", "noise_path"):
        used = {s: {u.meta[key] for u in utts} for s, utts in prepared.splits.items()}
        assert not used["train"] & used["valid"]
        assert not used["train"] & used["test"]
        assert not used["valid"] & used["test"]
    again = mix(speech, noise, tmp_path / "cache")
    assert again.identity == prepared.identity
    np.testing.assert_array_equal(again.splits["test"][0].noisy, prepared.splits["test"][0].noisy)
    assert mix(speech, noise, tmp_path / "cache", seed=3).identity != prepared.identity


def test_mix_rejects_bad_snrs(tmp_path: Path) -> None:
    speech, noise = make_mix_sources(tmp_path)
    with pytest.raises(ConfigError, match="snrs"):
        mix(speech, noise, tmp_path / "cache", snrs="loud")
