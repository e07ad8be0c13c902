"""Caches that heal and writes that cannot tear: a cache entry that fails its check is set
aside (renamed, never deleted) and rebuilt once with a warning, also when several workers
find it at once; a write that fails midway (a full disk) leaves what was there before."""

from __future__ import annotations

import errno
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from kdbench_plugins.datasets.procedural import plugin as procedural

from kdbench.api import CorruptFile, ModelSpec, PreparedDataset, Utterance
from kdbench.config import TEACHER_PARAMS
from kdbench.deploy.checkpoints import load_checkpoint, weights_crc32
from kdbench.errors import KdbenchError
from kdbench.files.cache import load_or_build, save_atomically, staged_directory, write_atomically
from kdbench.plugin.registry import get_registry
from kdbench.train import teacher as teacher_module
from kdbench.train.crops import CropSampler
from kdbench.train.teacher_outputs import TeacherOutputs
from kdbench.testing import prepare_dataset

TINY_CORPUS = {"n_train": 2, "n_valid": 1, "n_test": 1, "seconds": 1.0}
RATE = 16000
SPEC = ModelSpec("unet", {"channels": [4, 8]})
SETTINGS: dict[str, Any] = {
    **{name: param.default for name, param in TEACHER_PARAMS.items() if name != "seeds"},
    "seed": 0,
    "steps": 2,
    "batch_size": 2,
    "crop_seconds": 0.5,
    "valid_every": 2,
}


def tiny_dataset() -> PreparedDataset:
    rng = np.random.default_rng(0)
    t = np.arange(RATE) / RATE
    utterances = []
    for index in range(3):
        clean = (0.3 * np.sin(2 * np.pi * (150 + 30 * index) * t)).astype(np.float32)
        noisy = (clean + 0.1 * rng.standard_normal(clean.shape)).astype(np.float32)
        utterances.append(Utterance(f"u{index}", clean, noisy))
    splits = {"train": utterances, "valid": utterances[:1], "test": utterances[:1]}
    return PreparedDataset("tiny", "tiny0", RATE, splits)


def fetch_teacher(cache: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    return teacher_module.get_teacher(get_registry(), SPEC, tiny_dataset(), SETTINGS, cache)


def state_crc(model: torch.nn.Module) -> int:
    return weights_crc32(SPEC.to_json(), model.state_dict())


def counting(train: Callable[..., Any], log: Path, pause: float = 0.0) -> Callable[..., Any]:
    """`train`, appending a line to `log` (then waiting `pause` seconds, so that racing
    workers overlap) each time it is called."""

    def counted(*args: Any, **kwargs: Any) -> Any:
        with open(log, "a") as stream:
            stream.write(f"{threading.get_ident()}\n")
        time.sleep(pause)
        return train(*args, **kwargs)

    return counted


def _teacher_file(cache: Path) -> Path:
    (path,) = (cache / "teachers").glob("*.pt")
    return path


def _set_aside(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f"{path.name}.corrupt-*"))


@pytest.fixture(scope="module")
def teacher_cache(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, bytes]:
    """A cache holding the tiny teacher, its weights' CRC and the file's bytes."""
    cache = tmp_path_factory.mktemp("teacher-cache")
    model, _ = fetch_teacher(cache)
    return cache, state_crc(model), _teacher_file(cache).read_bytes()


def _copy_cache(teacher_cache: tuple[Path, int, bytes], tmp_path: Path) -> Path:
    cache, _, original = teacher_cache
    name = _teacher_file(cache).name
    (tmp_path / "teachers").mkdir()
    (tmp_path / "teachers" / name).write_bytes(original)
    return tmp_path


