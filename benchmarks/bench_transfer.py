"""Transfer to real speech: the quick teacher and `none` students of a candidate corpus,
scored on the shipped `realspeech` set and on the candidate's own test split.

A grid of kdbench's own (the `quick` preset: its teacher settings, the `cpu` suite's pairs,
`none` students, one seed by default) is built with `kdbench.run.grid`, run by
`kdbench.run.runner` into a fresh store and read back from it: the models and numbers are
exactly what `kdbench run --method none --set run.test_datasets=realspeech` would make. The
candidate is a dataset name plus `--set` overrides (e.g. `dataset.procedural.speech=v3`).

Every figure is a mean over utterances of (model - noisy input), per utterance: the noisy
input is the one reference every corpus shares, so deltas stay comparable when the
in-domain test split changes with the corpus. Real speech is broken down by SNR band, with
the 0 and 5 dB utterances pooled for the issue's targets.

The real-speech set is a TEST set: a candidate corpus is designed from the speech-science
description and measured here once; the numbers must not drive trial-and-error changes.
Every run is recorded in BENCHMARKS.md under its own `--label`, helpful or not.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from _report import markdown_table, provenance, update_section
from rich.console import Console

from kdbench.api import PreparedDataset
from kdbench.config import Config, load_config
from kdbench.files.cache import cache_root
from kdbench.plugin.registry import get_registry
from kdbench.run.grid import Grid, build_grid
from kdbench.run.runner import run_grid
from kdbench.run.store import Store

REAL = "realspeech"
METRICS = ("si_sdr", "stoi", "pesq_wb")
METRIC_LABELS = {"si_sdr": "ΔSI-SDR (dB)", "stoi": "ΔSTOI", "pesq_wb": "ΔPESQ-WB"}
BANDS = (-5.0, 0.0, 5.0, 10.0)
TARGET_BAND = (0.0, 5.0)
"""The SNRs the issue's targets pool: where real recordings are hard but not hopeless."""
HEADING = "8. Transfer to real speech"


def grid_for(dataset: str, overrides: Sequence[str], pairs: str, seeds: list[int],
             results: Path) -> tuple[Config, Grid]:
    """The quick preset's teacher and `none` students on the candidate, also tested on
    the real-speech set."""
    extra = [f"run.datasets={dataset}", f"run.test_datasets={REAL}",
             f"run.metrics={','.join(METRICS)}"]
    config = load_config("quick", [*overrides, *extra])
    grid = build_grid(config, get_registry(), cache_root(), results.parent,
                      methods=["none"], pairs=pairs, seeds=seeds)
    return config, grid


def snr_of_utterances(sets: dict[str, PreparedDataset]) -> pd.DataFrame:
    rows = [
        {"test_set": name, "utterance": u.id, "snr_db": float(u.meta["snr_db"])}
        for name, prepared in sets.items()
        for u in prepared.splits["test"]
    ]
    return pd.DataFrame(rows)


def deltas(grid: Grid, store: Store) -> pd.DataFrame:
    """One row per (model, test set, utterance, metric): the model's score minus the
    noisy input's on the same utterance."""
    trials = store.trials()
    trials = trials[trials["id"].isin({t.id for t in grid.trials}) & (trials["status"] == "done")]
    scores = store.scores(trials["id"]).merge(
        trials[["id", "role", "pair"]], left_on="trial_id", right_on="id"
    )
    scores["model"] = [
        "noisy input" if role == "noisy" else "teacher" if role == "teacher" else f"student {pair}"
        for role, pair in zip(scores["role"], scores["pair"])
    ]
    keys = ["test_set", "utterance", "metric"]
    noisy = scores[scores["role"] == "noisy"][[*keys, "value"]].rename(columns={"value": "noisy"})
    merged = scores[scores["role"] != "noisy"].merge(noisy, on=keys)
    merged["delta"] = merged["value"] - merged["noisy"]
    snrs = snr_of_utterances({**grid.datasets, **grid.test_datasets})
    return merged.merge(snrs, on=["test_set", "utterance"])[
        ["model", "test_set", "utterance", "snr_db", "metric", "value", "noisy", "delta"]
    ]


def _mean(frame: pd.DataFrame) -> str:
    return f"{frame.mean():+.3f}" if len(frame) else "—"


