"""The prepared GPU check (issue 16): what kdbench does on a GPU, in one short run.

Run it through `benchmarks/gpu_check.sh`, which sets up a bare GPU machine first. It
prints, and writes to `--out` as markdown:

1. agreement: a tiny grid (the `ci` preset, one pair, one seed) run with `run.device=cpu`
   and on the GPU: the same trial ids, and per-utterance scores within `TOLERANCE` (the
   bits differ: a GPU sums in another order, and training carries that forward);
2. determinism: one seed trained twice on the GPU in deterministic mode (the default), in
   fp32 and bf16, without and with a KD method and its teacher-output table (filled by the
   first run, read by the second): identical weights, bit for bit;
3. paper-scale step times: the paper teacher and each paper student (batch 16, 2 s crops,
   the `paper` preset's settings) in fp32 and bf16, and the KD overhead of a method served
   by the teacher-output table (cosine) and of one whose teacher runs live (fgspkd);
4. trials per hour with 1, 4 and 8 trials at once on the GPU (separate processes started
   together, as the local executor runs them, each with its share of the cores);
5. the GPU-hours of `--preset paper --method all` extrapolated from 3 and 4, next to the
   dry run's FLOP-count estimate.

Step times are differences: `train()` of N2 steps minus `train()` of N1 steps, over N2 − N1,
after a warm-up run, with the GPU synchronised around each call; set-up and the final
validation cancel out. Validation during training (every 1000 steps) and the test-split
evaluation (metrics on the CPU, beside the GPU work) are not in the step times.

`--mode cpu-smoke` runs every step on the CPU with tiny sizes: it checks the script, not
a machine, and its figures mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _report import markdown_table, provenance
from _setup import build, pair, random_teacher

from kdbench.api import KDLoss, MaskDenoiser, Utterance, resolve_device
from kdbench.config import load_config
from kdbench.plugin.registry import get_registry
from kdbench.run.grid import build_grid
from kdbench.train.numerics import configure_cuda
from kdbench.train.teacher_outputs import TeacherOutputs
from kdbench.train.trainer import train

RATE = 16000
TOLERANCE = {"si_sdr": 0.05, "stoi": 0.005, "pesq_wb": 0.05}
"""Largest |GPU − CPU| on one utterance accepted for the tiny grid (si_sdr in dB). Its
six to eight training steps carry last-bit differences forward only a little."""

PAPER_PAIRS = ("paper_width", "paper_kernel", "paper_depth", "paper_width8", "paper_width_depth")
AGREEMENT_GRID = ["run.pairs=width", "run.seeds=0", "run.metrics=si_sdr,stoi,pesq_wb", "run.jobs=1"]

SIZES: dict[str, dict[str, Any]] = {
    "gpu": {
        "batch": 16, "crop": 2.0, "utterances": 32, "seconds": 3.0,
        "steps": (10, 60), "determinism_steps": 20,
        "concurrency": (1, 4, 8), "concurrent_steps": 300,
    },
    "cpu-smoke": {
        "batch": 2, "crop": 0.5, "utterances": 4, "seconds": 1.0,
        "steps": (1, 3), "determinism_steps": 3,
        "concurrency": (1, 2), "concurrent_steps": 3,
    },
}


def say(text: str = "") -> None:
    print(text, flush=True)


# --------------------------------------------------------------------------- data, settings


def synthetic_split(count: int, seconds: float, seed: int = 0) -> list[Utterance]:
    """Voiced tones in white noise: what a step costs does not depend on the audio."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    split = []
    for index in range(count):
        clean = 0.3 * np.sin(2 * np.pi * (120 + 15 * index) * t) * (1 + np.sin(2 * np.pi * 3 * t))
        noisy = clean + 0.1 * rng.standard_normal(t.shape)
        split.append(Utterance(f"u{index}", clean.astype(np.float32), noisy.astype(np.float32)))
    return split


