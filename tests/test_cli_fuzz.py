"""The command line against random input: `--set` keys and values, method, pair and seed
lists, and the contents of audio files and results stores. Every outcome must be a
result or a one-line error (exit status 2), never a traceback, and a command that only
reads must leave the store's bytes and modification time as they were.

Nothing trains: grids are planned with `--dry-run`, stores are read by `status` and
`leaderboard`, and `denoise` uses an untrained student, so the examples run in seconds.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import traceback
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from stores import a_store, a_student, a_version_1_store, fingerprint

from kdbench.api import ModelSpec
from kdbench.cli import main
from kdbench.deploy.checkpoints import save_checkpoint
from kdbench.plugin.registry import get_registry
from kdbench.run.evaluate import Score
from kdbench.run.store import Store
from kdbench.run.trial import Outcome

FUZZ = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
KEYS = st.one_of(
    st.sampled_from([
        "train.steps", "train.lr", "train.checkpoint", "teacher.seed", "run.jobs", "run.seeds",
        "run.pairs", "run.methods", "run.metrics", "run.datasets", "run.executor",
        "method.cosine.weight", "method.nope.weight", "dataset.procedural.n_train",
        "dataset.procedural.snrs", "executor.local.x", "train", "run.pairs.width",
    ]),
    text,
)
VALUES = st.one_of(
    st.integers(-10**6, 10**6).map(str),
    st.floats().map(repr),
    st.sampled_from(["", "[]", "[1, 2]", "all", "true", "nan", "-inf", "[", "{", "'x'", "0x10"]),
    text,
)
SETTINGS = st.lists(
    st.one_of(st.tuples(KEYS, VALUES).map("=".join), text), max_size=3
)


def names(kind: str) -> st.SearchStrategy[str | None]:
    known = get_registry().names(kind)
    item = st.one_of(st.sampled_from([*known, "all", "nope", "", " "]), text)
    return st.none() | st.lists(item, max_size=3).map(",".join)


SEEDS = st.none() | st.lists(
    st.one_of(st.integers(-3, 3).map(str), st.sampled_from(["x", "", "1.5", " 2", "1e9"])),
    max_size=4,
).map(",".join)


def assert_result_or_one_line_error(result: Result) -> None:
    assert "Traceback" not in result.output, result.output
    event(f"exit status {result.exit_code}")  # --hypothesis-show-statistics: the mix
    if result.exit_code == 0:
        return
    assert result.exit_code == 2, "".join(traceback.format_exception(*result.exc_info))
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(("error: ", "Error: ")), result.stderr  # ours, or click's usage


@contextlib.contextmanager
def working_in(folder: Path) -> Iterator[None]:
    before = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, session_cache: Path) -> CliRunner:
    monkeypatch.setenv("KDBENCH_CACHE", str(session_cache))
    return CliRunner()


@FUZZ
@given(
    preset=st.sampled_from(["ci", "quick", "nope", "missing.toml"]),
    methods=names("methods"),
    pairs=names("pairs"),
    seeds=SEEDS,
    overrides=SETTINGS,
)
def test_random_grid_options_give_a_plan_or_one_line_error(
    cli: CliRunner, preset, methods, pairs, seeds, overrides
) -> None:
    args = ["run", "--dry-run", "--preset", preset]
    for flag, value in (("--method", methods), ("--pairs", pairs), ("--seeds", seeds)):
        if value is not None:
            args += [flag, value]
    for item in overrides:
        args += ["--set", item]
    with tempfile.TemporaryDirectory() as folder, working_in(Path(folder)):
        assert_result_or_one_line_error(cli.invoke(main, args))
        assert list(Path(folder).iterdir()) == []  # a dry run writes nothing


# --------------------------------------------------------------------------- stores


def _real_store_bytes(version: int) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "results.db"
        (a_version_1_store if version == 1 else a_store)(path)
        return path.read_bytes()


REAL_STORES = {version: _real_store_bytes(version) for version in (1, 2)}


@st.composite
def store_contents(draw: st.DrawFn) -> bytes:
    """Random bytes, or a real store that is whole, truncated, or overwritten in places."""
    kind = draw(st.sampled_from(["random", "whole", "truncated", "overwritten", "header"]))
    if kind == "random":
        return draw(st.binary(max_size=4096))
    real = REAL_STORES[draw(st.sampled_from([1, 2]))]
    if kind == "whole":
        return real
    if kind == "truncated":
        return real[: draw(st.integers(0, len(real) - 1))]
    if kind == "header":
        return real[:100] + draw(st.binary(min_size=1, max_size=2048))
    data = bytearray(real)
    for _ in range(draw(st.integers(1, 4))):
        start = draw(st.integers(0, len(data) - 1))
        patch = draw(st.binary(min_size=1, max_size=64))
        data[start : start + len(patch)] = patch
    return bytes(data[: len(real)])


@FUZZ
@given(
    content=store_contents(),
    command=st.sampled_from([
        ["status"], ["leaderboard"], ["leaderboard", "--format", "json"],
        ["leaderboard", "--format", "csv", "--metric", "stoi"],
    ]),
)
def test_random_store_contents_give_a_table_or_one_line_error_and_stay_unchanged(
    cli: CliRunner, tmp_path: Path, content: bytes, command: list[str]
) -> None:
    with tempfile.TemporaryDirectory(dir=tmp_path) as folder:
        store = Path(folder) / "results.db"
        store.write_bytes(content)
        before = fingerprint(store)
        result = cli.invoke(
            main, [*command, "--preset", "ci", "--set", "run.pairs=width", "--results", str(store)]
        )
        assert_result_or_one_line_error(result)
        assert fingerprint(store) == before


# --------------------------------------------------------------------------- audio


STUDENT = "fuzzstudent0"


@pytest.fixture(scope="module")
def student_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding one done student whose checkpoint is an untrained tiny UNet."""
    folder = tmp_path_factory.mktemp("student")
    path = folder / "results.db"
    spec = ModelSpec("unet", {"channels": [2, 4]})
    model = get_registry().get("models", spec.family).build(spec.params)
    save_checkpoint(folder / "students" / f"{STUDENT}.pt", spec, model,
                    {"trial": STUDENT, "sample_rate": 16000})
    trial = a_student(
        STUDENT, dataset="procedural", results_dir=str(folder), metrics=("si_sdr",),
        pair="width", method="cosine",
    )
    store = Store(path)
    store.record(Outcome(trial, "done", scores=[Score("u0", "si_sdr", 1.0, None)]))
    store.close()
    return path


