"""Bring your own teacher: `teacher.checkpoint = PATH` instead of training one."""

from __future__ import annotations

import importlib.resources
import shutil
import sqlite3
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from kdbench.cli import main
from kdbench.config import load_config
from kdbench.deploy.checkpoints import load_checkpoint
from kdbench.errors import ConfigError, CorruptFile
from kdbench.plugin.registry import get_registry
from kdbench.run.grid import DataUse, Grid, build_grid
from kdbench.run.trial import execute

TINY = [
    "--preset", "ci",
    "--set", "run.pairs=width",
    "--set", "run.seeds=0",
    "--set", "train.steps=4",
    "--set", "teacher.steps=4",
    "--method", "none",
]


def _run(store: Path, *extra: str) -> str:
    result = CliRunner(env={"COLUMNS": "200"}).invoke(
        main, ["run", *TINY, *extra, "--results", str(store)]
    )
    assert result.exit_code == 0, result.output
    return result.output


def _grid(checkpoint: Path, cache: Path, results: Path, data: DataUse = "prepare") -> Grid:
    """The TINY grid with `checkpoint` as the teacher, built in this process."""
    overrides = [value for flag, value in zip(TINY[::2], TINY[1::2]) if flag == "--set"]
    config = load_config("ci", [*overrides, f"teacher.checkpoint={checkpoint}"])
    return build_grid(
        config, get_registry(), cache, results, data=data
    )


def _teacher(store: Path) -> tuple[str, dict[str, float], str]:
    """The teacher trial's id, its score per (utterance, metric), and its details."""
    with sqlite3.connect(store) as db:
        trial_id, details = db.execute(
            "SELECT id, details FROM trials WHERE role = 'teacher'"
        ).fetchone()
        scores = db.execute(
            "SELECT utterance, metric, value FROM scores WHERE trial_id = ?", (trial_id,)
        ).fetchall()
    return trial_id, {(u, m): v for u, m, v in scores}, details


