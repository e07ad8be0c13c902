"""The procedural dataset: noises, mixing, determinism, identity, caching, rooms, the
articulated speech of generator 3, and that the metrics behave on it as on real speech."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kdbench_plugins.datasets.procedural import generate, plugin, room, speech
from kdbench_plugins.datasets.procedural.noise import NOISE_TYPES, make_noise, mix_at_snr
from kdbench_plugins.datasets.procedural.plugin import ProceduralDataset
from kdbench_plugins.datasets.procedural.speech import SAMPLE_RATE, draw_talker, synthesize
from pesq import pesq
from pystoi import stoi
from scipy import signal

from kdbench.api import ConfigError, PreparedDataset, resolve_params
from kdbench.testing import prepare_dataset

SMALL: dict[str, Any] = {
    "n_train": 4,
    "n_valid": 2,
    "n_test": 4,
    "seconds": 1.5,
    "talkers_train": 3,
    "talkers_valid": 2,
    "talkers_test": 2,
}


def prepare(cache: Path, **overrides: Any) -> PreparedDataset:
    return prepare_dataset(ProceduralDataset(), {**SMALL, **overrides}, cache)


def settings_of(**overrides: Any) -> generate.CorpusSettings:
    params = {**SMALL, **overrides}
    return plugin.corpus_settings(resolve_params("procedural", ProceduralDataset.params, params))


def snr_of(clean: np.ndarray, noisy: np.ndarray) -> float:
    clean = clean.astype(np.float64)
    noise = noisy.astype(np.float64) - clean
    return float(10.0 * np.log10(np.sum(clean**2) / np.sum(noise**2)))


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> PreparedDataset:
    return prepare(tmp_path_factory.mktemp("procedural"))


@pytest.mark.parametrize("kind", NOISE_TYPES)
def test_each_noise_type_is_finite_unit_rms_and_of_the_right_length(kind: str) -> None:
    n = SAMPLE_RATE + 37
    noise = make_noise(kind, np.random.default_rng(1), n)
    assert noise.shape == (n,)
    assert np.all(np.isfinite(noise))
    assert np.sqrt(np.mean(noise**2)) == pytest.approx(1.0, rel=1e-6)


@pytest.mark.parametrize("kind", ["white", "babble", "nonstationary"])
@pytest.mark.parametrize("snr", [-5.0, 2.5, 20.0])
def test_mix_hits_the_requested_snr(kind: str, snr: float) -> None:
    rng = np.random.default_rng(2)
    clean = synthesize(draw_talker(rng, "t"), rng, 1.0)
    noisy = mix_at_snr(clean, make_noise(kind, rng, clean.size), snr)
    assert snr_of(clean, noisy) == pytest.approx(snr, abs=0.1)


def test_utterances_carry_their_metadata_and_the_stored_snr(small: PreparedDataset) -> None:
    assert small.sample_rate == SAMPLE_RATE
    assert {k: len(v) for k, v in small.splits.items()} == {"train": 4, "valid": 2, "test": 4}
    dry = 0
    for split, utterances in small.splits.items():
        for utterance in utterances:
            meta = utterance.meta
            assert meta["split"] == split
            assert meta["noise"] in NOISE_TYPES
            assert meta["snr_db"] in (-5.0, 0.0, 5.0, 10.0, 15.0, 20.0)
            assert isinstance(meta["talker"], str)
            assert utterance.clean.dtype == utterance.noisy.dtype == np.float32
            assert utterance.clean.shape == utterance.noisy.shape == (int(1.5 * SAMPLE_RATE),)
            peak = max(np.abs(utterance.clean).max(), np.abs(utterance.noisy).max())
            assert peak == pytest.approx(generate.PEAK, rel=1e-5)
            assert np.all(np.abs(utterance.clean) > 0)  # the floor, not digital silence
            # In a room the SNR is of the reverberant speech, which the target (direct path
            # and early reflections) is not; a dry utterance's target is what was mixed.
            if meta.get("rt60_s") is None:
                dry += 1
                assert snr_of(utterance.clean, utterance.noisy) == pytest.approx(
                    meta["snr_db"], abs=0.1
                )
    assert dry > 0


def test_generation_is_bit_identical_and_follows_the_seed(tmp_path: Path) -> None:
    first = prepare(tmp_path / "a")
    second = prepare(tmp_path / "b")
    other = prepare(tmp_path / "c", seed=1)
    assert first.identity == second.identity != other.identity
    for split in first.splits:
        for x, y, z in zip(first.splits[split], second.splits[split], other.splits[split]):
            assert np.array_equal(x.clean, y.clean) and np.array_equal(x.noisy, y.noisy)
            assert x.meta == y.meta
            assert not np.array_equal(x.clean, z.clean)


def test_worker_count_and_sharding_do_not_change_the_corpus(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = settings_of()
    alone = generate.generate_corpus(settings, workers=1)
    monkeypatch.setattr(generate, "SHARD_SIZE", 2)
    pooled = generate.generate_corpus(settings, workers=2)
    for split in generate.SPLITS:
        assert np.array_equal(alone[split].clean, pooled[split].clean)
        assert np.array_equal(alone[split].noisy, pooled[split].noisy)
        assert alone[split].meta == pooled[split].meta


@pytest.mark.parametrize("generator", [2, 3])
@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("n_train", 5), ("n_valid", 3), ("n_test", 5), ("seconds", 1.25),
        ("talkers_train", 4), ("talkers_valid", 3), ("talkers_test", 3),
        ("snrs", [0.0, 5.0]), ("seed", 7), ("noises", ["white", "pink"]),
    ],
)
def test_identity_changes_with_every_setting(generator: int, key: str, value: Any) -> None:
    base = plugin.identity(settings_of(generator=generator))
    changed = plugin.identity(settings_of(generator=generator, **{key: value}))
    assert len(base) == 12 and changed != base


def test_identity_follows_the_generator_and_its_rooms() -> None:
    classic, articulated = (plugin.identity(settings_of(generator=g)) for g in (2, 3))
    assert classic != articulated
    assert plugin.identity(settings_of(generator=3, rooms=0.2)) != articulated
    assert plugin.identity(settings_of(generator=2, rooms=0.2)) == classic, "2 has no rooms"


def test_generator_2_keeps_the_identity_it_had_before_versions_were_selectable() -> None:
    """Its corpora, caches and stored results (the published leaderboard's corpus is
    11a0838d15a9) stay valid: generator 2's settings serialise as they always did."""
    assert plugin.identity(settings_of(generator=2)) == "33519f9c064e"
    defaults = resolve_params("procedural", ProceduralDataset.params, {"generator": 2})
    assert plugin.identity(plugin.corpus_settings(defaults)) == "11a0838d15a9"


