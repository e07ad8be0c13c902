"""Shared by the benchmark scripts: side-by-side timing, ratio statistics, BENCHMARKS.md.

The machine is shared with other workers, so absolute seconds drift with their load. Every
benchmark therefore times its cases in one process, interleaved within each repeat (the
order rotated from repeat to repeat, so neither side always runs first or last), and
reports per-repeat RATIOS, whose spread (min/median/max) says how much the load disturbed
them. BENCHMARKS.md is regenerated section by section: a script rewrites only the block
between its markers, so hand-written analysis next to it survives a rerun.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch

from kdbench.run.platform import describe, label

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "BENCHMARKS.md"
PREAMBLE = """# Benchmarks

Performance figures of kdbench, each measured side by side against a reference that does
the same work the plainest way. Run by hand (not in CI): `python benchmarks/bench_X.py`;
each script prints its table and rewrites its own block below (between its `<!-- ... -->`
markers; the notes around a block are written by hand and kept).

Why ratios: the benchmark machine is shared, so absolute times move with other workers'
load. Both sides run in one process, interleaved within every repeat with the order
rotated, and each repeat gives one ratio; min/median/max over the repeats shows the noise.
"""


@dataclasses.dataclass(frozen=True)
class Spread:
    """Min, median and max of repeated measurements."""

    low: float
    median: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        return cls(min(values), statistics.median(values), max(values))

    def format(self, digits: int = 3) -> str:
        return f"{self.low:.{digits}f} / {self.median:.{digits}f} / {self.high:.{digits}f}"


def interleave(
    cases: Mapping[str, Callable[[], Mapping[str, float]]], repeats: int
) -> dict[str, dict[str, list[float]]]:
    """Run every case once untimed, then once per repeat in rotating order.

    A case times itself (it knows what part is setup) and returns its named figures in
    seconds (or other numbers, e.g. a hit rate), e.g. {"call": ..., "steps": ...}; the result is case -> figure -> one value per
    repeat. The untimed round absorbs first-call costs (kernel selection, lazy imports,
    allocator growth) that would otherwise land on whichever case happens to run first.
    """
    names = list(cases)
    for name in names:
        cases[name]()
    timings: dict[str, dict[str, list[float]]] = {name: {} for name in names}
    for repeat in range(repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            for figure, seconds in cases[name]().items():
                timings[name].setdefault(figure, []).append(seconds)
        print(f"  repeat {repeat + 1}/{repeats}: " + ", ".join(
            f"{name} " + " ".join(f"{fig}={vals[-1]:.3g}" for fig, vals in timings[name].items())
            for name in names
        ), flush=True)
    return timings


def ratios(numerator: Sequence[float], denominator: Sequence[float]) -> Spread:
    """Per-repeat ratios: the two sides of one repeat ran under the same load."""
    return Spread.of([a / b for a, b in zip(numerator, denominator)])


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def provenance() -> str:
    """Command, machine, commit and date: what a reader needs to trust or redo a figure.

    The load average is recorded because the machine is shared: it says how busy the
    other workers kept the cores while the figure was taken.
    """
    dirty = " (with uncommitted changes)" if _git("status", "--porcelain") else ""
    command = "python " + " ".join(shlex.quote(arg) for arg in [
        os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]
    ])
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return "\n".join([
        f"- command: `{command}`",
        f"- machine: {label(describe())}, {os.cpu_count()} cores; load average at the end {load}",
        f"- commit: `{_git('rev-parse', 'HEAD')}`{dirty}",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
        f"- software: Python {platform.python_version()}, torch {torch.__version__}",
    ])


def verdict(value: float, target: float, lower_is_better: bool = True) -> str:
    met = value <= target if lower_is_better else value >= target
    sign = "≤" if lower_is_better else "≥"
    return f"{'met' if met else 'NOT met'} (median {value:.3f}, target {sign} {target})"


_HEADING = re.compile(r"^## (\d+)\. ", re.MULTILINE)


def _sections(text: str) -> tuple[str, list[str]]:
    """The preamble and the `## N. ...` sections, each with its heading."""
    starts = [match.start() for match in _HEADING.finditer(text)]
    if not starts:
        return text, []
    bounds = [*starts, len(text)]
    return text[: starts[0]], [text[a:b] for a, b in zip(bounds, bounds[1:])]


def _number(section: str) -> int:
    match = _HEADING.match(section)
    assert match is not None
    return int(match.group(1))


def update_section(heading: str, marker: str, body: str, path: Path = REPORT) -> None:
    """Put `body` between `marker`'s begin/end comments under `## heading`.

    The section is created (in numeric order) if missing; anything outside the markers
    is left as it was, so notes written by hand are not lost when a figure is re-measured.
    """
    text = path.read_text() if path.exists() else PREAMBLE
    preamble, sections = _sections(text)
    begin, end = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
    block = f"{begin}\n{body.strip()}\n{end}"
    title = f"## {heading}"
    for index, section in enumerate(sections):
        if section.splitlines()[0].strip() == title:
            if begin in section and end in section:
                head, rest = section.split(begin, 1)
                sections[index] = head + block + rest.split(end, 1)[1]
            else:
                sections[index] = section.rstrip() + "\n\n" + block + "\n\n"
            break
    else:
        sections.append(f"{title}\n\n{block}\n\n")
    sections.sort(key=_number)
    path.write_text(preamble.rstrip() + "\n\n" + "".join(s.rstrip() + "\n\n" for s in sections).rstrip() + "\n")
