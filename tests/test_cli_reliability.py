"""The command line under bad inputs: read-only commands never create or change a store,
broken plugins are named in one line, and the exit status says whether the grid is done."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from kdbench_plugins.datasets.procedural import plugin as procedural
from stores import a_store, a_version_1_store, fingerprint

from kdbench.cli import main
from kdbench.config import load_config
from kdbench.plugin import registry as registry_module
from kdbench.plugin.registry import get_registry
from kdbench.run.grid import build_grid
from kdbench.run.store import Store
from kdbench.run.trial import Outcome

OVERRIDES = ["run.pairs=width", "run.seeds=0"]
GRID = ["--preset", "ci", *(arg for item in OVERRIDES for arg in ("--set", item))]


def one_line_error(result: Result) -> str:
    """The error line of a command that failed as a user error should: exit status 2, no
    traceback, the message as the last line of stderr and on one line."""
    assert result.exit_code == 2, result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), result.stderr
    return last


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, session_cache: Path) -> CliRunner:
    monkeypatch.setenv("KDBENCH_CACHE", str(session_cache))
    return CliRunner()


def read_only_commands(store: Path, tmp_path: Path) -> dict[str, list[str]]:
    results = ["--results", str(store)]
    wav, out = str(tmp_path / "in.wav"), str(tmp_path / "out.wav")
    return {
        "leaderboard": ["leaderboard", *GRID, *results],
        "leaderboard json": ["leaderboard", *GRID, "--format", "json", *results],
        "status": ["status", *GRID, *results],
        "denoise --trial": ["denoise", wav, out, "--trial", "abc", *results],
        "denoise --best": ["denoise", wav, out, "--best", "--pair", "width", "--method",
                           "cosine", *results],
        "export": ["export", str(tmp_path / "s.onnx"), "--trial", "abc", *results],
    }


COMMANDS = list(read_only_commands(Path("x"), Path("y")))


@pytest.mark.parametrize("command", COMMANDS)
def test_a_read_only_command_on_a_missing_store_names_it_and_creates_nothing(
    cli: CliRunner, tmp_path: Path, command: str
) -> None:
    store = tmp_path / "typo" / "results.db"
    line = one_line_error(cli.invoke(main, read_only_commands(store, tmp_path)[command]))
    assert f"{store}: no results store there" in line
    assert not store.parent.exists()


@pytest.mark.parametrize("command", COMMANDS)
def test_a_read_only_command_on_a_file_that_is_not_a_store_says_so(
    cli: CliRunner, tmp_path: Path, command: str
) -> None:
    store = tmp_path / "junk.db"
    store.write_bytes(b"\x00\x01 not sqlite " * 100)
    before = fingerprint(store)
    line = one_line_error(cli.invoke(main, read_only_commands(store, tmp_path)[command]))
    assert f"{store}: not a kdbench results store (file is not a database)" in line
    assert fingerprint(store) == before


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("command", COMMANDS)
def test_a_read_only_command_leaves_a_store_as_it_found_it(
    cli: CliRunner, tmp_path: Path, command: str, version: int
) -> None:
    store = tmp_path / "store" / "results.db"
    store.parent.mkdir()
    (a_version_1_store if version == 1 else a_store)(store)
    before = fingerprint(store)
    result = cli.invoke(main, read_only_commands(store, tmp_path)[command])
    if command.startswith(("denoise", "export")):
        assert "no done student" in one_line_error(result) or "no student trial" in result.stderr
    else:
        assert result.exit_code == 0, result.output
    assert fingerprint(store) == before
    assert [p.name for p in store.parent.iterdir()] == ["results.db"]  # no -shm, no -wal


@pytest.mark.parametrize("command", ["leaderboard", "leaderboard json", "status"])
def test_reading_results_builds_no_corpus_and_finds_the_grids_trials(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, session_cache: Path,
    command: str,
) -> None:
    """A fresh clone's `kdbench status` on the published store used to generate the quick
    corpus (about a minute, 177 MB in the cache) to learn its identity; it fails where the
    cache may not be written. Datasets that can say their identity without audio now do."""
    registry = get_registry()
    config = load_config("ci", OVERRIDES, registry)
    prepared = build_grid(config, registry, session_cache, tmp_path)
    empty = tmp_path / "empty-cache"
    identified = build_grid(config, registry, empty, tmp_path, data="identify")
    assert [t.id for t in identified.trials] == [t.id for t in prepared.trials]
    assert {n: d.identity for n, d in identified.datasets.items()} == {
        n: d.identity for n, d in prepared.datasets.items()
    }
    assert not empty.exists()

    store = tmp_path / "store" / "results.db"
    store.parent.mkdir()
    a_store(store)
    monkeypatch.setenv("KDBENCH_CACHE", str(empty))
    result = cli.invoke(main, read_only_commands(store, tmp_path)[command])
    assert result.exit_code == 0, result.output
    assert not empty.exists()


def test_a_dry_run_touches_no_cache(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty-cache"
    monkeypatch.setenv("KDBENCH_CACHE", str(empty))
    result = cli.invoke(main, ["run", *GRID, "--dry-run"])
    assert result.exit_code == 0, result.output
    assert not empty.exists()


def test_run_on_a_file_that_is_not_a_store_refuses_it_untouched(
    cli: CliRunner, tmp_path: Path
) -> None:
    store = tmp_path / "photos.db"
    store.write_bytes(b"GIF89a" + bytes(range(256)) * 8)
    before = fingerprint(store)
    line = one_line_error(cli.invoke(main, ["run", *GRID, "--results", str(store)]))
    assert "not a kdbench results store" in line
    assert fingerprint(store) == before


# --------------------------------------------------------------------------- plugins


@pytest.fixture
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each command builds the registry again, from this test's environment."""
    monkeypatch.setattr(registry_module, "_default", None)