def paper_settings(section: str, size: dict[str, Any], steps: int, precision: str) -> dict[str, Any]:
    """The paper preset's `train` or `teacher` settings at this check's size, no validation
    but the one at the last step."""
    settings = dict(getattr(load_config("paper"), section))
    settings.update(
        steps=steps, batch_size=size["batch"], crop_seconds=size["crop"],
        valid_every=10**9, checkpoint="last", precision=precision,
    )
    return settings


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------- one training run


class Job:
    """One student or teacher training setup: a model, optionally a KD method with its
    frozen teacher and teacher-output table, at one precision."""

    def __init__(
        self, pair_name: str, role: str, method: str, precision: str, size: dict[str, Any],
        device: torch.device, table: Path | None,
    ) -> None:
        self.pair = pair(pair_name)
        self.role, self.method, self.precision, self.size = role, method, precision, size
        self.device = device
        self.data = synthetic_split(size["utterances"], size["seconds"])
        self.teacher: MaskDenoiser | None = None
        self.outputs: TeacherOutputs | None = None
        if method != "none":
            self.teacher = random_teacher(self.pair.teacher).to(device)
            self.outputs = TeacherOutputs(self.teacher, table)

    def _kd(self, student: MaskDenoiser) -> KDLoss | None:
        if self.teacher is None:
            return None
        crop = int(self.size["crop"] * RATE)

        def shapes(model: MaskDenoiser) -> dict[str, torch.Size]:
            with torch.no_grad():
                return {k: v.shape for k, v in model.eval()(torch.zeros(1, crop, device=self.device)).latents.items()}

        method = get_registry().get("methods", self.method)()
        return method.build(shapes(self.teacher), shapes(student))

    def run(self, steps: int, seed: int = 0) -> tuple[float, MaskDenoiser]:
        """Seconds of one `train()` call of `steps` steps, and the trained model."""
        spec = self.pair.teacher if self.role == "teacher" else self.pair.student
        model = build(spec, seed).to(self.device)
        kd = self._kd(model)
        section = "teacher" if self.role == "teacher" else "train"
        settings = paper_settings(section, self.size, steps, self.precision)
        synchronize(self.device)
        start = time.perf_counter()
        train(model, self.data, self.data[:1], settings, seed=seed, sample_rate=RATE,
              kd_loss=kd, teacher=self.teacher, teacher_outputs=self.outputs, device=self.device)
        synchronize(self.device)
        return time.perf_counter() - start, model

    def step_seconds(self) -> float:
        """Per-step time: the difference of two runs after a warm-up run (see module doc)."""
        short, long = self.size["steps"]
        self.run(short)
        return (self.run(long)[0] - self.run(short)[0]) / (long - short)


# --------------------------------------------------------------------------- 1. agreement


