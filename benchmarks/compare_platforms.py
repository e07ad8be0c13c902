"""How far the same trials move on another numeric platform, against the effects they measure.

Issue 15 asked whether kdbench's answer survives another machine. The platform is
provenance, not identity (kdbench/run/platform.py), so the same command on two machines
makes trials with the same ids; this script pairs them across two stores and puts their
differences next to what a reader compares them with: the spread of a cell over seeds and
the KD effect (`METHOD − none`, per pair). It reads the stores and never writes them.

    python benchmarks/compare_platforms.py REFERENCE.db OTHER.db [--methods cosine,fgspkd]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd
from _report import markdown_table, provenance, update_section

METRICS = ("pesq_wb", "stoi", "si_sdr")
HEADING = "7. Numeric platforms: which settings change the bits"


def trial_means(store: Path) -> tuple[pd.DataFrame, str]:
    """Per done trial and test set, the mean of each metric; and the store's platform(s)."""
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
        trials = pd.read_sql_query(
            "SELECT id, role, pair, method, seed, teacher_seed, details FROM trials "
            "WHERE status = 'done'", db,
        )
        scores = pd.read_sql_query(
            "SELECT trial_id, test_set, utterance, metric, value FROM scores", db
        )
    labels = sorted({_platform_label(details) for details in trials.pop("details")})
    means = (
        scores.groupby(["trial_id", "test_set", "metric"])["value"].mean().unstack("metric")
        .reset_index().merge(trials, left_on="trial_id", right_on="id").drop(columns="id")
    )
    return means, "; ".join(labels)


def _platform_label(details: str) -> str:
    facts = json.loads(details).get("platform", {})
    return f"{facts.get('cpu_model', '?')} {facts.get('cpu_isa', '?')} (`{facts.get('fingerprint', '?')}`)"


def identical_shares(reference: Path, other: Path, roles: dict[str, str]) -> dict[str, float]:
    """Per role, the share of the per-utterance scores of the trials in `roles` (id → role)
    that are equal to the last bit in both stores."""
    frames = []
    for store in (reference, other):
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
            frame = pd.read_sql_query(
                "SELECT trial_id, test_set, utterance, metric, value FROM scores", db
            )
        frames.append(frame[frame["trial_id"].isin(list(roles))])
    joined = frames[0].merge(frames[1], on=["trial_id", "test_set", "utterance", "metric"])
    equal = (joined["value_x"] == joined["value_y"]).groupby(joined["trial_id"].map(roles))
    return equal.mean().to_dict()


def _effects(means: pd.DataFrame, method: str, metric: str) -> pd.Series:
    """Per pair, the mean over seeds of `method` minus that of `none`."""
    cells = means[means["role"] == "student"].groupby(["pair", "method"])[metric].mean().unstack()
    return cells[method] - cells["none"]


def compare(reference: Path, other: Path, methods: Sequence[str]) -> str:
    """The report: one row per test set, metric and method (its effect against `none`)."""
    ref, ref_label = trial_means(reference)
    oth, oth_label = trial_means(other)
    keys = ["trial_id", "test_set"]
    both = ref.merge(oth[keys + list(METRICS)], on=keys, suffixes=("", "_other"))
    both = both[both["method"].isin(["none", *methods]) | both["method"].isna()]
    roles = dict(zip(both["trial_id"], both["role"]))
    rows = []
    for (test_set, metric, method), block in _blocks(both, methods):
        delta = (block[f"{metric}_other"] - block[metric]).abs()
        teacher = delta[block["role"] == "teacher"]
        student = delta[block["role"] == "student"]
        students = block[block["role"] == "student"]
        seed_sd = students.groupby(["pair", "method"])[metric].std().median()
        ref_effect = _effects(students, method, metric)
        oth_effect = _effects(students.assign(**{metric: students[f"{metric}_other"]}), method, metric)
        same_sign = int((ref_effect * oth_effect > 0).sum())
        rows.append([
            test_set, metric, method,
            f"{teacher.mean():.4f} (max {teacher.max():.4f})",
            f"{student.median():.4f} (max {student.max():.4f})",
            f"{seed_sd:.4f}",
            f"{ref_effect.mean():+.4f} / {oth_effect.mean():+.4f}",
            f"{same_sign} of {len(ref_effect)}",
        ])
    students = both[both["role"] == "student"]
    counts = both.drop_duplicates("trial_id")["role"].value_counts().to_dict()
    table = markdown_table(
        ["test set", "metric", "method", "teacher |Δ| (mean of trials)",
         "student |Δ| (median of trials: the method's and none's)",
         "seed std of a cell (median)", "method − none, pooled (reference / other)",
         "pairs keeping the sign"],
        rows,
    )
    return (
        f"- reference: `{reference}`: {ref_label}\n- other: `{other}`: {oth_label}\n"
        f"- trials in both, done: {counts} (methods none, {', '.join(methods)}; "
        f"students of seeds {sorted(int(s) for s in students['seed'].unique())})\n"
        "- per-utterance scores equal to the last bit: " + ", ".join(
            f"{role} {share:.1%}" for role, share in identical_shares(reference, other, roles).items()
        ) + "\n\n"
        "|Δ|: the absolute difference of a trial's mean score between the two stores; the seed "
        "std is of the reference's trial means within a (pair, method) cell.\n\n" + table
    )


def _blocks(
    both: pd.DataFrame, methods: Sequence[str]
) -> Iterator[tuple[tuple[str, str, str], pd.DataFrame]]:
    """(test set, metric, method) and the rows of that method, `none` and the anchors."""
    for test_set, block in both.groupby("test_set"):
        for metric in METRICS:
            for method in methods:
                keep = block["method"].isin(["none", method]) | block["method"].isna()
                yield (test_set, metric, method), block[keep]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference", type=Path)
    parser.add_argument("other", type=Path)
    parser.add_argument("--methods", default="cosine",
                        help="comma-separated; each is compared with none")
    args = parser.parse_args()
    for store in (args.reference, args.other):
        if not store.is_file():
            parser.error(f"{store}: no such store")
    body = compare(args.reference, args.other, args.methods.split(","))
    print(body)
    update_section(HEADING, "compare_platforms", f"{provenance()}\n\n{body}")


if __name__ == "__main__":
    main()