ANY_COMMAND = [["list"], ["list", "plugins"], ["status", *GRID], ["run", *GRID, "--dry-run"],
               ["data", "show", "--preset", "ci"]]


def test_a_plugin_module_that_fails_to_import_is_one_line_with_the_way_out(
    cli: CliRunner, fresh_registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "kd_half_installed.py").write_text("raise RuntimeError('half installed')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("KDBENCH_PLUGINS", "kd_half_installed")
    for command in ANY_COMMAND:
        line = one_line_error(cli.invoke(main, command))
        assert "plugin module 'kd_half_installed' named in KDBENCH_PLUGINS" in line
        assert "RuntimeError('half installed')" in line
        assert "remove it from KDBENCH_PLUGINS" in line


def test_a_broken_installed_entry_point_names_plugin_distribution_error_and_switch(
    cli: CliRunner, fresh_registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dist = tmp_path / "kd_broken_dist-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: kd-broken-dist\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[kdbench]\nmethods.broken = kd_broken_entry\n")
    (tmp_path / "kd_broken_entry.py").write_text("import a_module_nobody_installed\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("KDBENCH_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    for command in ANY_COMMAND:
        line = one_line_error(cli.invoke(main, command))
        assert "plugin 'methods.broken' from kd-broken-dist failed to load" in line
        assert "No module named 'a_module_nobody_installed'" in line
        assert "set KDBENCH_DISABLE_PLUGIN_AUTOLOAD=1" in line
    monkeypatch.setenv("KDBENCH_DISABLE_PLUGIN_AUTOLOAD", "1")
    started = cli.invoke(main, ["list", "methods"])
    assert started.exit_code == 0, started.output
    assert "cosine" in started.output


# --------------------------------------------------------------------------- exit status


def test_run_exits_1_while_a_trial_of_the_grid_is_failed_and_0_once_all_are_done(
    cli: CliRunner, session_cache: Path, tmp_path: Path
) -> None:
    """Outcomes are recorded up front, so the run has nothing to train: a failure from an
    earlier run, skipped now, still makes the grid incomplete."""
    path = tmp_path / "results.db"
    registry = get_registry()
    grid = build_grid(load_config("ci", OVERRIDES, registry), registry, session_cache, tmp_path)
    store = Store(path)
    for trial in grid.trials:
        store.record(Outcome(trial, "done", started=1.0, finished=2.0))
    failed = grid.students[0]
    store.record(Outcome(failed, "failed", error="kd loss exploded", started=3.0, finished=4.0))

    incomplete = cli.invoke(main, ["run", *GRID, "--results", str(path)])
    assert incomplete.exit_code == 1, incomplete.output
    assert "ran 0 trial(s)" in incomplete.stderr
    assert "1 trial(s) of the grid failed" in incomplete.stderr

    store.record(Outcome(failed, "not_applicable", error="n/a", started=5.0, finished=6.0))
    complete = cli.invoke(main, ["run", *GRID, "--results", str(path)])
    assert complete.exit_code == 0, complete.output


@pytest.mark.parametrize(
    ("command", "says"),
    [
        (["run", "--jobs", "many"], "'many' is not a valid integer"),
        (["run", *GRID, "--set", "train.stepz=3", "--dry-run"], "train.stepz"),
        (["run", *GRID, "--seeds", "0,x", "--dry-run"], "--seeds '0,x'"),
        (["run", *GRID, "--seeds", "0,-1", "--dry-run"], "--seeds '0,-1': must be >= 0, got -1"),
        (["run", *GRID, "--set", "tag[/red]=1", "--dry-run"], "tag[/red]"),
        (["run", *GRID, "--method", "[bold]x[/bold]", "--dry-run"], "'[bold]x[/bold]'"),
    ],
)
def test_usage_errors_exit_2_and_say_what_was_wrong(
    cli: CliRunner, command: list[str], says: str
) -> None:
    result = cli.invoke(main, command)
    assert result.exit_code == 2, result.output
    assert says in result.stderr and "Traceback" not in result.output


def test_a_full_disk_is_one_line_and_leaves_no_half_written_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(path: Path, audio) -> None:
        path.write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(procedural, "_save_split", disk_full)
    monkeypatch.setenv("KDBENCH_CACHE", str(tmp_path))
    line = one_line_error(CliRunner().invoke(main, ["data", "show", "--preset", "ci"]))
    assert "train.npz: No space left on device; nothing half-written was kept" in line
    assert [path.name for path in tmp_path.iterdir() if path.suffix != ".lock"] == []


def test_a_cache_this_user_may_not_write_is_one_line_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shared or read-only cache: the corpus cannot be written there (the permission
    itself is exercised for the store in test_store_safety, by a process that drops to
    nobody; here the error's path through the CLI)."""

    def not_allowed(path: Path, audio) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(procedural, "_save_split", not_allowed)
    monkeypatch.setenv("KDBENCH_CACHE", str(tmp_path))
    result = CliRunner().invoke(main, ["data", "show", "--preset", "ci"])
    assert result.exit_code == 2
    line = one_line_error(result)
    assert "train.npz: Permission denied; kdbench writes its cache under $KDBENCH_CACHE" in line
    assert "folders this user may write" in line


def test_the_exit_status_is_documented_in_the_help(cli: CliRunner) -> None:
    for command in (["--help"], ["run", "--help"]):
        shown = cli.invoke(main, command).output
        assert "Exit status:" in shown
        assert "1  some trials of the grid failed" in shown
        assert "2  usage error" in shown