def _kdbench(args: Sequence[str], cache: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-c", "from kdbench.cli import main; main()", *args],
        env={**os.environ, "KDBENCH_CACHE": str(cache), "COLUMNS": "200"},
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"kdbench {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout + result.stderr


def _scores(store: Path) -> dict[tuple[str, str, str], float]:
    with sqlite3.connect(store) as db:
        rows = db.execute("SELECT trial_id, utterance, metric, value FROM scores").fetchall()
    return {(trial, utterance, metric): value for trial, utterance, metric, value in rows}


def agreement(work: Path, reference: str, candidate: str) -> tuple[str, bool]:
    stores = {}
    for device in (reference, candidate):
        stores[device] = work / f"agreement-{device.replace(':', '')}" / "results.db"
        _kdbench(["run", "--preset", "ci", *(a for o in AGREEMENT_GRID for a in ("--set", o)),
                  "--set", f"run.device={device}", "--results", str(stores[device])],
                 work / f"cache-{device.replace(':', '')}")
    first, second = _scores(stores[reference]), _scores(stores[candidate])
    same_trials = first.keys() == second.keys()
    rows, ok = [], same_trials
    for metric, tolerance in TOLERANCE.items():
        gaps = [abs(first[key] - second[key]) for key in first
                if key[2] == metric and key in second and None not in (first[key], second[key])]
        worst = max(gaps, default=float("nan"))
        ok = ok and bool(gaps) and worst <= tolerance
        rows.append([metric, str(len(gaps)), f"{worst:.2e}", f"{tolerance:g}",
                     "yes" if gaps and worst <= tolerance else "NO"])
    table = markdown_table(["metric", "scores compared", f"max abs({candidate} − {reference})",
                            "tolerance", "within"], rows)
    trials = len({key[0] for key in first})
    text = (f"Tiny grid (`ci` preset, {', '.join(AGREEMENT_GRID)}): {trials} trials, "
            f"same trial ids on both: {'yes' if same_trials else 'NO'}.\n\n{table}")
    return text, ok


# --------------------------------------------------------------------------- 2. determinism


def _weights(model: MaskDenoiser) -> torch.Tensor:
    return torch.cat([tensor.detach().flatten().double().cpu() for tensor in model.state_dict().values()])


def determinism(work: Path, device: torch.device, size: dict[str, Any]) -> tuple[str, bool]:
    rows, ok = [], True
    cases = [("width", "none", "fp32"), ("width", "cosine", "fp32"), ("depth", "fgspkd", "fp32"),
             ("width", "none", "bf16"), ("depth", "fgspkd", "bf16")]
    for pair_name, method, precision in cases:
        job = Job(pair_name, "student", method, precision, size, device, work / f"table-{pair_name}-{method}-{precision}")
        first = _weights(job.run(size["determinism_steps"], seed=3)[1])
        second = _weights(job.run(size["determinism_steps"], seed=3)[1])
        same = torch.equal(first, second)
        ok = ok and same
        rows.append([pair_name, method, precision, "yes" if same else "NO",
                     f"{float((first - second).abs().max()):.2e}"])
    table = markdown_table(["pair", "method", "precision", "identical weights", "max abs difference"], rows)
    return (f"Same seed, {size['determinism_steps']} steps, twice (the KD table filled by the "
            f"first run, read by the second):\n\n{table}"), ok


# --------------------------------------------------------------------------- 3. step times


def step_times(work: Path, device: torch.device, size: dict[str, Any]) -> tuple[str, dict[str, float]]:
    """ms per step of every paper model and of two KD methods on the width pair."""
    times: dict[str, float] = {}
    rows = []
    jobs = [("teacher", PAPER_PAIRS[0], "teacher", "none")]
    jobs += [(name, name, "student", "none") for name in PAPER_PAIRS]
    jobs += [(f"{PAPER_PAIRS[0]} + {method}", PAPER_PAIRS[0], "student", method) for method in ("cosine", "fgspkd")]
    for label, pair_name, role, method in jobs:
        row = [label]
        for precision in ("fp32", "bf16"):
            table = work / f"steps-table-{method}" if method == "cosine" else None
            seconds = Job(pair_name, role, method, precision, size, device, table).step_seconds()
            times[f"{label}/{precision}"] = seconds
            row.append(f"{seconds * 1e3:.2f}")
        rows.append(row)
        say(f"  {label}: fp32 {row[1]} ms, bf16 {row[2]} ms")
    table = markdown_table(["model", "fp32 ms/step", "bf16 ms/step"], rows)
    note = (f"Batch {size['batch']}, {size['crop']} s crops; cosine reads the bottleneck from "
            "the teacher-output table (warm); fgspkd's teacher runs live, crop by crop, as it "
            "does at paper scale, where its encoder latents (about 2 MB per crop) exceed the "
            "table's disk budget.")
    return f"{note}\n\n{table}", times


# --------------------------------------------------------------------------- 4. concurrency


def worker(spec: dict[str, Any]) -> None:
    """One of the concurrent trials: warm up, wait for the others, time its steps."""
    torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    if device.type == "cuda":
        configure_cuda(True)
    job = Job(spec["pair"], "student", spec["method"], spec["precision"], spec["size"], device, None)
    job.run(spec["size"]["steps"][0])
    Path(spec["ready"]).touch()
    while not Path(spec["go"]).exists():
        time.sleep(0.01)
    seconds, _ = job.run(spec["steps"])
    Path(spec["result"]).write_text(json.dumps({"seconds": seconds, "finished": time.time()}))


def concurrency(work: Path, device: torch.device, size: dict[str, Any], precision: str) -> tuple[str, dict[int, float]]:
    """Aggregate steps per second with K trials at once on the device, K in the sizes."""
    throughput: dict[int, float] = {}
    rows = []
    steps = size["concurrent_steps"]
    for count in size["concurrency"]:
        folder = Path(tempfile.mkdtemp(prefix=f"concurrent-{count}-", dir=work))
        threads = max(1, (os.cpu_count() or 1) // count)
        processes = []
        for index in range(count):
            spec = {"pair": PAPER_PAIRS[0], "method": "none", "precision": precision, "size": size,
                    "device": str(device), "threads": threads, "steps": steps,
                    "ready": str(folder / f"{index}.ready"), "go": str(folder / "go"),
                    "result": str(folder / f"{index}.json")}
            processes.append(subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(spec)]))
        while not all((folder / f"{index}.ready").exists() for index in range(count)):
            if any(process.poll() not in (None, 0) for process in processes):
                raise RuntimeError(f"a concurrent trial failed to start ({count} at once)")
            time.sleep(0.05)
        started = time.time()
        (folder / "go").touch()
        for process in processes:
            if process.wait() != 0:
                raise RuntimeError(f"a concurrent trial failed ({count} at once)")
        results = [json.loads((folder / f"{index}.json").read_text()) for index in range(count)]
        wall = max(result["finished"] for result in results) - started
        throughput[count] = count * steps / wall
        per_trial = wall / steps
        trial_steps = load_config("paper").train["steps"]
        rows.append([str(count), str(threads), f"{per_trial * 1e3:.2f}", f"{throughput[count]:.0f}",
                     f"{throughput[count] * 3600 / trial_steps:.1f}",
                     f"{throughput[count] / throughput[min(throughput)]:.2f}"])
        say(f"  {count} at once: {throughput[count]:.0f} steps/s")
    table = markdown_table(["trials at once", "threads each", "ms/step each", "steps/s, all",
                            f"trials/hour ({load_config('paper').train['steps']} steps)", "speed-up"], rows)
    note = (f"`{PAPER_PAIRS[0]}` students without KD, {precision}, {steps} timed steps each, "
            "started together after a warm-up; trials/hour counts training steps only.")
    return f"{note}\n\n{table}", throughput


