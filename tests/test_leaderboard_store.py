"""The committed leaderboard store is a store of today's grid, so the run it holds resumes.

`leaderboards/runs/procedural-quick.db` holds every trial of the published run, which took
longer than a session (leaderboards/README.md), so `kdbench leaderboard` re-renders the pages
from it. A change of the code, the corpus or the quick preset that changes trial ids would
orphan them: the next `kdbench run` into that store would silently start the grid again
beside rows no page can use. This fails first, naming
the way out (re-run into a fresh store, or restore the ids).
"""

from __future__ import annotations

from pathlib import Path

from kdbench.config import load_config
from kdbench.plugin.registry import get_registry
from kdbench.run.grid import build_grid
from kdbench.run.store import Store

ROOT = Path(__file__).resolve().parent.parent
STORE = ROOT / "leaderboards" / "runs" / "procedural-quick.db"
SEEDS = list(range(12))
"""The published grid's seeds (leaderboards/README.md)."""


def test_every_finished_trial_of_the_committed_store_is_a_trial_of_todays_grid(
    session_cache: Path, tmp_path: Path
) -> None:
    registry = get_registry()
    grid = build_grid(
        load_config("quick", [], registry), registry, session_cache, tmp_path,
        methods="all", pairs="all", seeds=SEEDS,
    )
    store = Store(STORE, read_only=True)
    try:
        trials = store.trials()
    finally:
        store.close()
    done = set(trials.loc[trials["status"] == "done", "id"])
    orphaned = done - {trial.id for trial in grid.trials}
    assert not orphaned, (
        f"{len(orphaned)} finished trial(s) of {STORE.name} are not trials of today's quick grid: "
        "a change altered their ids; re-run the leaderboard into a fresh store or restore them"
    )
    assert {trial.id for trial in grid.anchors} <= done
    missing = {trial.id for trial in grid.students} - done
    assert not missing, f"the published grid is complete; {len(missing)} student trial(s) are not done"
