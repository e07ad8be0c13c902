"""The results store under bad conditions: opened read-only it never creates, changes or
migrates a file; a file that is not a whole store is named, never written; a write that
cannot complete (a full disk) is rolled back whole."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
import torch
from stores import a_store, a_version_1_store, fake_outcome, fingerprint

from kdbench.errors import KdbenchError
from kdbench.files.cache import save_atomically
from kdbench.run.store import SCHEMA_VERSION, Store


def content(connection: sqlite3.Connection) -> list[str]:
    return list(connection.iterdump())


def test_opening_a_missing_store_read_only_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "typo" / "results.db"
    with pytest.raises(KdbenchError, match=rf"{path}: no results store there"):
        Store(path, read_only=True)
    assert list(tmp_path.iterdir()) == []


def test_a_read_only_store_reads_and_cannot_write(tmp_path: Path) -> None:
    path = a_store(tmp_path / "results.db")
    before = fingerprint(path)
    store = Store(path, read_only=True)
    assert store.statuses(["trial0001", "nope"]) == {"trial0001": "done"}
    assert len(store.scores(["trial0002"])) == 20 and store.running().empty
    with pytest.raises(KdbenchError, match="rolled back"):
        store.record(fake_outcome(9))
    store.close()
    assert fingerprint(path) == before


def test_an_older_store_is_read_through_a_migrated_copy_and_left_as_it_was(
    tmp_path: Path,
) -> None:
    path = a_version_1_store(tmp_path / "v1.db")
    before = fingerprint(path)
    store = Store(path, read_only=True)
    assert store.schema_version() == SCHEMA_VERSION
    assert store.statuses(["old"]) == {"old": "done"} and store.running().empty
    store.close()
    assert fingerprint(path) == before
    with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 1


def _foreign_database(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE photos (name TEXT)")
    db.close()


def _newer_store(path: Path) -> None:
    a_store(path)
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()


def _truncated_store(path: Path) -> None:
    a_store(path, trials=40)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


BAD_FILES = {
    "junk": (lambda path: path.write_bytes(b"these are not the rows you are looking for" * 50),
             "not a kdbench results store.*file is not a database"),
    "foreign": (_foreign_database, "not a kdbench results store.*without kdbench's tables"),
    "truncated": (_truncated_store, "not a kdbench results store"),
    "newer": (_newer_store, "newer than this kdbench understands.*upgrade kdbench"),
}


@pytest.mark.parametrize("read_only", [True, False], ids=["read-only", "writable"])
@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_a_file_that_is_not_a_whole_store_is_named_and_left_alone(
    tmp_path: Path, kind: str, read_only: bool
) -> None:
    make, message = BAD_FILES[kind]
    path = tmp_path / f"{kind}.db"
    make(path)
    before = fingerprint(path)
    with pytest.raises(KdbenchError, match=rf"{path}: .*{message}"):
        Store(path, read_only=read_only)
    assert fingerprint(path) == before


def test_an_empty_file_is_no_store_to_read(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.write_bytes(b"")
    with pytest.raises(KdbenchError, match="not a kdbench results store.*empty database"):
        Store(path, read_only=True)
    assert path.read_bytes() == b""


# --------------------------------------------------------------------------- full disk


def test_a_write_that_hits_a_full_disk_is_rolled_back_whole(tmp_path: Path) -> None:
    """SQLite's page limit fails a write the way a full disk does (SQLITE_FULL)."""
    path = a_store(tmp_path / "results.db")
    store = Store(path)
    store.mark_running("trial0100", os.getpid(), "host", time.time())
    before = content(store.connection)
    pages = store.connection.execute("PRAGMA page_count").fetchone()[0]
    store.connection.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(KdbenchError, match=rf"{path}: a write failed and was rolled back.*full"):
        store.record(fake_outcome(100, scores=5000))
    assert content(store.connection) == before
    store.close()
    assert content(Store(path, read_only=True).connection) == before


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 256 KiB tmpfs, where a real write runs out of space; skipped where mounting is not
    permitted (not root, no mount, a container without the capability)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root and mount(8)")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
        capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "--lazy", str(mount)], check=False)


def test_on_a_full_disk_the_store_keeps_every_whole_trial_and_no_part_of_another(
    small_disk: Path,
) -> None:
    path = small_disk / "results.db"
    store = Store(path)
    recorded = content(store.connection)
    with pytest.raises(KdbenchError, match="rolled back.*full"):
        for index in range(10_000):
            store.record(fake_outcome(index, scores=200))
            recorded = content(store.connection)
    assert content(store.connection) == recorded
    store.close()
    assert content(Store(path, read_only=True).connection) == recorded


def test_on_a_full_disk_a_cache_entry_keeps_its_old_content(small_disk: Path) -> None:
    path = small_disk / "entry.pt"
    save_atomically(torch.arange(10), path)
    before = path.read_bytes()
    with pytest.raises((OSError, RuntimeError)):  # torch's writer may wrap the OSError
        save_atomically(torch.zeros(1_000_000), path)
    assert path.read_bytes() == before
    assert [p.name for p in small_disk.iterdir()] == ["entry.pt"]
