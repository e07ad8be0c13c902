"""Scoring a test split: `score_utterances(jobs=2)` against a plain serial loop.

The split is the procedural corpus's test split (60 utterances of 2 s), scored with
pesq_wb, stoi and si_sdr. The serial side calls `pesq.pesq` and `pystoi.stoi` directly
and computes SI-SDR in three numpy lines: what a script without kdbench would do. The
kdbench side includes input checks and shipping the audio to the workers; the workers
themselves live as long as the process (started by the untimed warm-up round here, by
the first trial in a grid), so their start-up is not charged to every split. `score_utterances(jobs=1)` is timed as well, to separate
the plugins' own overhead from the parallel speed-up.

Second figure, the reuse factor: the grid scores the noisy input and the teacher once per
dataset (reference trials) instead of once per student trial. The per-split times of
the three roles are measured as a trial runs them in a `quick` grid (where `jobs` = 2
trials share 2 cores, so each scores with one job) and combined with the grid's count.
"""

from __future__ import annotations

import os

# One BLAS thread, as a grid worker has (the local executor starts it with OMP_NUM_THREADS
# = the trial's threads, 1 for `jobs` = 2 on 2 cores). With numpy's default of one thread
# per core, OpenBLAS threads left spinning after pystoi's matrix products compete with
# PESQ for the cores and the serial side ran ~2.8x slower here, which would flatter the
# parallel side. Must be set before numpy is imported; export it to measure otherwise.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import concurrent.futures
import multiprocessing
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pesq
import torch
from _report import Spread, interleave, markdown_table, provenance, ratios, update_section, verdict
from _setup import build, pair, procedural_dataset, random_teacher
from pystoi import stoi

from kdbench.config import load_config
from kdbench.files.cache import cache_root
from kdbench.plugin.registry import get_registry
from kdbench.run.evaluate import score_utterances
from kdbench.run.grid import build_grid

TARGET = 1.8
METRICS = ("pesq_wb", "stoi", "si_sdr")
Item = tuple[str, np.ndarray, np.ndarray]


def serial_scores(items: Sequence[Item], rate: int) -> list[float]:
    """The plain loop, in kdbench's output order (utterances, then metrics)."""
    values = []
    for _, clean, estimate in items:
        clean64, estimate64 = clean.astype(np.float64), estimate.astype(np.float64)
        target = clean64 - clean64.mean()
        residual_free = estimate64 - estimate64.mean()
        projection = (residual_free @ target) / (target @ target) * target
        values += [
            pesq.pesq(rate, clean64, estimate64, "wb"),
            stoi(clean64, estimate64, rate, extended=False),
            10 * np.log10((projection @ projection) / ((residual_free - projection) @ (residual_free - projection))),
        ]
    return values


def denoised(model: torch.nn.Module, dataset) -> list[np.ndarray]:
    """The test split through a model, as a teacher or student trial denoises it."""
    with torch.inference_mode():
        return [
            model.denoise(torch.from_numpy(np.asarray(u.noisy, dtype=np.float32))[None])[0].numpy()
            for u in dataset.splits["test"]
        ]


def _spin(loops: int) -> float:
    start = time.perf_counter()
    total = 0
    for value in range(loops):
        total += value
    return time.perf_counter() - start


def parallel_capacity(pool: concurrent.futures.ProcessPoolExecutor, loops: int = 10_000_000) -> float:
    """How many cores' worth of pure-Python work two processes get right now: one busy
    loop alone, then two at once. On an idle 2-core machine this is 2; other workers' load
    lowers it, and no parallel speed-up can exceed it."""
    alone = pool.submit(_spin, loops).result()
    together = [future.result() for future in [pool.submit(_spin, loops) for _ in range(2)]]
    return 2 * alone / max(together)


