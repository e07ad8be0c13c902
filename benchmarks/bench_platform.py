"""Which CPU settings change a trial's bits: the `ci` grid under several kernel settings.

Issue 15 found that one trial id gives other numbers on another x86 CPU type (Intel
AVX-512 vs AMD EPYC). The suspects are the kernels torch and its libraries pick for the
CPU: ATen's own vectorised kernels (`ATEN_CPU_CAPABILITY`), MKL's code path (`MKL_CBWR`,
conditional numerical reproducibility) and oneDNN's ISA (`ONEDNN_MAX_CPU_ISA`). Each
setting here runs the same tiny grid from an empty cache in a fresh process and prints a
digest of every score (bit for bit) and the platform fingerprint. Two settings whose
digests agree made the same bits on this machine. The digests are recorded in
BENCHMARKS.md with the machine, so a session on another CPU type can run this script and
compare its digests with those: equal digests there would show a setting that makes
results bit-identical across vendors; this machine alone cannot show that.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

from _report import markdown_table, provenance, update_section

KDBENCH = str(Path(sys.executable).with_name("kdbench"))

SETTINGS = {
    "default": {},
    "aten avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "all avx2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "all baseline ISA": {
        "ATEN_CPU_CAPABILITY": "default",
        "MKL_CBWR": "COMPATIBLE",
        "ONEDNN_MAX_CPU_ISA": "SSE41",
    },
}


def run_grid(environment: dict[str, str], folder: Path) -> tuple[str, str, str]:
    """(digest of every score, platform fingerprint, platform label) of the `ci` grid."""
    env = {**os.environ, **environment, "KDBENCH_CACHE": str(folder / "cache")}
    results = folder / "results.db"
    subprocess.run(
        [KDBENCH, "run", "--preset", "ci", "--results", str(results)],
        env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    with sqlite3.connect(results) as db:
        rows = db.execute(
            "SELECT trial_id, test_set, utterance, metric, value FROM scores ORDER BY 1, 2, 3, 4"
        ).fetchall()
        details = db.execute("SELECT details FROM trials WHERE role = 'teacher'").fetchone()[0]
    text = "\n".join(f"{a}|{b}|{c}|{d}|{float(v).hex() if v is not None else 'nan'}"
                     for a, b, c, d, v in rows)
    facts = json.loads(details)["platform"]
    label = f"{facts['cpu_model']} {facts['cpu_isa']}, MKL {facts['mkl']}, oneDNN {facts['onednn']}"
    return hashlib.sha256(text.encode()).hexdigest()[:16], facts["fingerprint"], label


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="*", default=list(SETTINGS), choices=list(SETTINGS))
    args = parser.parse_args()
    rows, digests = [], {}
    for name in args.settings:
        with tempfile.TemporaryDirectory() as folder:
            digest, fingerprint, label = run_grid(SETTINGS[name], Path(folder))
        digests[name] = digest
        same = "—" if name == "default" else ("yes" if digest == digests.get("default") else "no")
        env = " ".join(f"{k}={v}" for k, v in SETTINGS[name].items()) or "(none)"
        rows.append([name, f"`{env}`", f"`{digest}`", same, f"`{fingerprint}`", label])
        print(f"{name}: scores {digest}, platform {fingerprint} ({label})", flush=True)
    table = markdown_table(
        ["setting", "environment", "score digest", "same bits as default", "platform", "kernels"],
        rows,
    )
    update_section(
        "7. Numeric platforms: which settings change the bits",
        "bench_platform",
        f"{provenance()}\n\n{table}",
    )


if __name__ == "__main__":
    main()