# --------------------------------------------------------------------------- 5. extrapolation


def dry_run_hours(work: Path) -> str:
    output = _kdbench(["run", "--dry-run", "--preset", "paper", "--method", "all"], work / "cache-dry")
    match = re.search(r"≈ ([\d.]+) GPU-hours at an assumed effective ([\d.]+) TFLOP/s", output)
    return f"{match.group(1)} GPU-hours (at an assumed {match.group(2)} TFLOP/s)" if match else "?"


def extrapolate(work: Path, times: dict[str, float], throughput: dict[int, float], precision: str) -> str:
    """GPU-hours of the paper grid: the teacher alone, then the students at the best
    measured concurrency. A method's step is its pair's plain step times the overhead
    measured on the width pair: fgspkd's for fgspkd, cosine's for the other KD methods
    (they read a few latents or the magnitude from the table), none's own for none."""
    registry = get_registry()
    grid = build_grid(load_config("paper"), registry, work, work, methods="all", data="skip")
    plain = {name: times[f"{name}/{precision}"] for name in PAPER_PAIRS}
    overhead = {method: times[f"{PAPER_PAIRS[0]} + {method}/{precision}"] / plain[PAPER_PAIRS[0]]
                for method in ("cosine", "fgspkd")}
    student_seconds = 0.0
    for trial in grid.students:
        factor = 1.0 if trial.method == "none" else overhead.get(trial.method, overhead["cosine"])
        student_seconds += trial.train_settings["steps"] * plain[trial.pair] * factor
    teachers = [trial for trial in grid.references if trial.role == "teacher"]
    teacher_seconds = sum(t.teacher_settings["steps"] for t in teachers) * times[f"teacher/{precision}"]
    best = max(throughput, key=throughput.get)
    speedup = throughput[best] / throughput[min(throughput)]
    hours = (teacher_seconds + student_seconds / speedup) / 3600
    return (f"{precision}: {len(grid.students)} student trials and {len(teachers)} teacher: "
            f"teacher {teacher_seconds / 3600:.2f} h alone, students {student_seconds / 3600:.1f} h "
            f"one at a time, {student_seconds / speedup / 3600:.2f} h at {best} at once "
            f"(speed-up {speedup:.2f}) → **{hours:.2f} GPU-hours** (target ≤ 8); "
            f"KD overhead on the width pair: cosine ×{overhead['cosine']:.2f}, "
            f"fgspkd ×{overhead['fgspkd']:.2f}.")


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=sorted(SIZES), default="gpu")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    parser.add_argument("--out", type=Path, help="also write the report here as gpu_check.md")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(json.loads(args.worker))
        return
    size = SIZES[args.mode]
    device = resolve_device("cuda" if args.mode == "gpu" else "cpu")
    if device.type == "cuda":
        configure_cuda(True)
    work = args.work or Path(tempfile.mkdtemp(prefix="kdbench-gpu-check-"))
    started = time.perf_counter()
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    say(f"# GPU check ({args.mode}) on {where}, scratch {work}")
    sections: list[tuple[str, str]] = []
    verdicts: list[str] = []

    def section(title: str, make: Callable[[], tuple[str, Any]]) -> Any:
        say(f"\n## {title}")
        begun = time.perf_counter()
        text, value = make()
        text += f"\n\n({time.perf_counter() - begun:.0f} s)"
        say(text)
        sections.append((title, text))
        return value

    candidate = "cuda" if device.type == "cuda" else "auto"
    agreed = section(f"1. CPU vs {candidate}: a tiny trial grid", lambda: agreement(work, "cpu", candidate))
    verdicts.append(f"agreement within tolerance: {'yes' if agreed else 'NO'}")
    repeated = section(f"2. Same seed twice on {where}", lambda: determinism(work, device, size))
    verdicts.append(f"same seed, same bits: {'yes' if repeated else 'NO'}")
    times = section("3. Paper-scale step times", lambda: step_times(work, device, size))
    rates = {precision: section(f"4. Trials at once on one device ({precision})",
                                lambda precision=precision: concurrency(work, device, size, precision))
             for precision in ("fp32", "bf16")}
    estimate = "\n".join(f"- {extrapolate(work, times, rates[p], p)}" for p in ("fp32", "bf16"))
    estimate += f"\n- dry run (`kdbench run --dry-run --preset paper --method all`): {dry_run_hours(work)}"
    section("5. `--preset paper --method all` on one device", lambda: (estimate, None))
    total = time.perf_counter() - started
    summary = "; ".join(verdicts) + f"; whole check {total:.0f} s"
    say(f"\n{summary}")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        body = "\n\n".join([provenance(), f"Device: {where}; mode {args.mode}. {summary}.",
                            *(f"### {title}\n\n{text}" for title, text in sections)])
        (args.out / "gpu_check.md").write_text(body + "\n")
        say(f"wrote {args.out / 'gpu_check.md'}")


if __name__ == "__main__":
    main()
