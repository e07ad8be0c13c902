"""The shipped real-speech test set: data integrity and licences, deterministic mixing,
test-only noise instances, babble from other talkers, full noise×SNR coverage, and the
refusal to train on it."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from kdbench_plugins.datasets.procedural.generate import noise_rng, scaled_pair
from kdbench_plugins.datasets.procedural.noise import NOISE_TYPES, make_noise
from kdbench_plugins.datasets.realspeech import shipped
from kdbench_plugins.datasets.realspeech.mixtures import NOISE_CHOICES, noise_for, real_babble
from kdbench_plugins.datasets.realspeech.plugin import RealSpeechDataset

from kdbench.api import AudioError, ConfigError, PreparedDataset
from kdbench.cli import main
from kdbench.testing import prepare_dataset

MANIFEST = json.loads((shipped.DATA_DIR / "MANIFEST.json").read_text())
DEFAULT_SNRS = (-5.0, 0.0, 5.0, 10.0)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> PreparedDataset:
    return prepare_dataset(RealSpeechDataset(), {}, tmp_path_factory.mktemp("realspeech"))


@pytest.fixture(scope="module")
def recordings() -> dict[str, shipped.CleanRecording]:
    return {r.id: r for r in shipped.load_recordings(shipped.DATA_DIR)}


def test_manifest_checksums_hold_for_every_shipped_file() -> None:
    listed = {entry["file"] for entry in MANIFEST["utterances"]}
    on_disk = {f"clean/{p.name}" for p in (shipped.DATA_DIR / "clean").iterdir()}
    assert listed == on_disk, "every shipped FLAC is in the manifest and vice versa"
    for entry in MANIFEST["utterances"]:
        path = shipped.DATA_DIR / entry["file"]
        assert shipped.file_sha256(path) == entry["sha256"], path
        assert entry["speaker"] in MANIFEST["speakers"]
        assert 1.0 <= entry["seconds"] <= 6.0, entry["id"]


def test_loaded_recordings_are_mono_16k_of_the_listed_length(
    recordings: dict[str, shipped.CleanRecording],
) -> None:
    assert MANIFEST["sample_rate"] == shipped.SAMPLE_RATE == 16000
    for entry in MANIFEST["utterances"]:
        audio = recordings[entry["id"]].audio
        assert audio.dtype == np.float32 and audio.ndim == 1
        assert len(audio) == entry["samples"]
        assert 0.0 < float(np.abs(audio).max()) <= 1.0


def test_licence_notices_exist_for_every_source() -> None:
    sources = {(e["source"]["package"], e["source"]["version"]) for e in MANIFEST["utterances"]}
    assert len(sources) >= 4
    for entry in MANIFEST["utterances"]:
        assert entry["licence"] and entry["licence_files"], entry["id"]
        for notice in entry["licence_files"]:
            text = (shipped.DATA_DIR / notice).read_text()
            assert len(text) > 200, notice
    notices = {n for e in MANIFEST["utterances"] for n in e["licence_files"]}
    for package, version in sources:
        assert any(n.startswith(f"LICENSES/{package}-{version}") for n in notices), package


def test_talkers_are_varied() -> None:
    speakers = MANIFEST["speakers"]
    used = {e["speaker"] for e in MANIFEST["utterances"]}
    assert used == set(speakers)
    assert {speakers[s]["sex"] for s in used} == {"female", "male"}
    assert len(used) >= 6


def test_a_changed_shipped_file_is_refused_naming_it(tmp_path: Path) -> None:
    copy = tmp_path / "realspeech"
    shutil.copytree(shipped.DATA_DIR, copy, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    victim = copy / MANIFEST["utterances"][3]["file"]
    victim.write_bytes(victim.read_bytes()[:-100])
    with pytest.raises(AudioError, match=victim.name):
        shipped.load_recordings(copy)


def test_mixtures_are_bit_identical_across_two_preparations(tmp_path: Path) -> None:
    first = prepare_dataset(RealSpeechDataset(), {}, tmp_path / "a")
    second = prepare_dataset(RealSpeechDataset(), {}, tmp_path / "b")
    assert first.identity == second.identity
    a, b = first.splits["test"], second.splits["test"]
    assert [u.id for u in a] == [u.id for u in b]
    for x, y in zip(a, b):
        assert x.meta == y.meta
        assert x.clean.tobytes() == y.clean.tobytes()
        assert x.noisy.tobytes() == y.noisy.tobytes()
    assert not (tmp_path / "a").exists(), "prepare writes nothing to the cache"


def test_identity_follows_the_mixing_settings(prepared: PreparedDataset, tmp_path: Path) -> None:
    other_seed = prepare_dataset(RealSpeechDataset(), {"seed": 1}, tmp_path)
    fewer = prepare_dataset(RealSpeechDataset(), {"noises": ["pink"]}, tmp_path)
    assert len({prepared.identity, other_seed.identity, fewer.identity}) == 3
    assert [u.noisy.tobytes() for u in other_seed.splits["test"]] != [
        u.noisy.tobytes() for u in prepared.splits["test"]
    ]


def test_each_noise_type_and_snr_appears_at_the_requested_snr(prepared: PreparedDataset) -> None:
    test = prepared.splits["test"]
    cells = [(u.meta["noise"], u.meta["snr_db"]) for u in test]
    assert sorted(set(cells)) == sorted(itertools.product(NOISE_CHOICES, DEFAULT_SNRS))
    assert all(cells.count(cell) == 2 for cell in set(cells))
    for utterance in test:
        clean = utterance.clean.astype(np.float64)
        residual = utterance.noisy.astype(np.float64) - clean
        snr = 10.0 * np.log10(np.sum(clean**2) / np.sum(residual**2))
        assert snr == pytest.approx(utterance.meta["snr_db"], abs=0.01), utterance.id
        assert utterance.meta["split"] == "test"
        assert utterance.meta["sex"] in ("female", "male")


def test_every_utterance_and_talker_is_used(prepared: PreparedDataset) -> None:
    used = {u.meta["clean_id"] for u in prepared.splits["test"]}
    assert used == {e["id"] for e in MANIFEST["utterances"]}
    for cell in itertools.product(NOISE_CHOICES, DEFAULT_SNRS):
        talkers = [u.meta["speaker"] for u in prepared.splits["test"]
                   if (u.meta["noise"], u.meta["snr_db"]) == cell]
        assert len(set(talkers)) == len(talkers), f"{cell}: one talker twice in a cell"


def test_procedural_noise_instances_are_the_test_splits(
    prepared: PreparedDataset, recordings: dict[str, shipped.CleanRecording]
) -> None:
    procedural = [u for u in prepared.splits["test"] if u.meta["noise"] in NOISE_TYPES]
    assert {u.meta["noise"] for u in procedural} == set(NOISE_TYPES)
    for utterance in procedural:
        meta = utterance.meta
        assert meta["noise_source"] == "procedural" and meta["noise_split"] == "test"
        speech = recordings[meta["clean_id"]].audio.astype(np.float64)

        def rebuilt(split: str) -> np.ndarray:
            rng = noise_rng(0, split, meta["noise_index"])
            return scaled_pair(speech, make_noise(meta["noise"], rng, len(speech)),
                               meta["snr_db"])[1]

        assert rebuilt("test").tobytes() == utterance.noisy.tobytes(), utterance.id
        assert rebuilt("train").tobytes() != utterance.noisy.tobytes()


def test_babble_never_contains_the_targets_talker(
    prepared: PreparedDataset, recordings: dict[str, shipped.CleanRecording]
) -> None:
    babbled = [u for u in prepared.splits["test"] if u.meta["noise"] == "real_babble"]
    assert len(babbled) == 2 * len(DEFAULT_SNRS)
    pool = list(recordings.values())
    for utterance in babbled:
        meta = utterance.meta
        used = [recordings[name] for name in meta["babble_utterances"]]
        assert 3 <= len(used) <= 5
        assert sorted({r.speaker for r in used}) == meta["babble_speakers"]
        assert meta["speaker"] not in meta["babble_speakers"], utterance.id
        target = recordings[meta["clean_id"]]
        index = int(utterance.id.split("-")[1])
        noise, origin = noise_for("real_babble", index, target, pool, 0, len(target.audio),
                                  "test")
        assert origin["babble_utterances"] == meta["babble_utterances"]
        noisy = scaled_pair(target.audio.astype(np.float64), noise, meta["snr_db"])[1]
        assert noisy.tobytes() == utterance.noisy.tobytes(), "the metadata names the babble used"


def test_babble_draws_only_from_other_talkers(
    recordings: dict[str, shipped.CleanRecording],
) -> None:
    pool = list(recordings.values())
    target = recordings["cmu-cards-001"]
    for seed in range(20):
        _, used = real_babble(target, pool, np.random.default_rng(seed), 16000)
        assert used and all(r.speaker != target.speaker for r in used)


def test_asking_for_train_or_valid_is_a_clear_error(prepared: PreparedDataset) -> None:
    assert list(prepared.splits) == ["test"]
    for split in ("train", "valid"):
        with pytest.raises(ConfigError, match="test-only.*run.test_datasets"):
            prepared.splits[split]


def test_a_run_that_would_train_on_it_stops_with_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, [
        "run", "--dry-run", "--results", str(tmp_path / "r.db"),
        "--set", "run.datasets=realspeech",
    ])
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert "realspeech is a test-only dataset" in message
    assert "run.test_datasets" in message
    assert "Traceback" not in result.output


def test_the_cli_lists_and_shows_it() -> None:
    listed = CliRunner().invoke(main, ["list", "datasets"])
    assert listed.exit_code == 0 and "realspeech" in listed.output
    shown = CliRunner().invoke(main, ["data", "show", "--set", "run.datasets=realspeech"])
    assert shown.exit_code == 0, shown.output
    assert "realspeech" in shown.output and "test" in shown.output


def test_bad_settings_name_the_key(tmp_path: Path) -> None:
    for params, key in (({"per_cell": 0}, "per_cell"), ({"snrs": []}, "snrs"),
                        ({"noises": []}, "noises"), ({"n_train": 5}, "n_train")):
        with pytest.raises(ConfigError, match=f"dataset.realspeech.{key}"):
            prepare_dataset(RealSpeechDataset(), params, tmp_path)
