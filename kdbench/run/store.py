"""The results store: one SQLite file, one row per trial, one per utterance score.

WAL mode lets several processes write; a trial's row and all its scores are committed in
one transaction, so a killed run leaves whole trials or none. Writers queue on SQLite's
busy timeout and, should a lock still be reported (it can be, when a reader upgrades to a
writer), retry the whole transaction, so concurrent workers never lose an outcome.

The schema is versioned and each upgrade is a numbered migration applied in order on
open. Version 2 adds `running`: trials in flight, written when a worker starts one and
removed in the same transaction that records its outcome, so `kdbench status` can tell a
trial being worked on from one whose run was killed.

Commands that only read (leaderboard, status, denoise, export) open the file read-only
(`Store(path, read_only=True)`): a missing file is an error, never a new empty store, and a
store of an older schema is migrated in an in-memory copy, so the file stays as it was.
Only `kdbench run` creates or migrates a store.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import random
import socket
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from kdbench.errors import KdbenchError
from kdbench.run.trial import RUN_SETTINGS, Outcome, StudentTrial, WithTeacher

SCHEMA_VERSION = 3

MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE trials (
        id TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        status TEXT NOT NULL,
        dataset TEXT NOT NULL,
        dataset_identity TEXT NOT NULL,
        pair TEXT,
        method TEXT,
        seed INTEGER,
        spec TEXT NOT NULL,
        model TEXT NOT NULL,
        details TEXT NOT NULL,
        error TEXT,
        started REAL,
        finished REAL
    );
    CREATE INDEX trials_cell ON trials (dataset_identity, pair, method, seed);
    CREATE TABLE scores (
        trial_id TEXT NOT NULL REFERENCES trials (id) ON DELETE CASCADE,
        utterance TEXT NOT NULL,
        metric TEXT NOT NULL,
        value REAL,
        reason TEXT,
        PRIMARY KEY (trial_id, utterance, metric)
    );
    """,
    2: """
    CREATE TABLE running (
        trial_id TEXT PRIMARY KEY,
        pid INTEGER NOT NULL,
        host TEXT NOT NULL,
        started REAL NOT NULL
    );
    """,
    3: """
    ALTER TABLE trials ADD COLUMN teacher_seed INTEGER;
    ALTER TABLE trials ADD COLUMN platform TEXT;
    UPDATE trials SET teacher_seed = CAST(json_extract(spec, '$.teacher_settings.seed') AS INTEGER)
        WHERE role != 'noisy';
    UPDATE trials SET platform = json_extract(details, '$.platform.fingerprint');
    CREATE TABLE scores_v3 (
        trial_id TEXT NOT NULL REFERENCES trials (id) ON DELETE CASCADE,
        test_set TEXT NOT NULL,
        utterance TEXT NOT NULL,
        metric TEXT NOT NULL,
        value REAL,
        reason TEXT,
        PRIMARY KEY (trial_id, test_set, utterance, metric)
    );
    INSERT INTO scores_v3
        SELECT s.trial_id, t.dataset, s.utterance, s.metric, s.value, s.reason
        FROM scores s JOIN trials t ON t.id = s.trial_id;
    DROP TABLE scores;
    ALTER TABLE scores_v3 RENAME TO scores;
    """,
}
"""Version 3 keys scores by test set (cross-corpus evaluation: a trial's own test split is
named after its dataset) and adds each trial's teacher seed and numeric-platform
fingerprint (`kdbench.run.platform`); rows from before are given their dataset as test set
and their teacher's seed, and the fingerprint where the details hold one (none did)."""

BUSY_TIMEOUT_SECONDS = 60
LOCK_RETRIES = 20

FINAL_STATUSES = ("done", "not_applicable")

T = TypeVar("T")


def _is_lock_error(exc: sqlite3.OperationalError) -> bool:
    message = str(exc).lower()
    return "locked" in message or "busy" in message


