"""Every hook is documented where it is declared, in docs/plugins.md, and tested here.

Each `test_hook_<name>` checks what a third-party object registered through that hook
(tests/hook_stubs.py, loaded with KDBENCH_PLUGINS as an installed plugin would be) did in
one whole grid run through the real command line, runner, trials and evaluation.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from kdbench.cli import main
from kdbench.config import load_config
from kdbench.plugin.hookdocs import hook_functions, render_hook_reference
from kdbench.plugin.registry import get_registry
from kdbench.run.grid import build_grid
from kdbench.run.store import Store

DOCS = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"


@pytest.mark.parametrize("name", [name for name, _ in hook_functions()])
def test_every_hook_is_documented_and_has_its_own_test(name):
    function = dict(hook_functions())[name]
    assert (function.__doc__ or "").strip(), f"{name} has no docstring"
    assert f"### `{name}(" in DOCS.read_text(), f"{name} missing from docs/plugins.md"
    assert f"test_hook_{name}" in globals(), f"{name} has no test_hook_{name}"


def test_the_docs_hook_reference_is_up_to_date():
    assert render_hook_reference() in DOCS.read_text(), "run: python -m kdbench.plugin.hookdocs"


@pytest.fixture(scope="module")
def stub_grid(tmp_path_factory):
    """A whole grid of the stubs, run by the real CLI, runner, trial and evaluation."""
    folder = tmp_path_factory.mktemp("hooks")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KDBENCH_PLUGINS", "hook_stubs")
        patch.setenv("KDBENCH_CACHE", str(folder / "cache"))
        registry = get_registry(reload=True)
        settings = [
            "run.datasets=tones", "run.pairs=tiny", "run.metrics=peak_ratio",
            "run.executor=reversed", "run.seeds=0,1", "run.baseline=",
        ]
        results = folder / "results.db"
        args = ["run", "--preset", "ci", "--method", "zero_kd", "--results", str(results)]
        outcome = CliRunner().invoke(main, [*args, *(a for s in settings for a in ("--set", s))])
        assert outcome.exit_code == 0, outcome.output
        config = load_config("ci", settings, registry)
        grid = build_grid(config, registry, folder / "cache", folder, methods="zero_kd")
        store = Store(results)
        yield grid, store, store.trials(), store.scores(store.trials()["id"])
    get_registry(reload=True)


def test_hook_kdbench_register_methods(stub_grid):
    grid, _, trials, _ = stub_grid
    students = trials[trials["role"] == "student"]
    assert set(students["method"]) == {"zero_kd", "none"}
    assert set(students["status"]) == {"done"}
    assert grid.methods == ["none", "zero_kd"]


def test_hook_kdbench_register_pairs(stub_grid):
    grid, _, trials, _ = stub_grid
    assert grid.pairs == ["tiny"]
    assert set(trials["pair"].dropna()) == {"tiny"}


def test_hook_kdbench_register_models(stub_grid):
    _, _, trials, _ = stub_grid
    teacher = trials[trials["role"] == "teacher"].iloc[0]
    assert teacher["spec"]["teacher_spec"]["family"] == "gain"
    assert teacher["model"]["params"] == 257  # the cost columns measured the stub itself


def test_hook_kdbench_register_metrics(stub_grid):
    _, _, trials, scores = stub_grid
    assert set(scores["metric"]) == {"peak_ratio"}
    noisy = trials.loc[trials["role"] == "noisy", "id"].iloc[0]
    ratios = scores.loc[scores["trial_id"] == noisy, "value"]
    assert len(ratios) == 2 and all(1.0 < r < 1.6 for r in ratios)  # noise raises the peak


def test_hook_kdbench_register_datasets(stub_grid):
    grid, _, trials, scores = stub_grid
    assert set(trials["dataset_identity"]) == {"tones-0"}
    assert set(scores["utterance"]) == {"test0", "test1"}
    assert grid.datasets["tones"].identity == "tones-0"


def test_hook_kdbench_register_executors(stub_grid):
    from hook_stubs import Reversed

    grid, _, trials, _ = stub_grid
    stages = [[t.id for t in grid.anchors], [t.id for t in grid.students]]
    assert Reversed.ran == [tid for stage in stages for tid in reversed(stage)]
    assert len(trials) == len(grid.trials)