def grid_counts() -> tuple[int, int, int]:
    """(noisy references, teachers, student trials) of `kdbench run --method cosine --pairs all`."""
    with tempfile.TemporaryDirectory() as results:
        grid = build_grid(load_config("quick"), get_registry(), cache_root(), Path(results),
                          methods=["cosine"], pairs=["all"])
    roles = [trial.role for trial in grid.references]
    return roles.count("noisy"), roles.count("teacher"), len(grid.students)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    dataset = procedural_dataset()
    rate = dataset.sample_rate
    metrics = [get_registry().get("metrics", name) for name in METRICS]
    test = dataset.splits["test"]
    clean = [np.asarray(u.clean, dtype=np.float32) for u in test]

    def items(estimates: Sequence[np.ndarray]) -> list[Item]:
        return [(u.id, c, e) for u, c, e in zip(test, clean, estimates)]

    noisy_items = items([np.asarray(u.noisy, dtype=np.float32) for u in test])
    chosen = pair("width")
    teacher, student = random_teacher(chosen.teacher), build(chosen.student).eval()
    last: dict[str, list[float]] = {}
    """The values of the latest parallel and serial runs, to check both sides agree."""

    def run_parallel() -> dict[str, float]:
        start = time.perf_counter()
        scores = score_utterances(metrics, noisy_items, rate, jobs=args.jobs)
        elapsed = time.perf_counter() - start
        last["kdbench"] = [score.value for score in scores]
        return {"split": elapsed}

    def run_serial() -> dict[str, float]:
        start = time.perf_counter()
        last["serial"] = serial_scores(noisy_items, rate)
        return {"split": time.perf_counter() - start}

    def run_role(model: torch.nn.Module | None) -> dict[str, float]:
        """A reference or student trial's evaluation: denoise the split, score it."""
        start = time.perf_counter()
        estimates = noisy_items if model is None else items(denoised(model, dataset))
        score_utterances(metrics, estimates, rate, jobs=1)
        return {"split": time.perf_counter() - start}

    probe = concurrent.futures.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"))
    cases = {
        "capacity": lambda: {"split": parallel_capacity(probe)},
        f"kdbench jobs={args.jobs}": run_parallel,
        "kdbench jobs=1 (noisy split)": lambda: run_role(None),
        "serial loop": run_serial,
        "teacher split (denoise + jobs=1)": lambda: run_role(teacher),
        "student split (denoise + jobs=1)": lambda: run_role(student),
    }
    print(f"scoring {len(test)} test utterances with {', '.join(METRICS)}")
    with probe:
        timings = {name: figures["split"] for name, figures in interleave(cases, args.repeats).items()}
    capacity = Spread.of(timings.pop("capacity"))
    parallel, one_job = timings[f"kdbench jobs={args.jobs}"], timings["kdbench jobs=1 (noisy split)"]
    serial = timings["serial loop"]
    speedup = ratios(serial, parallel)
    rows = [
        [f"serial loop / kdbench jobs={args.jobs} (speed-up)", speedup.format(2)],
        ["kdbench jobs=1 / serial loop (plugin overhead)", ratios(one_job, serial).format(2)],
    ]
    split_rows = [[name, Spread.of(values).format(2)] for name, values in timings.items()]
    noisy_refs, teachers, students = grid_counts()
    saved = Spread.of([
        ((students - noisy_refs) * n + (students - teachers) * t) / (students * (n + t + s))
        for n, t, s in zip(one_job, timings["teacher split (denoise + jobs=1)"],
                           timings["student split (denoise + jobs=1)"])
    ])
    agreement = max(abs(a - b) for a, b in zip(last["kdbench"], last["serial"]))
    body = "\n\n".join([
        provenance(),
        f"{len(test)} test utterances of {len(clean[0]) / rate:.0f} s (procedural defaults), "
        f"metrics {', '.join(METRICS)}, {args.repeats} repeats. Largest difference between kdbench's and the serial "
        f"loop's {len(last['serial'])} values: {agreement:.2g}.",
        markdown_table(["ratio", "min / median / max"], rows),
        markdown_table(["case", "seconds per split (min / median / max)"], split_rows),
        f"Target ≥ {TARGET}× with jobs={args.jobs}: {verdict(speedup.median, TARGET, lower_is_better=False)}. "
        f"Parallel capacity the machine offered during the run (cores' worth of work two busy "
        f"processes got; 2 when idle): {capacity.format(2)}.",
        f"Reuse: `kdbench run --method cosine --pairs all` (quick preset) has {students} student "
        f"trials, {noisy_refs} noisy-input and {teachers} teacher reference trial(s). Scoring the noisy "
        f"input and the teacher once per dataset instead of inside every student trial means "
        f"{noisy_refs + teachers + students} split evaluations instead of {3 * students}; weighted by "
        f"the measured per-split times this saves {saved.format(2)} (min / median / max) of the "
        f"evaluation work such a grid would otherwise do.",
    ])
    print(body)
    update_section("3. Evaluation of a test split", "bench_eval", body)


if __name__ == "__main__":
    main()