def _retrying(action: Callable[[], T]) -> T:
    """Run `action`, retrying while SQLite reports a lock the busy timeout did not absorb
    (switching to WAL on open, or a lock upgrade), with jitter so writers spread out."""
    for attempt in range(LOCK_RETRIES):
        try:
            return action()
        except sqlite3.OperationalError as exc:
            if not _is_lock_error(exc) or attempt == LOCK_RETRIES - 1:
                raise
            time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))
    raise AssertionError("unreachable")


TRIAL_COLUMNS = (
    "id, role, status, dataset, dataset_identity, pair, method, seed, spec, model, details, "
    "error, started, finished, teacher_seed, platform"
)


def _marks(row: tuple[Any, ...]) -> str:
    return ",".join("?" * len(row))


def _score_rows(outcome: Outcome) -> list[tuple[Any, ...]]:
    """Score rows of an outcome; a score of the trial's own test split is named after its
    dataset."""
    trial = outcome.trial
    return [
        (
            trial.id,
            score.test_set or trial.dataset,
            score.utterance,
            score.metric,
            None if math.isnan(score.value) else score.value,
            score.reason,
        )
        for score in outcome.scores
    ]


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _not_a_store(path: Path, why: object) -> KdbenchError:
    return KdbenchError(f"{path}: not a kdbench results store ({why})")


def _refuse_newer(version: int, path: Path) -> None:
    if version > SCHEMA_VERSION:
        raise KdbenchError(
            f"{path}: schema version {version} is newer than this kdbench "
            f"understands ({SCHEMA_VERSION}); upgrade kdbench"
        )


def _apply_migrations(db: sqlite3.Connection, path: Path, upto: int = SCHEMA_VERSION) -> None:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    _refuse_newer(version, path)
    for target in range(version + 1, upto + 1):
        for statement in filter(str.strip, MIGRATIONS[target].split(";")):
            db.execute(statement)
        db.execute(f"PRAGMA user_version = {target}")


def _columns(connection: sqlite3.Connection) -> dict[str, set[str]]:
    tables = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    query = "SELECT name FROM pragma_table_info(?)"
    return {
        table: {row[0] for row in connection.execute(query, (table,))}
        for (table,) in tables.fetchall()
    }


def _columns_of_version(version: int) -> dict[str, set[str]]:
    fresh = sqlite3.connect(":memory:")
    _apply_migrations(fresh, Path(":memory:"), upto=version)
    columns = _columns(fresh)
    fresh.close()
    return columns


def _checked_version(connection: sqlite3.Connection, path: Path) -> int:
    """The store's schema version, after checking that the file is a whole SQLite database
    holding the tables and columns of that version (a non-database, a truncated copy, a
    damaged page or schema is an error naming the path)."""
    try:
        problems = [row[0] for row in connection.execute("PRAGMA quick_check")]
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        tables = _columns(connection)
    except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:
        if isinstance(exc, sqlite3.OperationalError) and _is_lock_error(exc):
            raise
        raise _not_a_store(path, exc) from None
    if problems != ["ok"]:
        raise _not_a_store(path, f"damaged: {'; '.join(problems[:3])}")
    if version < 0:
        raise _not_a_store(path, f"damaged: schema version {version}")
    if (version or tables) and "trials" not in tables:
        raise _not_a_store(path, "a database without kdbench's tables")
    if 0 < version <= SCHEMA_VERSION:
        for table, columns in _columns_of_version(version).items():
            if not columns <= tables.get(table, set()):
                raise _not_a_store(
                    path, f"damaged: table {table} lacks columns of schema version {version}"
                )
    return version