@st.composite
def audio_files(draw: st.DrawFn) -> bytes:
    """A sound file of random format, rate, channels, length and samples, possibly cut
    short or overwritten in places; or random bytes."""
    if draw(st.booleans()) and draw(st.booleans()):
        return draw(st.binary(max_size=2048))
    rate = draw(st.sampled_from([8000, 16000, 22050, 44100, 48000, 1000, 96000]))
    channels = draw(st.integers(1, 3))
    frames = draw(st.integers(0, 4000))
    fmt, subtype = draw(st.sampled_from(
        [("WAV", "PCM_16"), ("WAV", "FLOAT"), ("WAV", "PCM_24"), ("FLAC", "PCM_16")]
    ))
    kinds = ["noise", "silence", "loud"] + (["nan"] if subtype == "FLOAT" else [])
    samples = draw(st.sampled_from(kinds))
    rng = np.random.default_rng(draw(st.integers(0, 1000)))
    audio = {
        "noise": lambda: 0.1 * rng.standard_normal((frames, channels)),
        "silence": lambda: np.zeros((frames, channels)),
        "loud": lambda: 10.0 * rng.standard_normal((frames, channels)),
        "nan": lambda: np.full((frames, channels), np.nan),
    }[samples]()
    buffer = io.BytesIO()
    sf.write(buffer, audio, rate, format=fmt, subtype=subtype)
    data = bytearray(buffer.getvalue())
    damage = draw(st.sampled_from(["none", "truncated", "overwritten"]))
    if damage == "truncated":
        return bytes(data[: draw(st.integers(0, len(data)))])
    if damage == "overwritten":
        start = draw(st.integers(0, max(0, len(data) - 1)))
        patch = draw(st.binary(min_size=1, max_size=32))
        data[start : start + len(patch)] = patch
    return bytes(data)


@FUZZ
@given(content=audio_files(), folder_input=st.booleans())
def test_random_audio_gives_a_denoised_file_or_one_line_error(
    cli: CliRunner, student_store: Path, tmp_path: Path, content: bytes, folder_input: bool
) -> None:
    before = fingerprint(student_store)
    with tempfile.TemporaryDirectory(dir=tmp_path) as folder:
        source = Path(folder) / "in" / "noisy.wav"
        source.parent.mkdir()
        source.write_bytes(content)
        target = Path(folder) / ("out" if folder_input else "out.wav")
        result = cli.invoke(main, [
            "denoise", str(source.parent if folder_input else source), str(target),
            "--trial", STUDENT[:6], "--results", str(student_store),
        ])
        assert_result_or_one_line_error(result)
        if result.exit_code == 0:
            written = target / "noisy.wav" if folder_input else target
            assert sf.info(str(written)).channels == 1
    assert fingerprint(student_store) == before
