"""Where one student trial's time goes: a cProfile of a `quick` grid trial, run as a worker runs it.

The trial is built by the grid (same id, settings and teacher as in `kdbench run`) and
executed in-process on one torch thread with OMP_NUM_THREADS=1, as each of the two
workers of the `quick` preset runs it. An untimed first trial of the same method (another
seed) loads the dataset, trains or loads the teacher and fills the teacher-output table,
so the profile shows a trial in the steady state of a grid. Needs the corpus and teacher in
`$KDBENCH_CACHE` (made on first use, as `kdbench run` would).
"""

from __future__ import annotations

import os

os.environ["OMP_NUM_THREADS"] = "1"  # before torch is imported, as a grid worker starts

import argparse
import cProfile
import dataclasses
import pstats
import tempfile
import time
from pathlib import Path

import torch
from _report import markdown_table, provenance, update_section

from kdbench.config import load_config
from kdbench.files.cache import cache_root
from kdbench.plugin.registry import get_registry
from kdbench.run.grid import build_grid
from kdbench.run.trial import Trial, execute


def grid_trial(method: str, pair: str, seed: int, results: Path) -> Trial:
    grid = build_grid(
        load_config("quick"), get_registry(), cache_root(), results, methods=method, pairs=pair, seeds=[seed]
    )
    trial = next(t for t in grid.students if t.method == method)
    return dataclasses.replace(trial, threads=1, eval_jobs=1)


def _label(function: tuple[str, int, str]) -> str:
    filename, line, name = function
    if filename == "~":
        return name.strip("<>")
    return f"{Path(filename).name}:{line} {name}"


def profile(method: str, pair: str, top: int, results: Path) -> tuple[str, list[list[str]]]:
    execute(grid_trial(method, pair, 1, results))
    trial = grid_trial(method, pair, 0, results)
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    outcome = execute(trial)
    profiler.disable()
    total = time.perf_counter() - started
    assert outcome.status == "done", outcome.error
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    by_self = sorted(stats.items(), key=lambda item: item[1][2], reverse=True)[:top]
    rows = [
        [f"`{_label(function)}`", str(calls), f"{self_time:.2f}", f"{self_time / total:.0%}"]
        for function, (_, calls, self_time, _, _) in by_self
    ]
    steps, every = trial.train_settings["steps"], trial.train_settings["valid_every"]
    heading = (
        f"`{pair}/{method}/seed 0`: {total:.1f} s in all, of which training "
        f"{outcome.details['train']['seconds']:.1f} s ({steps} steps, {steps // every} validations)."
    )
    return heading, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="none,cosine,fgspkd")
    parser.add_argument("--pair", default="width")
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    torch.set_num_threads(1)
    parts = [provenance()]
    with tempfile.TemporaryDirectory(prefix="kdbench-profile-") as results:
        for method in args.methods.split(","):
            heading, rows = profile(method, args.pair, args.top, Path(results))
            table = markdown_table(["function (self time)", "calls", "seconds", "share of trial"], rows)
            print(heading, table, sep="\n\n")
            parts += [heading, table]
    update_section("6. Where a trial's time goes", "profile_trial", "\n\n".join(parts))


if __name__ == "__main__":
    main()
