"""The numeric-platform benchmarks BENCHMARKS.md §7 and the README quote.

`benchmarks/compare_platforms.py` pairs the same trials of two stores and says what moved,
for "another machine, the same answer": it must measure the differences it reports, keep a
flipped effect from passing as kept, and leave the stores it reads as they were.
`benchmarks/bench_platform.py --ops` is what a session on another CPU vendor compares row by
row with the recorded digests: it must name every operation and give the same digests when
run twice on one machine, or a difference between vendors would mean nothing.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from kdbench.run.evaluate import Score
from kdbench.run.store import Store
from kdbench.run.trial import NoisyTrial, Outcome, StudentTrial, TeacherTrial

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def compare_platforms():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        yield importlib.import_module("compare_platforms")
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def _store(path: Path, fingerprint: str, shifts: dict[str, float]) -> Path:
    """Two pairs × (none, cosine) × seeds 0-2, a teacher and the noisy input, two utterances
    of one test set, recorded through kdbench's own store; `shifts` adds to every si_sdr
    score of the trials it names."""
    common = {"dataset": "set", "dataset_params": {}, "dataset_identity": "d0", "cache_dir": "",
              "results_dir": "", "metrics": ("pesq_wb", "stoi", "si_sdr")}
    teacher = {"teacher_spec": {}, "teacher_settings": {}, "teacher_seed": 0}
    trials = [TeacherTrial(id="teacher", **common, **teacher), NoisyTrial(id="noisy", **common)]
    trials += [
        StudentTrial(id=f"{pair}-{method}-{seed}", **common, **teacher, pair=pair, student_spec={},
                     method=method, method_params={}, seed=seed, train_settings={})
        for pair in ("a", "b") for method in ("none", "cosine") for seed in range(3)
    ]
    platform = {"cpu_model": "CPU", "cpu_isa": "AVX512", "fingerprint": fingerprint}
    store = Store(path)
    for trial in trials:
        # cosine beats none by 1 dB on pair a and 0.1 dB on pair b; seeds spread by 0.5 dB
        base = {"teacher": 12.0, "noisy": 5.0}.get(trial.role, 9.0)
        if getattr(trial, "method", None) == "cosine":
            base += 1.0 if trial.pair == "a" else 0.1
        base += 0.5 * getattr(trial, "seed", 0)
        outcome = Outcome(trial, "done", details={"platform": platform})
        outcome.scores = [
            Score(utterance, metric,
                  base + offset + (shifts.get(trial.id, 0.0) if metric == "si_sdr" else 0.0), None)
            for utterance, offset in (("u1", 0.0), ("u2", 1.0))
            for metric in ("pesq_wb", "stoi", "si_sdr")
        ]
        store.record(outcome)
    store.close()
    return path


def _row(report: str, metric: str) -> list[str]:
    (line,) = [line for line in report.splitlines() if line.startswith(f"| set | {metric} | cosine |")]
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_it_reports_what_moved_and_whether_each_effect_kept_its_sign(compare_platforms, tmp_path):
    reference = _store(tmp_path / "amd.db", "aaaa", {})
    # on the "other" machine pair b's cosine lost 0.3 dB on every seed: its +0.1 dB becomes
    # -0.2 dB, pair a's cosine seed 0 moved by 0.05 dB, the teacher not at all
    shifts = {"b-cosine-0": -0.3, "b-cosine-1": -0.3, "b-cosine-2": -0.3, "a-cosine-0": 0.05}
    other = _store(tmp_path / "intel.db", "bbbb", shifts)
    before = {path: hashlib.sha256(path.read_bytes()).hexdigest() for path in (reference, other)}

    report = compare_platforms.compare(reference, other, ["cosine"])

    assert "`aaaa`" in report and "`bbbb`" in report
    assert "teacher 100.0%" in report and "noisy 100.0%" in report
    assert "student 88.9%" in report  # 4 of 12 trials moved their si_sdr: 8 of 72 scores
    _, _, _, teacher, student, seed_sd, effects, kept = _row(report, "si_sdr")
    assert teacher == "0.0000 (max 0.0000)"
    assert student == "0.0000 (max 0.3000)"  # the median trial did not move
    assert seed_sd == "0.5000"
    assert effects == "+0.5500 / +0.4083"  # (1 + 0.1) / 2, then (1 + 0.05/3 - 0.2) / 2
    assert kept == "1 of 2"
    assert _row(report, "pesq_wb")[-1] == "2 of 2"
    assert {path: hashlib.sha256(path.read_bytes()).hexdigest() for path in (reference, other)} == before


def test_the_operation_probe_names_every_operation_and_repeats_itself() -> None:
    def probe() -> dict[str, str]:
        done = subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / "bench_platform.py"), "--ops"],
            capture_output=True, text=True, timeout=300, check=True,
        )
        return json.loads(done.stdout)

    first, second = probe(), probe()
    assert first == second
    assert {"STFT", "Conv2d", "ConvTranspose2d", "BatchNorm2d (training)", "sgemm",
            "Conv2d backward", "ConvTranspose2d backward", "BatchNorm2d backward",
            "inverse STFT backward (L1)", "Adam, 3 steps on fixed gradients", "student: forward",
            "student: gradients of one step", "student: 3 Adam steps", "PESQ-WB (C)",
            "STOI (pystoi)"} <= set(first)
    assert len(set(first.values())) == len(first)  # no two rows digest the same bytes
