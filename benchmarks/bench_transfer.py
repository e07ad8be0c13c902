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
the 0 and 5 dB utterances pooled for the issue's targets. In-domain figures are given for
the whole test split and for its dry utterances alone (no room: every utterance of a
corpus without rooms), the closer comparison between corpora with and without rooms.

Rerun with the same `--results` to re-read a finished measurement (its trials are skipped,
nothing is trained): the wall time reported is the trials' own, from the store.

The real-speech set is a TEST set: a candidate corpus is designed from the speech-science
description and measured here once; the numbers must not drive trial-and-error changes.
Every run is recorded in BENCHMARKS.md under its own `--label`, helpful or not.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from _report import markdown_table, provenance, update_section
from rich.console import Console

from kdbench.api import PreparedDataset
from kdbench.config import Config, load_config, teacher_files
from kdbench.files.cache import cache_root
from kdbench.plugin.registry import get_registry
from kdbench.run.grid import Grid, build_grid
from kdbench.run.runner import lost_trial, run_grid
from kdbench.run.store import Store
from kdbench.run.trial import TestSet, execute

REAL = "realspeech"
METRICS = ("si_sdr", "stoi", "pesq_wb")
METRIC_LABELS = {"si_sdr": "ΔSI-SDR (dB)", "stoi": "ΔSTOI", "pesq_wb": "ΔPESQ-WB"}
BANDS = (-5.0, 0.0, 5.0, 10.0)
TARGET_BAND = (0.0, 5.0)
"""The SNRs the issue's targets pool: where real recordings are hard but not hopeless."""
HEADING = "9. Transfer to real speech"
COMPARED = "compared"
"""The test-set name of scores on another corpus's test split (`--compare-on`)."""


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


def conditions(sets: dict[str, PreparedDataset]) -> pd.DataFrame:
    """Each test utterance's SNR and whether it is dry (recorded in no room)."""
    rows = [
        {"test_set": name, "utterance": u.id, "snr_db": float(u.meta["snr_db"]),
         "dry": u.meta.get("rt60_s") is None}
        for name, prepared in sets.items()
        for u in prepared.splits["test"]
    ]
    return pd.DataFrame(rows)


def stored_scores(grid: Grid, store: Store) -> pd.DataFrame:
    """The grid's finished trials' scores, as the store holds them."""
    trials = store.trials()
    done = trials[trials["id"].isin({t.id for t in grid.trials}) & (trials["status"] == "done")]
    return store.scores(done["id"])


def scores_on_another_split(
    grid: Grid, config: Config, dataset: str, overrides: Sequence[str]
) -> tuple[pd.DataFrame, PreparedDataset]:
    """Every model of the grid scored on the test split of `dataset` with `overrides`
    (another corpus's), by kdbench's score-only trials run through the preset's executor:
    the saved students and cached teacher, no training. Kept out of the store, where these
    scores would carry the in-domain split's name. Their test set is called COMPARED."""
    other_config = load_config("quick", overrides)
    params = other_config.plugin_params("dataset", dataset)
    registry = get_registry()
    other = registry.get("datasets", dataset).prepare(params, cache_root())
    test = TestSet(name=dataset, params=params, identity=other.identity)
    trials = [dataclasses.replace(t, test_sets=(test,), score_only=(dataset,)) for t in grid.trials]
    executor = registry.get("executors", config.run["executor"])
    outcomes = executor.run(execute, trials, config.run["jobs"],
                            config.plugin_params("executor", executor.name), lost_trial)
    rows = []
    for outcome in outcomes:
        if outcome.status != "done":
            raise SystemExit(f"{outcome.trial.label()}: {outcome.error}")
        rows += [{"trial_id": outcome.trial.id, "test_set": COMPARED, "utterance": score.utterance,
                  "metric": score.metric, "value": score.value} for score in outcome.scores]
    return pd.DataFrame(rows), other


def deltas(grid: Grid, scores: pd.DataFrame, sets: dict[str, PreparedDataset]) -> pd.DataFrame:
    """One row per (model, test set, utterance, metric): the model's score minus the
    noisy input's on the same utterance."""
    names = {
        t.id: "noisy input" if t.role == "noisy" else "teacher" if t.role == "teacher"
        else f"student {t.pair}"
        for t in grid.trials
    }
    scores = scores.assign(model=scores["trial_id"].map(names))
    keys = ["test_set", "utterance", "metric"]
    noisy = scores[scores["model"] == "noisy input"][[*keys, "value"]]
    merged = scores[scores["model"] != "noisy input"].merge(
        noisy.rename(columns={"value": "noisy"}), on=keys
    )
    merged["delta"] = merged["value"] - merged["noisy"]
    return merged.merge(conditions(sets), on=["test_set", "utterance"])[
        ["model", "test_set", "utterance", "snr_db", "dry", "metric", "value", "noisy", "delta"]
    ]


def trials_wall_minutes(grid: Grid, store: Store) -> float:
    """From the first trial's start to the last one's end, as the store recorded them."""
    trials = store.trials()
    trials = trials[trials["id"].isin({t.id for t in grid.trials})]
    return float(trials["finished"].max() - trials["started"].min()) / 60.0


def _mean(frame: pd.DataFrame) -> str:
    return f"{frame.mean():+.3f}" if len(frame) else "—"