def _connect_read_only(path: Path, immutable: bool = False) -> sqlite3.Connection:
    """A read-only connection; a WAL store whose folder this process cannot write (a
    read-only medium, a shared folder of another user) is opened immutable.

    A WAL reader needs the store's `-shm` index beside it, which SQLite creates on the first
    read: in a folder it cannot write, every read fails with "attempt to write a readonly
    database". Nobody can be writing such a store through that folder, so reading it as
    immutable (no index, no locks) sees what is in the file. A `-wal` file left beside it
    (a copy taken while a run was writing) holds rows the main file lacks; that case is an
    error saying so, not a silently partial read."""
    options = "mode=ro&immutable=1" if immutable else "mode=ro"
    connection = sqlite3.connect(
        f"{path.resolve().as_uri()}?{options}", uri=True, timeout=BUSY_TIMEOUT_SECONDS,
        isolation_level=None,
    )
    if immutable:
        return connection
    try:
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        if not isinstance(exc, sqlite3.OperationalError) or os.access(path.parent, os.W_OK):
            return connection  # not this case: _checked_version names the problem
        connection.close()
        wal = path.with_name(path.name + "-wal")
        if wal.exists() and wal.stat().st_size > 0:
            raise KdbenchError(
                f"{path}: its folder is read-only and {wal.name} beside it holds writes not "
                "yet in the store; copy both files to a writable folder and read it there"
            ) from None
        return _connect_read_only(path, immutable=True)
    return connection


SQLITE_HEADER = b"SQLite format 3\x00"
WAL_VERSION_BYTES = slice(18, 20)
"""The file format's write and read versions in a database header: 2 for WAL, 1 for a
rollback journal (https://www.sqlite.org/fileformat2.html#file_format_version_numbers)."""


def _snapshot(path: Path) -> sqlite3.Connection | None:
    """The store in memory, as it is now, when no run has it open; None when one may have.

    A WAL reader on disk leaves `-shm` and `-wal` files beside a store it reads (SQLite
    makes them, and only a writer's last close removes them), so `kdbench leaderboard` on
    a committed store left two untracked files: a command that only reads must not write.
    With no `-wal` beside it no run is connected (a WAL writer keeps that file while it
    is), and a writer that connects meanwhile changes the file itself only when it
    checkpoints, which the size and time checked around the read would show. An in-memory
    database cannot be in WAL mode, so the copy's header says rollback journal."""
    wal = path.with_name(path.name + "-wal")
    if wal.exists():
        return None
    with path.open("rb") as file:
        if file.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
            return None  # not a database: the reader on disk names what it is
    before = path.stat()
    image = bytearray(path.read_bytes())
    after = path.stat()
    if wal.exists() or (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns):
        return None
    image[WAL_VERSION_BYTES] = b"\x01\x01"
    connection = sqlite3.connect(":memory:", isolation_level=None)
    connection.deserialize(image)
    return connection


def _open_read_only(path: Path) -> sqlite3.Connection:
    """A connection that cannot write `path` (nor leave files beside it, when no run has
    it open); for an older schema, a migrated copy of it in memory."""
    if not path.is_file():
        raise KdbenchError(
            f"{path}: no results store there (`kdbench run` makes one; --results names another)"
        )
    if not os.access(path, os.R_OK):
        raise KdbenchError(f"{path}: this user may not read it (its permissions)")
    snapshot = _snapshot(path)
    connection = snapshot or _connect_read_only(path)
    try:
        version = _retrying(lambda: _checked_version(connection, path))
        if version == 0:
            raise _not_a_store(path, "an empty database")
        _refuse_newer(version, path)
    except KdbenchError:
        connection.close()
        raise
    if version != SCHEMA_VERSION:
        if snapshot is None:
            copy = sqlite3.connect(":memory:", isolation_level=None)
            connection.backup(copy)
            connection.close()
            connection = copy
        _apply_migrations(connection, path)
    connection.execute("PRAGMA query_only=ON")
    return connection


_DAMAGE = (sqlite3.DatabaseError, pd.errors.DatabaseError, UnicodeDecodeError, ValueError)


def _read(method: Callable[..., T]) -> Callable[..., T]:
    """A read that meets damage the check on open cannot see (a row that is not what
    kdbench wrote: bytes that are not text, JSON that does not parse) names the store,
    instead of failing deep in SQLite, pandas or json."""

    @functools.wraps(method)
    def reading(self: Store, *args: Any, **kwargs: Any) -> T:
        try:
            return method(self, *args, **kwargs)
        except _DAMAGE as exc:
            if isinstance(exc, sqlite3.OperationalError) and _is_lock_error(exc):
                raise
            raise _not_a_store(self.path, f"damaged: {exc}") from exc

    return reading


