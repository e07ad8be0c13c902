"""Inference real-time factor on one CPU thread: every pair's student and its teacher.

Measured with `kdbench.deploy.cost.model_cost` itself (median of its forwards on 4 s of
audio, one thread, eval mode, inference mode), i.e. the figure every trial records. The
models are interleaved within each repeat, so the teacher/student ratio of a repeat
compares two measurements taken under the same load.
"""

from __future__ import annotations

import argparse

from _report import Spread, interleave, markdown_table, provenance, ratios, update_section, verdict
from _setup import build

from kdbench.deploy.cost import model_cost
from kdbench.plugin.registry import get_registry

TARGET = 0.01
SAMPLE_RATE = 16000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--forwards", type=int, default=5, help="model_cost's rtf_repeats per measurement")
    args = parser.parse_args()
    registry = get_registry()
    pairs = [registry.get("pairs", name) for name in registry.select("pairs", ["all"])]
    teacher_of = {f"{p.name} student": f"teacher {p.teacher.params['channels']}" for p in pairs}
    models = {teacher_of[f"{p.name} student"]: build(p.teacher).eval() for p in pairs}
    models.update({f"{p.name} student": build(p.student).eval() for p in pairs})
    costs = {name: model_cost(model, SAMPLE_RATE, rtf_repeats=1) for name, model in models.items()}

    def case(name: str):
        return lambda: {"rtf": model_cost(models[name], SAMPLE_RATE, rtf_repeats=args.forwards)["rtf"]}

    print(f"RTF on one thread, {args.forwards} forwards of 4 s per measurement")
    timings = {name: f["rtf"] for name, f in interleave({n: case(n) for n in models}, args.repeats).items()}
    rows, worst = [], 0.0
    for name, values in timings.items():
        spread = Spread.of(values)
        student = name in teacher_of
        worst = max(worst, spread.median) if student else worst
        rows.append([
            name,
            f"{costs[name]['params'] / 1e3:.1f} k",
            f"{costs[name]['macs_per_second'] / 1e6:.0f} M",
            spread.format(4),
            ratios(timings[teacher_of[name]], values).format(1) if student else "—",
            ("met" if spread.median <= TARGET else "NOT met") if student else "(no target)",
        ])
    table = markdown_table(
        ["model", "params", "MACs per s of audio", "RTF (min / median / max)",
         "its teacher / student RTF", f"RTF ≤ {TARGET}"],
        rows,
    )
    print(table)
    update_section("5. Inference real-time factor", "bench_rtf", "\n\n".join([
        provenance(),
        f"Random-initialised models (speed does not depend on the weights), {args.repeats} repeats of "
        f"`model_cost(model, {SAMPLE_RATE}, rtf_repeats={args.forwards})`.",
        table,
        f"Target RTF ≤ {TARGET} for every student: {verdict(worst, TARGET)} (the slowest student's median).",
    ]))


if __name__ == "__main__":
    main()