def metric_table(table: pd.DataFrame, metric: str, dataset: str) -> str:
    """Rows: models; columns: real speech per SNR band, 0–5 dB pooled, all, and in-domain."""
    rows = []
    chosen = table[table["metric"] == metric]
    models = sorted(chosen["model"].unique(), key=lambda m: (m != "teacher", m))
    for model in models:
        mine = chosen[chosen["model"] == model]
        real = mine[mine["test_set"] == REAL]
        rows.append([
            model,
            *(_mean(real[real["snr_db"] == band]["delta"]) for band in BANDS),
            f"**{_mean(real[real['snr_db'].isin(TARGET_BAND)]['delta'])}**",
            _mean(real["delta"]),
            _mean(mine[mine["test_set"] == dataset]["delta"]),
        ])
    noisy = chosen.drop_duplicates(["test_set", "utterance"])
    real = noisy[noisy["test_set"] == REAL]
    rows.append([
        "(noisy input, absolute)",
        *(f"{real[real['snr_db'] == band]['noisy'].mean():.3f}" for band in BANDS),
        f"{real[real['snr_db'].isin(TARGET_BAND)]['noisy'].mean():.3f}",
        f"{real['noisy'].mean():.3f}",
        f"{noisy[noisy['test_set'] == dataset]['noisy'].mean():.3f}",
    ])
    header = [METRIC_LABELS[metric], *(f"real {b:+g} dB" for b in BANDS), "real 0–5 dB",
              "real all", f"{dataset} (in-domain)"]
    return markdown_table(header, rows)


def targets(table: pd.DataFrame) -> list[str]:
    """The issue's targets on real speech at 0–5 dB, each with its measured value."""
    band = table[(table["test_set"] == REAL) & table["snr_db"].isin(TARGET_BAND)]
    means = band.groupby(["model", "metric"])["delta"].mean()
    lines = []

    def check(label: str, value: float, met: bool) -> None:
        lines.append(f"- {label}: {value:+.3f} — {'met' if met else 'NOT met'}")

    check("teacher ΔSTOI > 0", means["teacher", "stoi"], means["teacher", "stoi"] > 0)
    check("teacher ΔPESQ-WB ≥ +0.15", means["teacher", "pesq_wb"],
          means["teacher", "pesq_wb"] >= 0.15)
    for model in sorted(m for m in band["model"].unique() if m != "teacher"):
        check(f"{model} ΔSTOI ≥ 0", means[model, "stoi"], means[model, "stoi"] >= 0)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", required=True,
                        help="the candidate's name: its block in BENCHMARKS.md")
    parser.add_argument("--dataset", default="procedural", help="the training dataset")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="a preset override, as `kdbench run --set`")
    parser.add_argument("--pairs", default="all", help="comma list of pairs, or `all`")
    parser.add_argument("--seeds", default="0", help="comma list of student seeds")
    parser.add_argument("--results", type=Path,
                        help="keep the store (and students) here instead of a temporary folder")
    parser.add_argument("--note", default="", help="what the candidate is, for the record")
    parser.add_argument("--no-record", action="store_true", help="print only")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    with tempfile.TemporaryDirectory() as scratch:
        results = args.results or Path(scratch) / "results.db"
        results.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        config, grid = grid_for(args.dataset, args.overrides, args.pairs, seeds, results)
        store = Store(results)
        registry = get_registry()
        executor = registry.get("executors", config.run["executor"])
        report = run_grid(grid, store, executor, config.plugin_params("executor", executor.name),
                          config.run["jobs"], console=Console(stderr=True))
        seconds = time.perf_counter() - started
        if report.failed:
            raise SystemExit(f"{len(report.failed)} trial(s) failed: "
                             + "; ".join(f"{o.trial.label()}: {o.error}" for o in report.failed))
        table = deltas(grid, store)
        store.close()
    prepared = grid.datasets[args.dataset]
    settings = " ".join(f"`--set {o}`" for o in args.overrides) or "(defaults)"
    real = grid.test_datasets[REAL]
    body = "\n\n".join([
        f"### {args.label}",
        provenance(),
        f"Candidate: dataset `{args.dataset}` {settings}, identity `{prepared.identity}`"
        + (f". {args.note}" if args.note else "") + ".",
        (f"Trained: the quick teacher (its preset's {config.teacher['steps']} steps) and "
         f"`none` students of pair(s) {', '.join(grid.pairs)} at seed(s) "
         f"{', '.join(map(str, seeds))}; scored on `{REAL}` ({len(real.splits['test'])} "
         f"mixtures, identity `{real.identity}`) and on the candidate's test split "
         f"({len(prepared.splits['test'])} utterances). Wall time {seconds / 60:.1f} min "
         f"({report.ran} trials)."),
        *(metric_table(table, metric, args.dataset) for metric in METRICS),
        "Targets (real speech, 0 and 5 dB pooled):\n" + "\n".join(targets(table)),
    ])
    print(body)
    if not args.no_record:
        update_section(HEADING, f"bench_transfer {args.label}", body)


if __name__ == "__main__":
    main()
