"""A KD training step (cosine, fgspkd) against a no-KD step (`none`), all through `train()`.

Same pair, data, seed and threads; the teacher is the pair's (random weights, eval mode,
frozen: speed does not depend on what it learned). Each KD method is timed with the
teacher's per-crop output table in three states:

- warm: every crop the trial draws is already in the table (the steady state of a grid,
  where all trials that share a teacher share its table); filled by the untimed first round;
- cold: an empty table, as for the first KD trial of a grid: each utterance a batch draws
  from for the first time costs a teacher forward on every crop of that utterance, alone;
- off: no table, the teacher runs live on the whole batch at every step (what a method
  that does not declare its `teacher_reads` gets).

Only the steady-state steps are compared (end of step 1 to end of step N-1, through
`on_step`), so the student's set-up and validation, identical for every method, do not
dilute the ratio.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import torch
from _report import Spread, interleave, markdown_table, provenance, ratios, update_section, verdict
from _setup import build, pair, procedural_dataset, quick_train_settings, random_teacher

from kdbench.api import KDLoss, MaskDenoiser
from kdbench.plugin.registry import get_registry
from kdbench.train.crops import CropSampler
from kdbench.train.teacher_outputs import TeacherOutputs
from kdbench.train.trainer import train

TARGET = 1.35
KD_METHODS = ("cosine", "fgspkd")
MODES = ("warm", "cold", "off")


def latent_shapes(model: MaskDenoiser, samples: int) -> dict[str, torch.Size]:
    """Latent shapes on one crop, which a method needs to build its loss (as a trial does)."""
    with torch.no_grad():
        return {name: z.shape for name, z in model.eval()(torch.zeros(1, samples)).latents.items()}


def kd_loss(method: str, teacher_shapes: Mapping, student_shapes: Mapping) -> KDLoss:
    torch.manual_seed(0)
    plugin = get_registry().get("methods", method)()
    return plugin.build(teacher_shapes if plugin.needs_teacher else {}, student_shapes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--pair", default="width")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dataset = procedural_dataset()
    settings = quick_train_settings(args.steps)
    chosen = pair(args.pair)
    teacher = random_teacher(chosen.teacher)
    crop = int(round(settings["crop_seconds"] * dataset.sample_rate))
    teacher_shapes = latent_shapes(teacher, crop)
    student_shapes = latent_shapes(build(chosen.student), crop)
    with tempfile.TemporaryDirectory(prefix="kdbench-bench-tables-") as tables:
        measure(args, dataset, settings, chosen, teacher, teacher_shapes, student_shapes, Path(tables))


def measure(args, dataset, settings, chosen, teacher, teacher_shapes, student_shapes, tables: Path) -> None:
    """Time every case, interleaved; the tables live under `tables`, removed afterwards
    (a cold table of fgspkd alone is gigabytes)."""
    warm_cache = TeacherOutputs(teacher, tables / "warm")
    fresh = itertools.count()

    def case(method: str, mode: str):
        def run() -> dict[str, float]:
            loss = kd_loss(method, teacher_shapes, student_shapes)
            if mode == "warm":
                cache = warm_cache
            elif mode == "cold":
                cache = TeacherOutputs(teacher, tables / f"cold-{next(fresh)}")
            else:
                cache = None
            if cache is not None:
                before = (cache.computed, cache.from_table)
            marks: list[float] = []
            student = build(chosen.student)
            start = time.perf_counter()
            train(student, dataset.splits["train"], dataset.splits["valid"], settings, seed=0,
                  sample_rate=dataset.sample_rate, kd_loss=loss,
                  teacher=teacher if method != "none" else None, teacher_outputs=cache,
                  on_step=lambda step, total: marks.append(time.perf_counter()))
            figures = {"call": time.perf_counter() - start, "steps": marks[-2] - marks[0]}
            if cache is not None:
                computed = cache.computed - before[0]
                figures["forwards"] = computed / max(1, cache.from_table - before[1])
            if mode == "cold":  # untimed: drop the gigabytes and let writeback finish here,
                shutil.rmtree(cache.folder)  # not during the next case's timing
                os.sync()
            return figures
        return run

    cases = {"none": case("none", "off")}
    cases.update({f"{m}/{mode}": case(m, mode) for m in KD_METHODS for mode in MODES})
    print(f"KD step vs none: {args.pair} pair, {args.steps} steps, {args.threads} thread(s)")
    timings = interleave(cases, args.repeats)
    base = timings["none"]["steps"]
    inner = args.steps - 2
    rows = [["none", "—", "1", f"{Spread.of(base).median / inner * 1e3:.0f}", "—"]]
    medians: dict[str, float] = {}
    for name in cases:
        if name == "none":
            continue
        spread = ratios(timings[name]["steps"], base)
        medians[name] = spread.median
        forwards = timings[name].get("forwards")
        rows.append([
            name.split("/")[0], name.split("/")[1], spread.format(),
            f"{Spread.of(timings[name]['steps']).median / inner * 1e3:.0f}",
            f"{Spread.of(forwards).median:.2f}" if forwards else "—",
        ])
    table = markdown_table(
        ["method", "teacher table", "ratio vs none (min / median / max)", "ms/step (median)",
         "teacher forwards per crop drawn"],
        rows,
    )
    print(table)
    update_section("2. KD step vs no-KD step", "bench_kd_step", "\n\n".join([
        provenance(),
        f"`{args.pair}` pair, teacher {chosen.teacher.params['channels']} (random init, eval, frozen), "
        f"student {chosen.student.params['channels']}; batch {settings['batch_size']}, "
        f"{settings['crop_seconds']} s crops on a {settings['crop_grid_seconds']} s grid, "
        f"{args.threads} torch thread(s); steps 2…{args.steps - 1} of {args.steps}, {args.repeats} repeats.",
        table,
        "Target ≤ 1.35 with the table warm: "
        + "; ".join(f"{m}: {verdict(medians[f'{m}/warm'], TARGET)}" for m in KD_METHODS) + ".",
        table_footprint(dataset, settings, warm_cache, teacher_shapes, student_shapes),
    ]))


def table_footprint(
    dataset, settings: Mapping, cache: TeacherOutputs, teacher_shapes: Mapping, student_shapes: Mapping,
) -> str:
    """The disk each method's table takes (names that are one tensor counted once), against
    the budget: a method whose table does not fit runs the teacher per crop at every step."""
    sampler = CropSampler(
        dataset.splits["train"],
        crop_samples=int(round(settings["crop_seconds"] * dataset.sample_rate)),
        batch_size=1,
        seed=0,
        grid_samples=int(round(settings["crop_grid_seconds"] * dataset.sample_rate)),
    )
    distinct = sampler.crop_count()
    lines = []
    for method in KD_METHODS:
        reads = kd_loss(method, teacher_shapes, student_shapes).teacher_reads()
        stored = sorted({cache.stored_as[name] for name in reads})
        per_crop = sum(cache.crop_bytes[name] for name in stored)
        lines.append(
            f"- {method} reads {', '.join(sorted(reads))} (stored: {', '.join(stored)}): "
            f"{per_crop / 2**10:.0f} KiB per crop × {distinct} distinct crops = "
            f"{distinct * per_crop / 2**20:.0f} MiB on disk, within the "
            f"{cache.budget / 2**20:.0f} MiB budget: {'yes' if distinct * per_crop <= cache.budget else 'no'}"
        )
    return "Table footprint (training split, this pair):\n\n" + "\n".join(lines)


if __name__ == "__main__":
    main()
