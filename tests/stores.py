"""Results stores for tests: fake outcomes recorded through the real `Store`, and a
fingerprint (bytes and modification time) to tell whether a command wrote a file."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from kdbench.run.evaluate import Score
from kdbench.run.store import MIGRATIONS, Store
from kdbench.run.trial import Outcome, StudentTrial

STUDENT_DEFAULTS = {
    "dataset": "d", "dataset_params": {}, "dataset_identity": "d0", "cache_dir": "",
    "results_dir": "", "metrics": ("m",), "teacher_spec": {}, "teacher_settings": {},
    "teacher_seed": 0, "pair": "p", "student_spec": {}, "method": "m", "method_params": {},
    "seed": 0, "train_settings": {},
}


def a_student(trial_id: str, **fields: object) -> StudentTrial:
    """A student trial with placeholder contents: for what stores and commands read."""
    return StudentTrial(id=trial_id, **{**STUDENT_DEFAULTS, **fields})  # type: ignore[arg-type]


def fake_outcome(index: int, scores: int = 20, status: str = "done") -> Outcome:
    trial = a_student(f"trial{index:04d}", pair="p", method="m", seed=index)
    outcome = Outcome(trial, status, started=time.time(), finished=time.time())
    outcome.scores = [Score(f"u{n}", "m", float(n), None) for n in range(scores)]
    return outcome


def a_store(path: Path, trials: int = 3) -> Path:
    store = Store(path)
    for index in range(trials):
        store.record(fake_outcome(index))
    store.close()
    return path


def fingerprint(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


def a_version_1_store(path: Path) -> Path:
    """A store as kdbench wrote it before the `running` table (schema version 1)."""
    with sqlite3.connect(path) as db:
        db.executescript(MIGRATIONS[1])
        db.execute(
            "INSERT INTO trials (id, role, status, dataset, dataset_identity, spec, model, "
            "details) VALUES ('old', 'noisy', 'done', 'd', 'd0', '{}', '{}', '{}')"
        )
        db.execute(
            "INSERT INTO trials (id, role, status, dataset, dataset_identity, spec, model, "
            "details) VALUES ('kid', 'student', 'done', 'd', 'd0', "
            "'{\"teacher_settings\": {\"seed\": 3}}', '{}', '{}')"
        )
        db.execute("INSERT INTO scores VALUES ('kid', 'u1', 'm', 0.5, NULL)")
        db.execute("PRAGMA user_version = 1")
    db.close()
    return path
