"""The results store: one SQLite file, one row per trial, one per utterance score.

WAL mode lets several processes write; a trial's row and all its scores are committed in
one transaction, so a killed run leaves whole trials or none. The schema is versioned and
each upgrade is a numbered migration applied in order on open.
"""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from kdbench.trial import Outcome

SCHEMA_VERSION = 1

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
}

FINAL_STATUSES = ("done", "not_applicable")


class Store:
    """Results of every trial ever run with this file, keyed by trial id."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.connection = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        self.connection.execute("PRAGMA journal_mode=WAL")
        self.connection.execute("PRAGMA foreign_keys=ON")
        self._migrate()

    def close(self) -> None:
        self.connection.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.connection.execute("BEGIN IMMEDIATE")
        try:
            yield self.connection
        except BaseException:
            self.connection.execute("ROLLBACK")
            raise
        self.connection.execute("COMMIT")

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
            if key not in {"cache_dir", "results_dir", "threads", "eval_jobs"}
        }
        with self.transaction() as db:
            db.execute("DELETE FROM trials WHERE id = ?", (trial.id,))
            db.execute(
                "INSERT INTO trials VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
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
                ),
            )
            db.executemany(
                "INSERT INTO scores VALUES (?,?,?,?,?)",
                [
                    (
                        trial.id,
                        score.utterance,
                        score.metric,
                        None if math.isnan(score.value) else score.value,
                        score.reason,
                    )
                    for score in outcome.scores
                ],
            )

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
