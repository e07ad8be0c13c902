"""The optional eSpeak dataset: a tiny corpus of real synthesised speech, split by voice,
cached behind a verified manifest, and reproducible across fresh generations.

Tests that synthesise skip when the extra (espeakng-loader) is missing; the message for a
missing extra and the registration are tested without it.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from kdbench_plugins.datasets import espeak_cache, espeak_corpus, espeak_engine
from kdbench_plugins.datasets.espeak import EspeakDataset, espeak_settings
from pesq import pesq

from kdbench.api import (
    ConfigError,
    CorruptFile,
    PreparedDataset,
    read_audio,
    resolve_params,
    write_audio,
)
from kdbench.cli import main
from kdbench.plugin.registry import make_registry
from kdbench.testing import prepare_dataset

TINY: dict[str, Any] = {
    "n_train": 3,
    "n_valid": 1,
    "n_test": 2,
    "seconds": 1.5,
    "voices_train": 2,
    "voices_valid": 1,
    "voices_test": 2,
    "noises": ["white", "pink", "hum_fan"],
}
SKIP_REASON = "the espeak dataset needs the optional extra: pip install 'kdbench[espeak]'"


def _require_extra() -> None:
    pytest.importorskip("espeakng_loader", reason=SKIP_REASON)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _require_extra()
    return tmp_path_factory.mktemp("espeak")


@pytest.fixture(scope="module")
def tiny(cache: Path) -> PreparedDataset:
    return prepare_dataset(EspeakDataset(), TINY, cache)


def _folder(cache: Path) -> Path:
    (folder,) = (path for path in cache.glob("espeak-*") if path.is_dir())
    return folder


def test_utterances_are_non_silent_speech_at_16_khz(tiny: PreparedDataset) -> None:
    assert tiny.sample_rate == 16000
    assert {split: len(u) for split, u in tiny.splits.items()} == {
        "train": 3, "valid": 1, "test": 2
    }
    for utterances in tiny.splits.values():
        for utterance in utterances:
            clean = utterance.clean
            assert clean.dtype == np.float32 and clean.shape == (24000,)
            frames = clean[: len(clean) // 320 * 320].reshape(-1, 320)
            frame_db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
            assert np.mean(frame_db > frame_db.max() - 30) > 0.5, "mostly silence"
            assert utterance.meta["text"][0].isupper()
            assert not np.array_equal(utterance.noisy, clean)


def test_pesq_wb_of_noisy_against_clean_is_defined(tiny: PreparedDataset) -> None:
    for utterance in tiny.splits["test"]:
        score = pesq(16000, utterance.clean, utterance.noisy, "wb")
        assert 1.0 <= score <= 4.7


def test_splits_have_disjoint_voices_and_variants(tiny: PreparedDataset) -> None:
    seen: dict[str, set[str]] = {}
    for split, utterances in tiny.splits.items():
        seen[split] = {u.meta["variant"] for u in utterances}
    assert not seen["train"] & seen["valid"]
    assert not seen["train"] & seen["test"]
    assert not seen["valid"] & seen["test"]
    assert len(seen["train"]) == 2 and len(seen["test"]) == 2


def test_default_voices_use_each_variant_at_most_once(cache: Path) -> None:
    resolved = resolve_params("dataset.espeak", EspeakDataset.params, {})
    settings = espeak_settings(resolved, espeak_engine.available_variants())
    variants = [v.variant for voices in espeak_corpus.split_voices(settings).values()
                for v in voices]
    assert len(variants) == len(set(variants)) == 60 + 12 + 16


def test_second_prepare_loads_from_cache_and_verifies_every_file(
    tiny: PreparedDataset, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_generation(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("generated again instead of loading the cache")

    checked = []

    def counting(audio: np.ndarray) -> str:
        checked.append(len(audio))
        return real_hash(audio)

    real_hash = espeak_cache.samples_sha256
    monkeypatch.setattr(espeak_corpus, "generate_corpus", no_generation)
    monkeypatch.setattr(espeak_cache, "samples_sha256", counting)
    again = prepare_dataset(EspeakDataset(), TINY, cache)
    assert again.identity == tiny.identity
    assert len(checked) == 2 * 6
    assert np.array_equal(again.splits["test"][1].noisy, tiny.splits["test"][1].noisy)


def _set_aside_and_regenerated(copy: Path, tiny: PreparedDataset, tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="kdbench.files.cache"):
        again = prepare_dataset(EspeakDataset(), TINY, tmp_path)
    assert again.identity == tiny.identity
    assert np.array_equal(again.splits["valid"][0].noisy, tiny.splits["valid"][0].noisy)
    assert len(list(tmp_path.glob(f"{copy.name}.corrupt-*"))) == 1
    assert "set aside" in caplog.text


def test_a_tampered_cache_file_is_named_set_aside_and_synthesised_again(
    tiny: PreparedDataset, cache: Path, tmp_path: Path, caplog
) -> None:
    copy = tmp_path / _folder(cache).name
    shutil.copytree(_folder(cache), copy)
    victim = copy / "valid" / "00000-noisy.wav"
    audio = read_audio(victim, 16000)
    audio[100] += 1e-3
    write_audio(victim, audio, 16000, subtype="float")
    with pytest.raises(CorruptFile, match="valid/00000-noisy.wav: samples do not match"):
        espeak_cache.load_corpus(copy, json.loads((copy / "manifest.json").read_text()))
    _set_aside_and_regenerated(copy, tiny, tmp_path, caplog)


def test_an_edited_manifest_is_named_set_aside_and_synthesised_again(
    tiny: PreparedDataset, cache: Path, tmp_path: Path, caplog
) -> None:
    copy = tmp_path / _folder(cache).name
    shutil.copytree(_folder(cache), copy)
    manifest = copy / "manifest.json"
    text = manifest.read_text()
    assert '"split": "train"' in text
    manifest.write_text(text.replace('"split": "train"', '"split": "valid"', 1))
    with pytest.raises(CorruptFile, match="manifest.json: unreadable or inconsistent"):
        espeak_cache.read_manifest(copy, json.loads(text)["settings"])
    _set_aside_and_regenerated(copy, tiny, tmp_path, caplog)


def test_two_fresh_generations_are_sample_identical(
    tiny: PreparedDataset, tmp_path: Path
) -> None:
    """eSpeak NG carries state between calls and seeds its noise from the clock; with a
    fresh process per shard and a seeded noise generator, generating again must give the
    same samples (the same content hash, hence the same identity)."""
    again = prepare_dataset(EspeakDataset(), TINY, tmp_path)
    assert again.identity == tiny.identity
    for split, utterances in tiny.splits.items():
        for first, second in zip(utterances, again.splits[split]):
            assert np.array_equal(first.clean, second.clean)
            assert np.array_equal(first.noisy, second.noisy)
            assert first.meta == second.meta


def test_too_many_voices_for_the_variants_is_a_config_error(cache: Path) -> None:
    with pytest.raises(ConfigError, match="splits never share one"):
        prepare_dataset(EspeakDataset(), {**TINY, "variants": ["m1", "m2", "f1"]}, cache)


def test_missing_extra_names_the_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)
    with pytest.raises(ConfigError, match=r"pip install 'kdbench\[espeak\]'"):
        prepare_dataset(EspeakDataset(), TINY, tmp_path)


def test_dataset_registers_and_lists_without_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)
    if "espeak" not in make_registry().names("datasets"):  # not yet an entry point
        monkeypatch.setenv("KDBENCH_PLUGINS", "kdbench_plugins.datasets.espeak")
    assert "espeak" in make_registry().names("datasets")
    monkeypatch.setattr("kdbench.cli.app.get_registry", make_registry)
    result = CliRunner().invoke(main, ["list", "datasets"])
    assert result.exit_code == 0, result.output
    assert "espeak" in result.output