def test_splits_have_disjoint_talkers(small: PreparedDataset) -> None:
    ids = {s: {u.meta["talker"] for u in us} for s, us in small.splits.items()}
    assert not ids["train"] & ids["valid"] and not ids["train"] & ids["test"]
    assert not ids["valid"] & ids["test"]
    settings = settings_of()
    voices = [
        {dataclasses.replace(t, id="") for t in generate.split_talkers(settings, split)}
        for split in generate.SPLITS
    ]
    assert sum(map(len, voices)) == len(set.union(*voices))


def test_second_prepare_loads_the_cache_without_generating(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = prepare(tmp_path)
    files = sorted(tmp_path.glob("procedural-*/*"))
    mtimes = [f.stat().st_mtime_ns for f in files]

    def fail(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the corpus was generated again")

    monkeypatch.setattr(generate, "generate_corpus", fail)
    again = prepare(tmp_path)
    assert again.identity == first.identity
    assert [f.stat().st_mtime_ns for f in files] == mtimes
    built = [p.name for p in tmp_path.iterdir() if p.suffix != ".lock"]  # the build's file lock
    assert built == [f"procedural-{first.identity}"]
    assert np.array_equal(again.splits["test"][0].noisy, first.splits["test"][0].noisy)


def test_bad_settings_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="seconds"):
        prepare(tmp_path, seconds=0.5)
    with pytest.raises(ConfigError, match="noises"):
        prepare(tmp_path, noises=["rain"])
    with pytest.raises(ConfigError, match="snrs"):
        prepare(tmp_path, snrs=["loud"])
    with pytest.raises(ConfigError, match="rooms"):
        prepare(tmp_path, generator=3, rooms=1.5)
    with pytest.raises(ConfigError, match="generator: 4 is not one of: 2, 3"):
        prepare(tmp_path, generator=4)


def schroeder_rt60(response: np.ndarray) -> float:
    """RT60 from the energy decay curve's -5 to -25 dB span (T20), as ISO 3382 does."""
    decay = np.cumsum(response[::-1] ** 2)[::-1]
    decay_db = 10.0 * np.log10(decay / decay[0])
    first, last = np.argmax(decay_db <= -5.0), np.argmax(decay_db <= -25.0)
    return 3.0 * (last - first) / SAMPLE_RATE


@pytest.mark.parametrize(("rt60", "drr_db"), [(0.3, 0.0), (0.7, 9.0)])
def test_a_rooms_response_decays_at_its_rt60_below_a_direct_path_at_its_drr(
    rt60: float, drr_db: float
) -> None:
    response = room.impulse_response(room.Room(rt60, drr_db), np.random.default_rng(3))
    assert response[0] == 1.0
    assert 10.0 * np.log10(1.0 / np.sum(response[1:] ** 2)) == pytest.approx(drr_db, abs=1e-6)
    low = signal.sosfilt(signal.butter(4, 1000.0, fs=SAMPLE_RATE, output="sos"), response[1:])
    assert schroeder_rt60(low) == pytest.approx(rt60, rel=0.2)


def test_the_target_in_a_room_is_the_direct_path_and_first_50_ms() -> None:
    click = np.zeros(SAMPLE_RATE)
    click[100] = 1.0
    chosen = room.Room(0.5, 3.0)
    wet, early = room.reverberate(click, chosen, np.random.default_rng(4))
    response = room.impulse_response(chosen, np.random.default_rng(4))
    end = 100 + int(room.EARLY_SECONDS * SAMPLE_RATE)
    assert np.allclose(wet[100:100 + len(response)], response, atol=1e-9)
    assert np.allclose(early[100:end - 80], wet[100:end - 80], atol=1e-9)
    assert np.allclose(early[end:], 0.0, atol=1e-9) and np.sum(wet[end:] ** 2) > 0.05


def test_rooms_reverberate_the_mixture_not_the_target(tmp_path: Path) -> None:
    """In a room the mixture holds the late tail and the target does not, so noisy - clean
    is more than the noise; dry utterances still hit their SNR exactly."""
    wet = prepare(tmp_path / "wet", generator=3, rooms=1.0, snrs=[20.0])
    dry = prepare(tmp_path / "dry", generator=3, rooms=0.0, snrs=[20.0])
    for utterance in wet.splits["train"]:
        low, high = room.RT60_SECONDS
        assert low <= utterance.meta["rt60_s"] <= high
        assert snr_of(utterance.clean, utterance.noisy) < 20.0 - 1.0
    for utterance in dry.splits["train"]:
        assert utterance.meta["rt60_s"] is None and utterance.meta["drr_db"] is None
        assert snr_of(utterance.clean, utterance.noisy) == pytest.approx(20.0, abs=0.1)


def vowel_levels_db(style: speech.Style, seed: int) -> np.ndarray:
    """The level of every vowel of a few utterances, in dB."""
    levels = []
    for k in range(6):
        talker = draw_talker(np.random.default_rng([seed, k]), "t")
        audio = synthesize(talker, np.random.default_rng([seed, k, 1]), 3.0, style)
        plan = speech._plan(talker, np.random.default_rng([seed, k, 1]), 3.0, style)
        for segment in plan.segments:
            start = int(segment.start * SAMPLE_RATE)
            stop = min(int((segment.start + segment.duration) * SAMPLE_RATE), len(audio))
            if segment.phone.voicing == 1.0 and stop - start > 400:
                levels.append(10.0 * np.log10(np.mean(audio[start:stop] ** 2)))
    return np.array(levels)


def test_articulated_speech_varies_its_syllable_levels_where_classic_speech_does_not() -> None:
    classic = vowel_levels_db(speech.CLASSIC, 5)
    articulated = vowel_levels_db(speech.ARTICULATED, 5)
    assert np.std(articulated) > np.std(classic) + 1.5


def scores(dataset: PreparedDataset) -> tuple[float, float]:
    pairs = [(u.clean.astype(np.float64), u.noisy.astype(np.float64))
             for u in dataset.splits["test"]]
    wb = [pesq(SAMPLE_RATE, clean, noisy, "wb") for clean, noisy in pairs]
    intelligibility = [stoi(clean, noisy, SAMPLE_RATE) for clean, noisy in pairs]
    return float(np.mean(wb)), float(np.mean(intelligibility))


def test_pesq_and_stoi_rise_with_snr(tmp_path: Path) -> None:
    """The same speech and noise instances at three SNRs: only the noise level differs."""
    means = [
        scores(prepare(tmp_path, n_train=0, n_valid=0, n_test=6, seconds=2.0, snrs=[snr]))
        for snr in (-5.0, 5.0, 20.0)
    ]
    wb, intelligibility = zip(*means)
    assert wb[0] < wb[1] < wb[2]
    assert intelligibility[0] < intelligibility[1] < intelligibility[2]


@pytest.mark.parametrize("kind", NOISE_TYPES)
def test_metrics_accept_every_test_utterance(tmp_path: Path, kind: str) -> None:
    dataset = prepare(tmp_path, n_train=0, n_valid=0, n_test=2, noises=[kind], snrs=[-5, 20])
    wb, intelligibility = scores(dataset)
    assert np.isfinite(wb) and np.isfinite(intelligibility)


def test_registered_through_the_entry_point() -> None:
    from kdbench.plugin.registry import make_registry

    assert isinstance(make_registry().get("datasets", "procedural"), ProceduralDataset)
