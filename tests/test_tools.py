"""The recipe tools in tools/ run, and agree with each other and with the shipped manifest.

BENCHMARKS.md §10–§11 quote their output, and they choose recipes, so a tool that rots
silently would let a later session choose on a broken measurement. Each runs once, as a user
runs it (a subprocess, its own command line), on the quick corpus with a 2-step model: the
point is that the tool's plumbing (corpus, training, validation scoring, output) holds, and
that the figures it shares with another path are the same figures.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kdbench.plugin.registry import get_registry

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "configs" / "teachers" / "MANIFEST.json"


def _run_tool(script: str, args: list[str], cache: Path) -> list[str]:
    completed = subprocess.run(
        [sys.executable, str(ROOT / "tools" / script), *args],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
        env={**os.environ, "KDBENCH_CACHE": str(cache)},
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout.splitlines()


def _json_lines(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines if line.startswith("{")]


def _oracle_summary(lines: list[str]) -> dict[str, float]:
    """oracle_gap's last line, `all: {...}`: the means over the whole validation split."""
    return ast.literal_eval(lines[-1].removeprefix("all: "))


@pytest.fixture(scope="module")
def oracle_gap(session_cache: Path) -> list[str]:
    return _run_tool("oracle_gap.py", [], session_cache)


@pytest.fixture(scope="module")
def teacher_variant(session_cache: Path) -> dict[str, Any]:
    (line,) = _json_lines(
        _run_tool("teacher_variants.py", ["tiny", "[4,8]", "--set", "teacher.steps=2"], session_cache)
    )
    return line


@pytest.fixture(scope="module")
def student_variants(session_cache: Path) -> list[dict[str, Any]]:
    return _json_lines(_run_tool("student_variants.py", [
        "passthrough", "--pairs", "width", "--seeds", "0", "--student", "mask_floor=0.999",
        "--set", "train.steps=2", "--method", "cosine", "--kd", "weight=0.5",
    ], session_cache))


def test_oracle_gap_scores_the_shipped_teacher_as_its_manifest_does(oracle_gap) -> None:
    summary = _oracle_summary(oracle_gap)
    manifest = json.loads(MANIFEST.read_text())
    assert summary["teacher"] == pytest.approx(
        manifest["teachers"]["0"]["valid_means"]["si_sdr"], abs=0.01
    )
    assert summary["oracle"] > summary["teacher"] > summary["noisy"]
    noise_table = oracle_gap[: oracle_gap.index("")]
    assert noise_table[0].split()[-2:] == ["-", "teacher"]
    assert sum(int(row.split()[-2]) for row in noise_table[2:]) == 60


def test_teacher_variants_trains_the_asked_teacher_and_scores_validation(
    teacher_variant, oracle_gap
) -> None:
    unet = get_registry().get("models", "unet").build({"channels": [4, 8], "kernel": 5})
    assert teacher_variant["params"] == sum(p.numel() for p in unet.parameters())
    assert teacher_variant["kept_step"] == 2 and len(teacher_variant["valid_curve"]) == 1
    noisy = _oracle_summary(oracle_gap)["noisy"]
    assert teacher_variant["noisy_valid_means"]["si_sdr"] == pytest.approx(noisy, abs=0.005)


def test_student_variants_applies_the_student_change_and_scores_every_split(
    student_variants, teacher_variant
) -> None:
    """A mask floor of 0.999 lets every bin through: if `--student` reaches the model, the
    student scores as the noisy input does on every split (an untrained student without the
    floor is 0.3 dB SI-SDR away on the procedural split)."""
    noisy, student = student_variants
    splits = {"procedural", "espeak", "realspeech_dev", "realspeech_dev@0-5dB"}
    assert noisy["name"] == "noisy" and set(noisy) == {"name", *splits}
    assert noisy["procedural"] == pytest.approx(teacher_variant["noisy_valid_means"])
    assert (student["pair"], student["seed"], student["kept_step"]) == ("width", 0, 2)
    for split in splits:
        assert student[split] == pytest.approx(noisy[split], abs=0.01)



def test_student_variants_distils_from_the_shipped_teacher_of_each_seed(
    student_variants, session_cache: Path
) -> None:
    """`--method`: a KD weight is chosen with this tool on validation, so the method and its
    parameters must reach training, and the teacher's outputs must come from its table."""
    student = student_variants[1]
    assert (student["method"], student["kd"]["weight"]) == ("cosine", 0.5)
    key = json.loads(MANIFEST.read_text())["teachers"]["0"]["teacher_key"]
    table = session_cache / "student_variants_teacher_outputs" / key
    assert any(path.is_file() for path in table.rglob("*")), "no teacher outputs tabled"