def metric_table(table: pd.DataFrame, metric: str, dataset: str, compared: str | None) -> str:
    """Rows: models; columns: real speech per SNR band, 0–5 dB pooled, all; in-domain (all,
    dry); and, if `compared` names it, the other corpus's test split."""
    chosen = table[table["metric"] == metric]
    in_domain = chosen["test_set"] == dataset
    real = chosen["test_set"] == REAL
    columns = [
        *(real & (chosen["snr_db"] == band) for band in BANDS),
        real & chosen["snr_db"].isin(TARGET_BAND),
        real,
        in_domain,
        in_domain & chosen["dry"],
        *([chosen["test_set"] == COMPARED] if compared else []),
    ]
    models = sorted(chosen["model"].unique(), key=lambda m: (m != "teacher", m))
    rows = []
    for model in models:
        mine = chosen["model"] == model
        cells = [_mean(chosen[mine & column]["delta"]) for column in columns]
        cells[len(BANDS)] = f"**{cells[len(BANDS)]}**"
        rows.append([model, *cells])
    first = chosen["model"] == models[0]
    rows.append(["(noisy input, absolute)",
                 *(f"{chosen[first & column]['noisy'].mean():.3f}" for column in columns)])
    header = [METRIC_LABELS[metric], *(f"real {b:+g} dB" for b in BANDS), "real 0–5 dB",
              "real all", f"{dataset} (in-domain)", f"{dataset} dry",
              *([f"{compared} test split"] if compared else [])]
    return markdown_table(header, rows)


def targets(table: pd.DataFrame) -> list[str]:
    """The issue's targets on real speech at 0–5 dB, each with its measured value."""
    band = table[(table["test_set"] == REAL) & table["snr_db"].isin(TARGET_BAND)]
    means = band.groupby(["model", "metric"])["delta"].mean()
    lines = []

    def check(label: str, value: float, met: bool) -> None:
        lines.append(f"- {label}: {value:+.4f} — {'met' if met else 'NOT met'}")

    check("teacher ΔSTOI > 0", means["teacher", "stoi"], means["teacher", "stoi"] > 0)
    check("teacher ΔPESQ-WB ≥ +0.15", means["teacher", "pesq_wb"],
          means["teacher", "pesq_wb"] >= 0.15)
    for model in sorted(m for m in band["model"].unique() if m != "teacher"):
        check(f"{model} ΔSTOI ≥ 0", means[model, "stoi"], means[model, "stoi"] >= 0)
    return lines


def _teachers(config: Config) -> str:
    """How the grid's teachers were made: trained by the preset, or loaded from its files."""
    files = teacher_files(config.teacher)
    if files:
        names = ", ".join(Path(path).name for path in files.values())
        return f"the preset's teachers loaded, not trained ({names})"
    return f"the quick teacher (its preset's {config.teacher['steps']} steps)"


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
    parser.add_argument("--compare-on", dest="compare", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="overrides naming another corpus of the same dataset (e.g. "
                        "dataset.procedural.generator=2): every model is also scored on its "
                        "test split, so two corpora's models meet on one split")
    parser.add_argument("--note", default="", help="what the candidate is, for the record")
    parser.add_argument("--no-record", action="store_true", help="print only")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    with tempfile.TemporaryDirectory() as scratch:
        results = args.results or Path(scratch) / "results.db"
        results.parent.mkdir(parents=True, exist_ok=True)
        config, grid = grid_for(args.dataset, args.overrides, args.pairs, seeds, results)
        store = Store(results)
        registry = get_registry()
        executor = registry.get("executors", config.run["executor"])
        report = run_grid(grid, store, executor, config.plugin_params("executor", executor.name),
                          config.run["jobs"], console=Console(stderr=True))
        if report.failed:
            raise SystemExit(f"{len(report.failed)} trial(s) failed: "
                             + "; ".join(f"{o.trial.label()}: {o.error}" for o in report.failed))
        scores = stored_scores(grid, store)
        minutes = trials_wall_minutes(grid, store)
        store.close()
    sets = {**grid.datasets, **grid.test_datasets}
    compared = " ".join(f"`{o}`" for o in args.compare) or None
    if args.compare:
        elsewhere, sets[COMPARED] = scores_on_another_split(
            grid, config, args.dataset, [*args.overrides, *args.compare])
        scores = pd.concat([scores, elsewhere], ignore_index=True)
    table = deltas(grid, scores, sets)
    prepared = grid.datasets[args.dataset]
    dry = sum(u.meta.get("rt60_s") is None for u in prepared.splits["test"])
    settings = " ".join(f"`--set {o}`" for o in args.overrides) or "(defaults)"
    real = grid.test_datasets[REAL]
    body = "\n\n".join([
        f"### {args.label}",
        provenance(),
        f"Candidate: dataset `{args.dataset}` {settings}, identity `{prepared.identity}`"
        + (f". {args.note}" if args.note else "") + ".",
        (f"Trained: {_teachers(config)} and `none` students of pair(s) {', '.join(grid.pairs)} at seed(s) "
         f"{', '.join(map(str, seeds))}; scored on `{REAL}` ({len(real.splits['test'])} "
         f"mixtures, identity `{real.identity}`) and on the candidate's test split "
         f"({len(prepared.splits['test'])} utterances, {dry} dry). "
         f"The trials' wall time: {minutes:.1f} min"
         + (" (re-read from the kept store: nothing ran now)." if report.ran == 0 else ".")
         + (f" Also scored on the test split of {compared} (identity "
            f"`{sets[COMPARED].identity}`)." if compared else "")),
        *(metric_table(table, metric, args.dataset, compared) for metric in METRICS),
        "Targets (real speech, 0 and 5 dB pooled):\n" + "\n".join(targets(table)),
    ])
    print(body)
    if not args.no_record:
        update_section(HEADING, f"bench_transfer {args.label}", body)


if __name__ == "__main__":
    main()