@pytest.fixture(scope="module")
def trained(tmp_path_factory, session_cache) -> tuple[Path, Path]:
    """A tiny grid whose teacher kdbench trained: its store and the teacher's checkpoint."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KDBENCH_CACHE", str(session_cache))
        store = tmp_path_factory.mktemp("trained") / "results.db"
        _run(store)
    checkpoints = list((session_cache / "teachers").glob("*.pt"))
    trial_id, _, _ = _teacher(store)
    return store, next(path for path in checkpoints if path.stem == trial_id)


def test_a_loaded_teacher_scores_exactly_as_the_one_that_was_saved(
    trained, tmp_path, monkeypatch, session_cache
):
    monkeypatch.setenv("KDBENCH_CACHE", str(session_cache))
    store, checkpoint = trained
    trained_id, trained_scores, _ = _teacher(store)
    mine = shutil.copy(checkpoint, tmp_path / "my-teacher.pt")
    loaded_store = tmp_path / "loaded.db"
    output = _run(loaded_store, "--set", f"teacher.checkpoint={mine}")
    loaded_id, loaded_scores, details = _teacher(loaded_store)
    assert "teacher" in output
    assert loaded_scores == trained_scores and len(loaded_scores) == 4 * 3
    assert loaded_id != trained_id  # identified by the file's hash, not by training settings
    assert "checkpoint_sha256" in details

    # The same weights elsewhere are the same teacher: nothing reruns.
    moved = shutil.copy(mine, tmp_path / "moved.pt")
    assert "ran 0 trial(s)" in _run(loaded_store, "--set", f"teacher.checkpoint={moved}")

    # A plain state dict for the pair's teacher spec scores the same, under its own hash
    # (its teacher trial alone: no student needs to train for that).
    plain = tmp_path / "state_dict.pt"
    torch.save(load_checkpoint(checkpoint)["state_dict"], plain)
    grid = _grid(plain, session_cache, tmp_path)
    teacher = next(trial for trial in grid.anchors if trial.role == "teacher")
    outcome = execute(teacher)
    assert outcome.status == "done", outcome.error
    plain_scores = {(score.utterance, score.metric): score.value for score in outcome.scores}
    assert plain_scores == trained_scores and teacher.id not in (trained_id, loaded_id)


def test_other_weights_are_another_teacher(trained, tmp_path, session_cache):
    _, checkpoint = trained
    state = load_checkpoint(checkpoint)["state_dict"]
    edited = tmp_path / "edited.pt"
    torch.save({name: tensor + 1e-3 for name, tensor in state.items()}, edited)
    plain = tmp_path / "plain.pt"
    torch.save(state, plain)

    def teacher_id(path: Path) -> str:
        grid = _grid(path, session_cache, tmp_path, data="skip")
        return next(trial.id for trial in grid.anchors if trial.role == "teacher")

    assert teacher_id(edited) != teacher_id(plain)


def test_a_teacher_trained_on_another_corpus_is_run_with_a_warning(
    trained, tmp_path, monkeypatch, session_cache
):
    monkeypatch.setenv("KDBENCH_CACHE", str(session_cache))
    _, checkpoint = trained
    assert _grid(checkpoint, session_cache, tmp_path).warnings == []
    plain = tmp_path / "plain.pt"
    torch.save(load_checkpoint(checkpoint)["state_dict"], plain)
    assert _grid(plain, session_cache, tmp_path).warnings == []  # it does not say its corpus

    payload = load_checkpoint(checkpoint)
    elsewhere = tmp_path / "elsewhere.pt"
    torch.save({**payload, "meta": {**payload["meta"], "dataset": "0123456789ab"}}, elsewhere)
    grid = _grid(elsewhere, session_cache, tmp_path)
    identity = next(iter(grid.datasets.values())).identity
    [warning] = grid.warnings
    assert "elsewhere.pt" in warning and "0123456789ab" in warning and identity in warning
    output = _run(tmp_path / "results.db", "--set", f"teacher.checkpoint={elsewhere}")
    assert "warning:" in output and "was trained on dataset 0123456789ab" in output


def test_a_kdbench_checkpoint_that_fails_its_crc_is_refused(trained, tmp_path, session_cache):
    _, checkpoint = trained
    payload = load_checkpoint(checkpoint)
    altered = tmp_path / "altered.pt"
    torch.save({**payload, "crc32": payload["crc32"] ^ 1}, altered)
    with pytest.raises(CorruptFile, match="altered.pt.*CRC-32"):
        _grid(altered, session_cache, tmp_path, data="skip")


def test_loaded_teachers_take_one_file_per_teacher_seed(trained, tmp_path):
    _, checkpoint = trained
    with pytest.raises(ConfigError, match=r"teacher.checkpoint: 1 file\(s\) for 2 teacher seed"):
        load_config("ci", [f"teacher.checkpoint={checkpoint}", "teacher.seeds=0,1"])
    first = shutil.copy(checkpoint, tmp_path / "first.pt")
    second = tmp_path / "second.pt"
    state = load_checkpoint(checkpoint)["state_dict"]
    torch.save({name: tensor + 1e-3 for name, tensor in state.items()}, second)
    # A preset names its teachers relative to its own folder, wherever it is run from.
    preset = tmp_path / "two-teachers.toml"
    preset.write_text(
        (Path(str(importlib.resources.files("kdbench_configs") / "ci.toml"))).read_text()
        .replace("[teacher]", '[teacher]\nseeds = [5, 7]\ncheckpoint = ["first.pt", "second.pt"]')
    )
    overrides = [value for flag, value in zip(TINY[::2], TINY[1::2]) if flag == "--set"]
    config = load_config(str(preset), [*overrides, "run.seeds=0,1,2,3"])
    assert config.teacher["checkpoint"] == [str(first), str(second)]
    grid = build_grid(config, get_registry(), tmp_path, tmp_path, data="skip")
    teachers = {trial.teacher_seed: trial for trial in grid.anchors if trial.role == "teacher"}
    assert sorted(teachers) == [5, 7] and teachers[5].id != teachers[7].id
    files = {5: str(first), 7: str(second)}
    for student in grid.students:  # nested: student seed s distils from teacher seeds[s % 2]
        own = [5, 7][student.seed % 2]
        assert student.teacher_seed == own
        assert student.teacher_settings["checkpoint"] == files[own]


def test_a_bad_teacher_file_is_an_error_naming_it(tmp_path, monkeypatch, session_cache):
    monkeypatch.setenv("KDBENCH_CACHE", str(session_cache))
    runner = CliRunner()
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    wrong = tmp_path / "wrong_shape.pt"
    torch.save({"encoder.0.0.weight": torch.zeros(3)}, wrong)
    listed = tmp_path / "listed.pt"
    torch.save([torch.zeros(1)], listed)
    for path, message in [
        (tmp_path / "missing.pt", "neither a policy"),
        (garbage, "refused"),
        (wrong, "do not fit a unet teacher"),
        (listed, "neither a kdbench checkpoint nor a state dict"),
    ]:
        result = runner.invoke(
            main, ["run", *TINY, "--set", f"teacher.checkpoint={path}", "--dry-run"]
        )
        assert result.exit_code == 2, result.output
        assert path.name in result.stderr and message in result.stderr, result.stderr
