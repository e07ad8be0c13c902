"""A KD training step (cosine, fgspkd) against a no-KD step (`none`), all through `train()`.

Same pair, data, seed and threads; the teacher is the pair's (random weights, eval mode,
frozen: speed does not depend on what it learned). Each KD method is timed with the
per-crop teacher-output cache in three states:

- warm: every crop the trial draws is already cached (the steady state of a grid, where
  seeds and methods of one worker share the cache); filled by the untimed first round;
- cold: a fresh cache, as for the first trial in a worker: each crop not seen yet costs a
  teacher forward on that crop alone;
- off: no cache, the teacher runs live on the whole batch at every step.

Only the steady-state steps are compared (end of step 1 to end of step N-1, through
`on_step`), so the student's set-up and validation, identical for every method, do not
dilute the ratio.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Mapping

import torch

from _report import Spread, interleave, markdown_table, provenance, ratios, update_section, verdict
from _setup import build, pair, procedural_dataset, quick_train_settings, random_teacher
from kdbench.api import KDLoss, MaskDenoiser
from kdbench.registry import get_registry
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
    warm_cache = TeacherOutputs(teacher)

    def case(method: str, mode: str):
        def run() -> dict[str, float]:
            loss = kd_loss(method, teacher_shapes, student_shapes)
            cache = {"warm": warm_cache, "cold": TeacherOutputs(teacher), "off": None}[mode]
            if cache is not None:
                before = (cache.computed, cache.reused)
            marks: list[float] = []
            student = build(chosen.student)
            start = time.perf_counter()
            train(student, dataset.splits["train"], dataset.splits["valid"], settings, seed=0,
                  sample_rate=dataset.sample_rate, kd_loss=loss,
                  teacher=teacher if method != "none" else None, teacher_outputs=cache,
                  on_step=lambda step, total: marks.append(time.perf_counter()))
            figures = {"call": time.perf_counter() - start, "steps": marks[-2] - marks[0]}
            if cache is not None:
                computed, reused = cache.computed - before[0], cache.reused - before[1]
                figures["hit"] = reused / max(1, computed + reused)
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
        hit = timings[name].get("hit")
        rows.append([
            name.split("/")[0], name.split("/")[1], spread.format(),
            f"{Spread.of(timings[name]['steps']).median / inner * 1e3:.0f}",
            f"{Spread.of(hit).median:.0%}" if hit else "—",
        ])
    table = markdown_table(
        ["method", "teacher cache", "ratio vs none (min / median / max)", "ms/step (median)", "cache hits"], rows
    )
    print(table)
    update_section("2. KD step vs no-KD step", "bench_kd_step", "\n\n".join([
        provenance(),
        f"`{args.pair}` pair, teacher {chosen.teacher.params['channels']} (random init, eval, frozen), "
        f"student {chosen.student.params['channels']}; batch {settings['batch_size']}, "
        f"{settings['crop_seconds']} s crops on a {settings['crop_grid_seconds']} s grid, "
        f"{args.threads} torch thread(s); steps 2…{args.steps - 1} of {args.steps}, {args.repeats} repeats.",
        table,
        "Target ≤ 1.35 with the cache warm: "
        + "; ".join(f"{m}: {verdict(medians[f'{m}/warm'], TARGET)}" for m in KD_METHODS) + ".",
        cache_footprint(dataset, settings, warm_cache, teacher_shapes, student_shapes, crop),
    ]))


def cache_footprint(
    dataset, settings: Mapping, cache: TeacherOutputs, teacher_shapes: Mapping, student_shapes: Mapping,
    crop: int,
) -> str:
    """How many of the split's distinct crops each method's reads can keep within the
    budget: the warm state is only reachable when they all fit."""
    grid = int(round(settings["crop_grid_seconds"] * dataset.sample_rate))
    distinct = sum(
        1 if len(u.clean) <= crop else (len(u.clean) - crop) // grid + 1 for u in dataset.splits["train"]
    )
    lines = []
    for method in KD_METHODS:
        reads = kd_loss(method, teacher_shapes, student_shapes).teacher_reads()
        per_crop = sum(math.prod(teacher_shapes[name][1:]) * 4 for name in reads)
        kept = min(distinct, cache.budget // per_crop)
        lines.append(
            f"- {method} reads {', '.join(sorted(reads))}: {per_crop / 2**10:.0f} KiB per crop; "
            f"{distinct} distinct crops would take {distinct * per_crop / 2**20:.0f} MiB; the "
            f"{cache.budget / 2**20:.0f} MiB budget keeps {kept} ({kept / distinct:.0%})"
        )
    return "Cache footprint (training split, this pair):\n\n" + "\n".join(lines)


if __name__ == "__main__":
    main()