def _flip_a_weight_byte(path: Path, model_bytes: bytes) -> None:
    """Flip one bit inside a stored weight tensor (found by its bytes), where only a
    checksum can notice it."""
    data = bytearray(path.read_bytes())
    at = data.find(model_bytes)
    assert at > 0
    data[at + len(model_bytes) // 2] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["truncated", "bit flip", "empty", "not a checkpoint"])
def test_a_damaged_cached_teacher_is_set_aside_and_trained_again_once(
    teacher_cache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog, damage: str
) -> None:
    cache = _copy_cache(teacher_cache, tmp_path)
    path = _teacher_file(cache)
    original = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(original[: len(original) // 2])
    elif damage == "bit flip":
        weights = load_checkpoint(path)["state_dict"].values()
        _flip_a_weight_byte(path, max(weights, key=torch.numel).numpy().tobytes())
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        torch.save({"something": torch.zeros(3)}, path)
    damaged = path.read_bytes()
    log = tmp_path / "trainings.log"
    monkeypatch.setattr(teacher_module, "train", counting(teacher_module.train, log))

    with caplog.at_level(logging.WARNING, logger="kdbench.files.cache"):
        model, _ = fetch_teacher(cache)

    assert state_crc(model) == teacher_cache[1]  # the same teacher: training is deterministic
    assert len(log.read_text().splitlines()) == 1
    (aside,) = _set_aside(path)
    assert aside.read_bytes() == damaged  # kept as found, for a post-mortem
    assert any(str(path) in record.getMessage() and aside.name in record.getMessage()
               for record in caplog.records)
    again, _ = fetch_teacher(cache)  # the rebuilt entry is used as it is
    assert state_crc(again) == teacher_cache[1]
    assert len(log.read_text().splitlines()) == 1 and len(_set_aside(path)) == 1


def test_workers_that_find_one_damaged_teacher_at_once_train_it_once(
    teacher_cache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    """Threads stand in for worker processes: the file lock is an flock, which belongs to
    an open file, so two threads of one process exclude each other as two processes do."""
    cache = _copy_cache(teacher_cache, tmp_path)
    path = _teacher_file(cache)
    path.write_bytes(path.read_bytes()[:1000])
    log = tmp_path / "trainings.log"
    monkeypatch.setattr(teacher_module, "train", counting(teacher_module.train, log, pause=0.5))
    crcs: list[int] = []
    workers = [
        threading.Thread(target=lambda: crcs.append(state_crc(fetch_teacher(cache)[0])))
        for _ in range(3)
    ]
    with caplog.at_level(logging.WARNING, logger="kdbench.files.cache"):
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
    assert crcs == [teacher_cache[1]] * 3
    assert len(log.read_text().splitlines()) == 1
    assert len(_set_aside(path)) == 1
    assert caplog.text.count("set aside") == 1


def test_an_entry_set_aside_between_the_look_and_the_read_is_waited_for(tmp_path: Path) -> None:
    """The race a grid's workers run into (and CI once did, in the test above): one worker
    sees the entry, another sets it aside before the first reads it. The first then waits
    on the lock for the rebuilt entry instead of failing with 'no such checkpoint'."""
    path = tmp_path / "entry.bin"
    path.write_bytes(b"damaged")
    reads: list[bool] = []

    def load(entry: Path) -> bytes:
        reads.append(entry.exists())
        if len(reads) == 1:  # another worker sets the entry aside right now
            entry.rename(entry.with_name("entry.bin.corrupt"))
            raise KdbenchError(f"{entry}: no such checkpoint")
        return entry.read_bytes()

    def build() -> None:
        path.write_bytes(b"rebuilt")

    assert load_or_build(path, load, build, tmp_path / "entry.lock") == b"rebuilt"
    assert reads == [True, True]


def test_a_failing_read_of_an_entry_that_is_still_there_is_not_hidden(tmp_path: Path) -> None:
    path = tmp_path / "entry.bin"
    path.write_bytes(b"x")

    def load(entry: Path) -> bytes:
        raise KdbenchError(f"{entry}: made by a newer kdbench")

    with pytest.raises(KdbenchError, match="made by a newer kdbench"):
        load_or_build(path, load, lambda: None, tmp_path / "entry.lock")


# --------------------------------------------------------------------------- teacher outputs


def _teacher_and_sampler() -> tuple[torch.nn.Module, CropSampler]:
    torch.manual_seed(0)
    teacher = get_registry().get("models", SPEC.family).build(SPEC.params).eval()
    sampler = CropSampler(list(tiny_dataset().splits["train"]), 4000, 2, seed=0, grid_samples=2000)
    return teacher, sampler


@pytest.mark.parametrize("damage", ["truncated", "wrong shape"])
def test_a_damaged_teacher_output_table_is_set_aside_and_computed_again(
    tmp_path: Path, caplog, damage: str
) -> None:
    teacher, sampler = _teacher_and_sampler()
    keys, reads = [(0, 2000), (1, 0)], frozenset({"bottleneck"})
    first = TeacherOutputs(teacher, tmp_path).outputs(sampler, keys, reads)
    (table,) = tmp_path.glob("*/bottleneck/1.pt")
    if damage == "truncated":
        table.write_bytes(table.read_bytes()[:300])
    else:
        save_atomically(torch.zeros(2, 3), table)
    other_process = TeacherOutputs(teacher, tmp_path)
    with caplog.at_level(logging.WARNING, logger="kdbench.files.cache"):
        again = other_process.outputs(sampler, keys, reads)
    assert torch.equal(again.latents["bottleneck"], first.latents["bottleneck"])
    assert other_process.computed == len(sampler.starts(1))  # that utterance's rows only
    assert len(_set_aside(table)) == 1 and "set aside" in caplog.text


# --------------------------------------------------------------------------- corpus


def _corpus_folder(cache: Path) -> Path:
    (folder,) = [path for path in cache.glob("procedural-*") if path.is_dir()
                 and ".corrupt-" not in path.name]
    return folder


@pytest.mark.parametrize("damage", ["truncated split", "bit flip", "other settings", "missing"])
def test_a_damaged_corpus_is_set_aside_and_generated_again(
    tmp_path: Path, caplog, damage: str
) -> None:
    dataset = procedural.ProceduralDataset()
    first = prepare_dataset(dataset, TINY_CORPUS, tmp_path)
    folder = _corpus_folder(tmp_path)
    split = folder / "train.npz"
    if damage == "truncated split":
        split.write_bytes(split.read_bytes()[:5000])
    elif damage == "bit flip":
        data = bytearray(split.read_bytes())
        data[len(data) // 2] ^= 0x01
        split.write_bytes(bytes(data))
    elif damage == "other settings":
        settings = json.loads((folder / "settings.json").read_text())
        settings["seed"] = 7
        (folder / "settings.json").write_text(json.dumps(settings))
    else:
        (folder / "test.npz").unlink()
    with caplog.at_level(logging.WARNING, logger="kdbench.files.cache"):
        again = prepare_dataset(dataset, TINY_CORPUS, tmp_path)
    assert again.identity == first.identity
    for name, utterances in first.splits.items():
        for a, b in zip(utterances, again.splits[name], strict=True):
            assert np.array_equal(a.noisy, b.noisy) and a.meta == b.meta
    assert len(_set_aside(folder)) == 1 and "set aside" in caplog.text


def test_a_corpus_that_fails_its_check_right_after_generation_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset = procedural.ProceduralDataset()
    prepare_dataset(dataset, TINY_CORPUS, tmp_path)
    (_corpus_folder(tmp_path) / "valid.npz").write_bytes(b"junk")
    monkeypatch.setattr(procedural, "_save_split", lambda path, audio: path.write_bytes(b"junk"))
    with pytest.raises(CorruptFile, match=r"\.npz: unreadable corpus split.*right after it was built"):
        prepare_dataset(dataset, TINY_CORPUS, tmp_path)


# --------------------------------------------------------------------------- full disk


def _disk_full_after(half: bytes):
    def write(stream) -> None:
        stream.write(half)
        raise OSError(errno.ENOSPC, "No space left on device")

    return write


def test_a_write_that_fails_midway_leaves_the_old_file_and_no_debris(tmp_path: Path) -> None:
    path = tmp_path / "entry.pt"
    save_atomically({"version": 1}, path)
    before = path.read_bytes()
    with pytest.raises(OSError, match="No space left"):
        write_atomically(path, _disk_full_after(b"half of version 2"))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entry.pt"]


def test_a_teacher_whose_save_fails_midway_leaves_no_teacher_and_trains_next_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, teacher_cache
) -> None:
    real_save = torch.save

    def disk_full(payload, stream) -> None:
        real_save(payload, stream)
        stream.truncate(stream.tell() // 2)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        fetch_teacher(tmp_path)
    monkeypatch.setattr(torch, "save", real_save)
    assert [p.name for p in (tmp_path / "teachers").iterdir() if not p.name.endswith(".lock")] == []
    model, _ = fetch_teacher(tmp_path)
    assert state_crc(model) == teacher_cache[1]


def test_a_corpus_whose_generation_fails_midway_publishes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = procedural._save_split
    written = []

    def disk_full_on_second(path: Path, audio) -> None:
        if written:
            path.write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(path)
        real(path, audio)

    monkeypatch.setattr(procedural, "_save_split", disk_full_on_second)
    with pytest.raises(OSError, match="No space left"):
        prepare_dataset(procedural.ProceduralDataset(), TINY_CORPUS, tmp_path)
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []
    monkeypatch.setattr(procedural, "_save_split", real)
    assert len(prepare_dataset(procedural.ProceduralDataset(), TINY_CORPUS, tmp_path).splits["train"]) == 2


def test_a_staged_folder_that_fails_is_not_published(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="No space left"), staged_directory(tmp_path / "x") as staging:
        (staging / "a").write_bytes(b"whole")
        write_atomically(staging / "b", _disk_full_after(b"half"))
    assert list(tmp_path.iterdir()) == []
