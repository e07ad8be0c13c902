"""The results store: one SQLite file, one row per trial, one per utterance score.

WAL mode lets several processes write; a trial's row and all its scores are committed in
one transaction, so a killed run leaves whole trials or none. Writers queue on SQLite's
busy timeout and, should a lock still be reported (it can be, when a reader upgrades to a
writer), retry the whole transaction, so concurrent workers never lose an outcome.

The schema is versioned and each upgrade is a numbered migration applied in order on
open. Version 2 adds `running`: trials in flight, written when a worker starts one and
removed in the same transaction that records its outcome, so `kdbench status` can tell a
trial being worked on from one whose run was killed.
"""

from __future__ import annotations

import contextlib
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

from kdbench.run.trial import RUN_SETTINGS, Outcome

SCHEMA_VERSION = 2

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
}

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


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Store:
    """Results of every trial ever run with this file, keyed by trial id."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.connection = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None
        )
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
            self.connection.execute("ROLLBACK")
            raise
        try:
            self.connection.execute("COMMIT")
        except BaseException:
            if self.connection.in_transaction:
                self.connection.execute("ROLLBACK")
            raise

    def write(self, statements: Callable[[sqlite3.Connection], None]) -> None:
        """Run `statements` in one transaction, retried as a whole on a lock error."""

        def attempt() -> None:
            with self.transaction() as db:
                statements(db)

        _retrying(attempt)

    def _migrate(self) -> None:
        with self.transaction() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.path}: schema version {version} is newer than this kdbench "
                    f"understands ({SCHEMA_VERSION}); upgrade kdbench"
                )
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in filter(str.strip, MIGRATIONS[target].split(";")):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {target}")

    def schema_version(self) -> int:
        return self.connection.execute("PRAGMA user_version").fetchone()[0]

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
            key: value
            for key, value in vars(trial).items()
            if key not in RUN_SETTINGS
        }
        row = (
            trial.id,
            trial.role,
            outcome.status,
            trial.dataset,
            trial.dataset_identity,
            trial.pair,
            trial.method,
            trial.seed,
            json.dumps(spec, default=list),
            json.dumps(outcome.model),
            json.dumps(outcome.details, default=str),
            outcome.error,
            outcome.started,
            outcome.finished,
        )
        scores = [
            (
                trial.id,
                score.utterance,
                score.metric,
                None if math.isnan(score.value) else score.value,
                score.reason,
            )
            for score in outcome.scores
        ]

        def statements(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM trials WHERE id = ?", (trial.id,))
            db.execute("INSERT INTO trials VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", row)
            db.executemany("INSERT INTO scores VALUES (?,?,?,?,?)", scores)
            db.execute("DELETE FROM running WHERE trial_id = ?", (trial.id,))

        self.write(statements)

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

    def trials(self, dataset_identities: Iterable[str] | None = None) -> pd.DataFrame:
        """Trial rows (JSON columns decoded), optionally for some dataset identities only."""
        frame = pd.read_sql_query("SELECT * FROM trials", self.connection)
        if dataset_identities is not None:
            frame = frame[frame["dataset_identity"].isin(list(dataset_identities))]
        for column in ("spec", "model", "details"):
            frame[column] = frame[column].map(json.loads)
        return frame.reset_index(drop=True)

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
            return pd.DataFrame(columns=["trial_id", "utterance", "metric", "value", "reason"])
        frame = pd.concat(frames, ignore_index=True)
        frame["value"] = frame["value"].astype(float)
        return frame

    def summary_counts(self) -> dict[str, Any]:
        rows = self.connection.execute("SELECT status, COUNT(*) FROM trials GROUP BY status")
        return dict(rows.fetchall())