def _check_writable(path: Path) -> None:
    """Say up front that a run cannot record its trials at `path`: SQLite would fail deep
    in the first write ("unable to open database file", "attempt to write a readonly
    database"), which read as a damaged store or a traceback. A WAL store needs its folder
    writable too, for the journal and index files beside it."""
    hint = "a run records its trials there; --results names another store"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise KdbenchError(f"{path}: cannot make its folder ({exc.strerror}); {hint}") from None
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise KdbenchError(f"{path}: this user may not write its folder {path.parent}; {hint}")
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise KdbenchError(f"{path}: this user may not write it (its permissions); {hint}")


class Store:
    """Results of every trial ever run with this file, keyed by trial id."""

    def __init__(self, path: Path | str, read_only: bool = False) -> None:
        self.path = Path(path)
        if read_only:
            self.connection = _open_read_only(self.path)
            return
        _check_writable(self.path)
        self.connection = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None
        )
        try:
            _retrying(lambda: _checked_version(self.connection, self.path))
        except KdbenchError:
            self.connection.close()
            raise
        _retrying(lambda: self.connection.execute("PRAGMA journal_mode=WAL").fetchone())
        self.connection.execute("PRAGMA foreign_keys=ON")
        _retrying(self._migrate)

    def close(self) -> None:
        self.connection.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; IMMEDIATE takes the write lock up front, so the busy
        timeout applies instead of a reader failing when it later needs to write."""
        self.connection.execute("BEGIN IMMEDIATE")
        try:
            yield self.connection
        except BaseException:
            if self.connection.in_transaction:  # SQLite ends it itself on a full disk
                self.connection.execute("ROLLBACK")
            raise
        try:
            self.connection.execute("COMMIT")
        except BaseException:
            if self.connection.in_transaction:
                self.connection.execute("ROLLBACK")
            raise

    def write(self, statements: Callable[[sqlite3.Connection], None]) -> None:
        """Run `statements` in one transaction, retried as a whole on a lock error; one
        that cannot complete (a full disk) is rolled back whole and reported."""

        def attempt() -> None:
            with self.transaction() as db:
                statements(db)

        try:
            _retrying(attempt)
        except sqlite3.OperationalError as exc:
            if _is_lock_error(exc):
                raise
            raise KdbenchError(
                f"{self.path}: a write failed and was rolled back, the store is as it was "
                f"before it: {exc}"
            ) from exc

    def _migrate(self) -> None:
        with self.transaction() as db:
            _apply_migrations(db, self.path)

    def schema_version(self) -> int:
        return self.connection.execute("PRAGMA user_version").fetchone()[0]

    @_read
    def statuses(self, ids: Iterable[str]) -> dict[str, str]:
        ids = list(ids)
        found: dict[str, str] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self.connection.execute(
                f"SELECT id, status FROM trials WHERE id IN ({marks})", chunk
            )
            found.update(dict(rows.fetchall()))
        return found

    def record(self, outcome: Outcome) -> None:
        """Write a trial and its scores atomically, replacing an earlier failed attempt."""
        trial = outcome.trial
        spec = {
            "role": trial.role,
            **{
                key: value
                for key, value in dataclasses.asdict(trial).items()
                if key not in RUN_SETTINGS
            },
        }
        student = trial if isinstance(trial, StudentTrial) else None
        row = (
            trial.id,
            trial.role,
            outcome.status,
            trial.dataset,
            trial.dataset_identity,
            student.pair if student else None,
            student.method if student else None,
            student.seed if student else None,
            json.dumps(spec, default=list),
            json.dumps(outcome.model),
            json.dumps(outcome.details, default=str),
            outcome.error,
            outcome.started,
            outcome.finished,
            trial.teacher_seed if isinstance(trial, WithTeacher) else None,
            outcome.details.get("platform", {}).get("fingerprint"),
        )
        scores = _score_rows(outcome)

        def statements(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM trials WHERE id = ?", (trial.id,))
            db.execute(f"INSERT INTO trials ({TRIAL_COLUMNS}) VALUES ({_marks(row)})", row)
            db.executemany("INSERT INTO scores VALUES (?,?,?,?,?,?)", scores)
            db.execute("DELETE FROM running WHERE trial_id = ?", (trial.id,))

        self.write(statements)

    def add_scores(self, outcome: Outcome) -> None:
        """Add a score-only outcome's scores (a finished trial scored on a test set added
        since) to its trial, leaving the trial's row and other scores as they are."""
        scores = _score_rows(outcome)

        def statements(db: sqlite3.Connection) -> None:
            db.executemany("INSERT OR REPLACE INTO scores VALUES (?,?,?,?,?,?)", scores)
            db.execute("DELETE FROM running WHERE trial_id = ?", (outcome.trial.id,))

        self.write(statements)

    @_read
    def test_sets_scored(self, ids: Iterable[str]) -> dict[str, set[str]]:
        """For each trial id, the test sets it has scores on."""
        ids = list(ids)
        found: dict[str, set[str]] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            rows = self.connection.execute(
                f"SELECT DISTINCT trial_id, test_set FROM scores WHERE trial_id IN "
                f"({','.join('?' * len(chunk))})",
                chunk,
            )
            for trial_id, test_set in rows:
                found.setdefault(trial_id, set()).add(test_set)
        return found

    def mark_running(self, trial_id: str, pid: int, host: str, started: float) -> None:
        """Note that a worker started this trial; `record` removes the note. A note older
        than the trial's recorded outcome (a late report) is not written."""
        self.write(
            lambda db: db.execute(
                "INSERT OR REPLACE INTO running SELECT ?, ?, ?, ? WHERE NOT EXISTS "
                "(SELECT 1 FROM trials WHERE id = ? AND finished >= ?)",
                (trial_id, pid, host, started, trial_id, started),
            )
        )

    def clear_running(self, trial_ids: Iterable[str]) -> None:
        """Drop notes of trials this driver knows are no longer in flight."""
        ids = [(trial_id,) for trial_id in trial_ids]
        self.write(lambda db: db.executemany("DELETE FROM running WHERE trial_id = ?", ids))

    @_read
    def running(self) -> pd.DataFrame:
        """Trials in flight, with `alive`: False when the note is stale (its process is gone
        from this host), None when it was written on another host and cannot be checked."""
        frame = pd.read_sql_query("SELECT * FROM running", self.connection)
        here = socket.gethostname()
        frame["alive"] = [
            pid_alive(int(pid)) if host == here else None
            for pid, host in zip(frame["pid"], frame["host"])
        ]
        return frame

    @_read
    def trials(self, dataset_identities: Iterable[str] | None = None) -> pd.DataFrame:
        """Trial rows (JSON columns decoded), optionally for some dataset identities only."""
        frame = pd.read_sql_query("SELECT * FROM trials", self.connection)
        if dataset_identities is not None:
            frame = frame[frame["dataset_identity"].isin(list(dataset_identities))]
        for column in ("spec", "model", "details"):
            frame[column] = frame[column].map(json.loads)
        return frame.reset_index(drop=True)

    @_read
    def scores(self, trial_ids: Iterable[str]) -> pd.DataFrame:
        ids = list(trial_ids)
        frames = []
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            frames.append(
                pd.read_sql_query(
                    f"SELECT * FROM scores WHERE trial_id IN ({marks})", self.connection, params=chunk
                )
            )
        if not frames:
            return pd.DataFrame(
                columns=["trial_id", "test_set", "utterance", "metric", "value", "reason"]
            )
        frame = pd.concat(frames, ignore_index=True)
        frame["value"] = frame["value"].astype(float)
        return frame

    @_read
    def summary_counts(self) -> dict[str, Any]:
        rows = self.connection.execute("SELECT status, COUNT(*) FROM trials GROUP BY status")
        return dict(rows.fetchall())
