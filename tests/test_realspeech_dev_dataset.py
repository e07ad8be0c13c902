"""The shipped real-speech dev set: real speech that may choose a recipe because it never
reports one. Its use rests on three properties tested here: none of its talkers or source
files is the test set's, none of its noise instances is the test set's, and it can be used
only as a dev set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from kdbench_plugins.datasets.realspeech import shipped
from kdbench_plugins.datasets.realspeech.mixtures import NOISE_CHOICES, noise_for
from kdbench_plugins.datasets.realspeech.plugin import RealSpeechDataset, RealSpeechDevDataset

from kdbench.api import ConfigError, PreparedDataset
from kdbench.cli import main
from kdbench.testing import prepare_dataset

DEV = json.loads((shipped.DEV_DIR / "MANIFEST.json").read_text())
TEST = json.loads((shipped.DATA_DIR / "MANIFEST.json").read_text())


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> PreparedDataset:
    return prepare_dataset(RealSpeechDevDataset(), {}, tmp_path_factory.mktemp("dev"))


def test_manifest_checksums_and_licence_notices_hold() -> None:
    listed = {entry["file"] for entry in DEV["utterances"]}
    assert listed == {f"clean/{p.name}" for p in (shipped.DEV_DIR / "clean").iterdir()}
    for entry in DEV["utterances"]:
        assert shipped.file_sha256(shipped.DEV_DIR / entry["file"]) == entry["sha256"]
        assert 1.0 <= entry["seconds"] <= 6.0, entry["id"]
        assert entry["licence"] and entry["licence_files"], entry["id"]
        for notice in entry["licence_files"]:
            assert "Public Domain" in (text := (shipped.DEV_DIR / notice).read_text()) or len(text) > 200, notice
    assert len({e["speaker"] for e in DEV["utterances"]}) >= 4


def test_no_talker_or_source_file_is_the_test_sets() -> None:
    assert not set(DEV["speakers"]) & set(TEST["speakers"])
    def sources(manifest: dict) -> set[tuple[str, str]]:
        return {(e["source"]["archive_sha256"], e["source"]["path"]) for e in manifest["utterances"]}
    assert not sources(DEV) & sources(TEST)
    dev_audio = {e["sha256"] for e in DEV["utterances"]}
    assert not dev_audio & {e["sha256"] for e in TEST["utterances"]}


def test_it_prepares_a_valid_split_alone_and_refuses_the_others(
    prepared: PreparedDataset,
) -> None:
    assert list(prepared.splits) == ["valid"]
    assert len(prepared.splits["valid"]) == 2 * len(NOISE_CHOICES) * 4
    for split in ("train", "test"):
        with pytest.raises(ConfigError, match="dev set.*report on realspeech"):
            prepared.splits[split]
    assert {u.meta["split"] for u in prepared.splits["valid"]} == {"valid"}
    test_set = prepare_dataset(RealSpeechDataset(), {}, Path("unused"))
    assert prepared.identity != test_set.identity


def test_no_noise_instance_is_the_test_sets() -> None:
    """The same mixture index and seed give another noise than the test set's, for every
    noise type: the split is part of every draw's seed."""
    dev = shipped.load_recordings(shipped.DEV_DIR)
    test = shipped.load_recordings(shipped.DATA_DIR)
    n = 16000
    for kind in NOISE_CHOICES:
        for index in range(3):
            ours, origin = noise_for(kind, index, dev[0], dev, 0, n, "valid")
            theirs, _ = noise_for(kind, index, test[0], test, 0, n, "test")
            assert not np.allclose(ours, theirs), (kind, index)
            if kind == "real_babble":
                assert set(origin["babble_speakers"]) <= set(DEV["speakers"])


def test_mixtures_are_bit_identical_across_two_preparations(
    prepared: PreparedDataset, tmp_path: Path
) -> None:
    again = prepare_dataset(RealSpeechDevDataset(), {}, tmp_path)
    assert again.identity == prepared.identity
    for x, y in zip(prepared.splits["valid"], again.splits["valid"], strict=True):
        assert x.id == y.id and x.meta == y.meta
        assert x.noisy.tobytes() == y.noisy.tobytes()


@pytest.mark.parametrize("key", ["run.datasets", "run.test_datasets"])
def test_a_grid_refuses_it_for_training_and_for_reporting(key: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, [
        "run", "--dry-run", "--results", str(tmp_path / "r.db"),
        "--set", f"{key}=realspeech_dev",
    ])
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert f"{key}: realspeech_dev" in message and "missing split" in message
    assert "Traceback" not in result.output
