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
from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd
from _report import markdown_table, provenance, update_section

from kdbench.run.platform import label
from kdbench.run.store import Store

METRICS = ("pesq_wb", "stoi", "si_sdr")
HEADING = "7. Numeric platforms: which settings change the bits"


def read_store(path: Path) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """The done trials, their per-utterance scores and the store's platform(s), read once
    through kdbench's read-only store (which never writes it, and reads older schemas)."""
    store = Store(path, read_only=True)
    try:
        trials = store.trials()
        trials = trials[trials["status"] == "done"]
        scores = store.scores(trials["id"])
    finally:
        store.close()
    platforms = sorted({
        f"{label(details.get('platform', {}))} (`{details.get('platform', {}).get('fingerprint', '?')}`)"
        for details in trials["details"]
    })
    return trials, scores, "; ".join(platforms)


def trial_means(trials: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """Per trial and test set, the mean of each metric, beside the trial's role and cell."""
    return (
        scores.groupby(["trial_id", "test_set", "metric"])["value"].mean().unstack("metric")
        .reset_index()
        .merge(trials[["id", "role", "pair", "method", "seed"]], left_on="trial_id", right_on="id")
        .drop(columns="id")
    )


def identical_shares(
    reference: pd.DataFrame, other: pd.DataFrame, roles: dict[str, str]
) -> dict[str, float]:
    """Per role, the share of the per-utterance scores of the trials in `roles` (id → role)
    that are equal to the last bit in both stores."""
    keys = ["trial_id", "test_set", "utterance", "metric"]
    joined = reference[reference["trial_id"].isin(list(roles))].merge(other, on=keys)
    equal = (joined["value_x"] == joined["value_y"]).groupby(joined["trial_id"].map(roles))
    return equal.mean().to_dict()


def _of(frame: pd.DataFrame, methods: Sequence[str]) -> pd.DataFrame:
    """The rows of `methods`, of `none` and of the anchors (teachers, noisy input)."""
    return frame[frame["method"].isin(["none", *methods]) | frame["method"].isna()]


def _effects(means: pd.DataFrame, method: str, metric: str) -> pd.Series:
    """Per pair, the mean over seeds of `method` minus that of `none`."""
    cells = means[means["role"] == "student"].groupby(["pair", "method"])[metric].mean().unstack()
    return cells[method] - cells["none"]


def compare(reference: Path, other: Path, methods: Sequence[str]) -> str:
    """The report: one row per test set, metric and method (its effect against `none`)."""
    ref_trials, ref_scores, ref_label = read_store(reference)
    oth_trials, oth_scores, oth_label = read_store(other)
    ref, oth = trial_means(ref_trials, ref_scores), trial_means(oth_trials, oth_scores)
    keys = ["trial_id", "test_set"]
    both = ref.merge(oth[keys + list(METRICS)], on=keys, suffixes=("", "_other"))
    both = _of(both, methods)
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
            f"{role} {share:.1%}" for role, share in identical_shares(ref_scores, oth_scores, roles).items()
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
                yield (test_set, metric, method), _of(block, [method])


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
