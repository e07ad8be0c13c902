"""The results store under bad conditions: opened read-only it never creates, changes or
migrates a file; a file that is not a whole store is named, never written; a write that
cannot complete (a full disk) is rolled back whole."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
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


def test_reading_a_store_no_run_has_open_leaves_its_folder_as_it_was(tmp_path: Path) -> None:
    """A WAL reader on disk used to leave `-shm` and `-wal` beside the store it read: a
    `kdbench leaderboard` on a committed store left two untracked files in the clone."""
    path = a_store(tmp_path / "results.db")
    before = fingerprint(path)
    store = Store(path, read_only=True)
    assert store.statuses(["trial0001", "trial0002"]) == {"trial0001": "done", "trial0002": "done"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.db"]
    store.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.db"]
    assert fingerprint(path) == before


def test_a_reader_sees_what_a_run_that_has_the_store_open_wrote_last(tmp_path: Path) -> None:
    """While a run has the store open its newest rows are in the `-wal` file, not yet in
    the store file: a reader (`kdbench status` during a run) must read through it."""
    path = a_store(tmp_path / "results.db", trials=1)
    run = Store(path)
    run.record(fake_outcome(1))
    run.mark_running("trial0002", os.getpid(), "host", time.time())
    assert (tmp_path / "results.db-wal").stat().st_size > 0
    reader = Store(path, read_only=True)
    assert reader.statuses(["trial0001"]) == {"trial0001": "done"}
    assert list(reader.running()["trial_id"]) == ["trial0002"]
    with pytest.raises(KdbenchError, match="rolled back"):
        reader.record(fake_outcome(5))
    reader.close()
    run.close()


AS_NOBODY = """
import os, sys
from kdbench.errors import KdbenchError
from kdbench.run.store import Store
if os.geteuid() == 0:  # root writes anywhere: become nobody, after the imports
    os.setgid(65534)
    os.setuid(65534)
assert not os.access(sys.argv[1], os.W_OK), "the folder is writable: nothing is tested"
try:
    print({})
except KdbenchError as exc:
    print("error:", exc)
"""
"""Run by `_in_a_folder_nobody_may_write`: prints what its expression gives, or the error."""

READ_IN_A_LOCKED_FOLDER = 'Store(sys.argv[2], read_only=True).statuses(["trial0001", "trial0002"])'
WRITE_IN_A_LOCKED_FOLDER = 'Store(sys.argv[2]) and "opened for writing"'


def _in_a_folder_nobody_may_write(folder: Path, store: Path, expression: str) -> str:
    """What `expression` gives about `store`, run by a process that cannot write `folder`:
    as root, a child that drops to `nobody`; otherwise the folder is made read-only for
    the call."""
    folder.chmod(0o755)  # under /tmp itself, so that nobody can reach it (pytest's are 0700)
    if os.geteuid() != 0:
        folder.chmod(0o555)
    try:
        done = subprocess.run(
            [sys.executable, "-c", AS_NOBODY.format(expression), str(folder), str(store)],
            capture_output=True, text=True, timeout=120,
        )
    finally:
        folder.chmod(0o755)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_a_store_in_a_folder_the_reader_cannot_write_still_reads(tmp_path: Path) -> None:
    """A WAL reader makes an index file beside the store; where it cannot (a read-only
    medium, a colleague's shared folder) every read used to fail as "not a kdbench results
    store (attempt to write a readonly database)"."""
    folder = Path(tempfile.mkdtemp(prefix="kdbench-locked-"))
    try:
        path = a_store(folder / "results.db")
        (folder / "results.db").chmod(0o644)
        before = fingerprint(path)
        assert _in_a_folder_nobody_may_write(folder, path, READ_IN_A_LOCKED_FOLDER) == "{'trial0001': 'done', 'trial0002': 'done'}"
        assert fingerprint(path) == before
        assert sorted(p.name for p in folder.iterdir()) == ["results.db"]
        # a -wal file beside it holds writes the file lacks: said, not silently skipped
        (folder / "results.db-wal").write_bytes(b"x" * 32)
        (folder / "results.db-wal").chmod(0o644)
        said = _in_a_folder_nobody_may_write(folder, path, READ_IN_A_LOCKED_FOLDER)
        assert said.startswith(f"error: {path}: its folder is read-only and results.db-wal")
        # a store the reader may not read at all is said to be that, not "not a store"
        (folder / "results.db-wal").unlink()
        path.chmod(0o000)
        said = _in_a_folder_nobody_may_write(folder, path, READ_IN_A_LOCKED_FOLDER)
        assert said == f"error: {path}: this user may not read it (its permissions)"
    finally:
        shutil.rmtree(folder)


def test_a_run_into_a_folder_it_may_not_write_says_so_before_sqlite_does(tmp_path: Path) -> None:
    """SQLite failed deep in the first write: "unable to open database file" as a
    traceback for a new store, "not a kdbench results store (attempt to write a readonly
    database)" for an existing one."""
    folder = Path(tempfile.mkdtemp(prefix="kdbench-locked-"))
    try:
        new = folder / "new.db"
        said = _in_a_folder_nobody_may_write(folder, new, WRITE_IN_A_LOCKED_FOLDER)
        assert said == (
            f"error: {new}: this user may not write its folder {folder}; "
            "a run records its trials there; --results names another store"
        )
        existing = a_store(folder / "results.db")
        existing.chmod(0o644)
        said = _in_a_folder_nobody_may_write(folder, existing, WRITE_IN_A_LOCKED_FOLDER)
        assert said.startswith(f"error: {existing}: this user may not write its folder")
        assert not new.exists()
    finally:
        shutil.rmtree(folder)


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
