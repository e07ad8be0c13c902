"""A published leaderboard: one directory per (dataset, preset) that stands on its own.

A number on a page is only worth citing if a reader can tell how it was made, so next to
the tables each page records the command, code version, machine, software, metric
settings, checkpoint policy and statistical method, and ships the per-trial export the
tables were computed from.
"""

from __future__ import annotations

import datetime
import logging
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd

import kdbench
from kdbench.api import version_of
from kdbench.config import teacher_files
from kdbench.errors import KdbenchError
from kdbench.plugin.registry import get_registry
from kdbench.report import hierarchy, stats
from kdbench.report.formats import (
    across_pairs_table,
    display_tables,
    latex_table,
    markdown_table,
    md_escape,
    rank_table,
    results_frame,
    teacher_level_table,
    trend_table,
    variance_table,
)
from kdbench.report.leaderboard import LeaderboardData, has_trend, legend, select
from kdbench.report.plots import FOREST_READING, cost_plot, forest_plot
from kdbench.run.platform import describe
from kdbench.run.platform import label as platform_label
from kdbench.run.store import Store

logger = logging.getLogger(__name__)

_CHECKPOINT_MEANING = {
    "last": "the weights after the last optimizer step",
    "best_valid": "the weights with the lowest task loss on the validation split "
    "(never the test split)",
}


def git_state() -> dict[str, str]:
    """Commit and cleanliness of the kdbench source tree, or `unknown` outside a checkout."""
    source = Path(kdbench.__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"],
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()
        changes = subprocess.run(
            ["git", "-C", str(source), "status", "--porcelain"],
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown (not a git checkout)", "dirty": "unknown"}
    dirty = f"yes ({len(changes)} changed or untracked file(s))" if changes else "no"
    return {"commit": commit, "dirty": dirty}


def _platforms(data: LeaderboardData) -> str:
    """Each numeric platform the grid's trials ran on, with how many trials; every trial's
    own fingerprint is in trials.csv."""
    counts: dict[str, int] = {}
    for details, fingerprint in zip(data.trials["details"], data.trials["platform"]):
        key = (
            f"`{fingerprint}` {platform_label(details.get('platform', {}))}"
            if isinstance(fingerprint, str)
            else "not recorded (made before kdbench recorded platforms)"
        )
        counts[key] = counts.get(key, 0) + 1
    text = "; ".join(f"{key}: {count} trial(s)" for key, count in counts.items())
    return text + (" — **cells mixing them are marked §**" if len(counts) > 1 else "")


def gpu_name() -> str:
    import torch

    if torch.cuda.is_available():
        return ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    return "none"


def trials_export(data: LeaderboardData, block: str) -> pd.DataFrame:
    """One row per trial of the grid that the store holds, with its mean scores on the
    block's test set and the numeric platform it ran on: the data behind every table."""
    trials = data.trials
    rows = []
    for trial in trials.itertuples(index=False):
        key = (trial.id, block)
        means = (
            data.trial_means.loc[key]
            if key in data.trial_means.index
            else pd.Series(index=data.trial_means.columns, dtype=float)
        )
        seconds = (trial.finished or 0.0) - (trial.started or 0.0)
        rows.append({
            "id": trial.id, "role": trial.role, "status": trial.status, "dataset": trial.dataset,
            "pair": trial.pair, "method": trial.method,
            "seed": None if pd.isna(trial.seed) else int(trial.seed),
            "teacher_seed": None if pd.isna(trial.teacher_seed) else int(trial.teacher_seed),
            **{metric: means.get(metric) for metric in data.config.run["metrics"]},
            "params": trial.model.get("params"),
            "macs_per_second": trial.model.get("macs_per_second"),
            "seconds": round(seconds, 3) if seconds > 0 else None,
            "error": trial.error,
            "platform": trial.platform,
            "platform_label": platform_label(trial.details.get("platform", {}))
            if trial.platform else None,
        })
    return (
        pd.DataFrame(rows).astype({"seed": "Int64", "teacher_seed": "Int64"})
        if rows
        else pd.DataFrame(rows)
    )


def compute_seconds(data: LeaderboardData) -> float:
    """Sum of the stored trial durations (failed attempts included: they cost time too)."""
    trials = data.trials
    spans = (trials["finished"].fillna(0) - trials["started"].fillna(0)).clip(lower=0)
    return float(spans.sum())


def _hosts(data: LeaderboardData) -> str:
    seen: dict[str, str] = {}
    for details in data.trials["details"]:
        prov = details.get("provenance", {}) if isinstance(details, dict) else {}
        if "host" in prov:
            seen[prov["host"]] = prov.get("cpu_count", "?")
    return ", ".join(f"{host} ({cores} cores)" for host, cores in seen.items()) or (
        "unknown (no trial record names its host)"
    )


def _metric_section(data: LeaderboardData) -> list[str]:
    registry = get_registry()
    lines = [
        "| metric | better | settings | undefined / scored (students) "
        "| undefined / scored (references) |",
        "|---|---|---|---:|---:|",
    ]
    undefined = data.undefined
    for metric in data.metrics:
        plugin = registry.get("metrics", metric)
        settings = "; ".join(f"{k}={v}" for k, v in plugin.provenance().items()) or "—"
        counts = []
        for roles in (["student"], ["noisy", "teacher"]):
            rows = undefined[(undefined["metric"] == metric) & undefined["role"].isin(roles)]
            counts.append(f"{int(rows['n_undefined'].sum())} / {int(rows['n_scores'].sum())}")
        direction = "higher" if data.higher_is_better[metric] else "lower"
        lines.append(f"| {metric} | {direction} | {settings} | {counts[0]} | {counts[1]} |")
    return lines


_VERSIONED = ("torch", "pesq", "pystoi", "numpy", "scipy", "statsmodels", "pandas")
"""The distributions a page's numbers depend on: training, metrics, statistics."""


def provenance_section(
    data: LeaderboardData, dataset: str, command: str, git: dict[str, str],
    source: str | None = None,
) -> list[str]:
    """The provenance in Markdown; `git` is the source tree's state (`git_state()`) before
    the page's files were written, `source` says where the numbers were read from when it
    was not the store."""
    block = data.blocks[dataset]
    prepared = block.tested_on
    params = next(
        (dict(t.dataset_params) for t in data.grid.anchors if t.dataset == block.dataset), {}
    )
    train, teacher = data.config.train, data.config.teacher
    hours = compute_seconds(data) / 3600
    seed_warning = stats.seed_count_warning(len(data.grid.seeds))
    here = describe()
    lines = [
        "## Provenance",
        "",
        f"- **command**: `{command}`",
        *([f"- **source**: {source}"] if source else []),
        f"- **kdbench**: {kdbench.__version__} (result version {kdbench.RESULT_VERSION}), "
        f"git commit `{git['commit']}`, dirty tree: {git['dirty']}",
        f"- **date**: {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}",
        f"- **machine (this page)**: {here['cpu_model']} ({here['cpu_isa']}), "
        f"{os.cpu_count()} cores, GPU: {gpu_name()}, "
        f"{platform.platform()}",
        f"- **trials ran on**: {_hosts(data)}",
        f"- **numeric platforms**: {_platforms(data)}",
        f"- **seeds**: {', '.join(str(s) for s in data.grid.seeds)}",
        f"- **trained on**: {block.dataset}, parameters {params}",
        f"- **tested on**: {block.test_set}, identity `{prepared.identity}`, "
        f"{prepared.sample_rate} Hz, {len(prepared.splits['test'])} test utterances",
        f"- **compute**: {hours * 3600:.0f} s ({hours:.2f} h) summed over "
        f"{len(data.trials)} stored trial(s) of the grid",
        f"- **software**: python {platform.python_version()}, "
        + ", ".join(f"{name} {version_of(name)}" for name in _VERSIONED),
        "",
        "### Metrics",
        "",
        *_metric_section(data),
        "",
        "### Checkpoints",
        "",
        f"- students (`train.checkpoint = {train['checkpoint']}`): "
        f"{_CHECKPOINT_MEANING[train['checkpoint']]}; {train['steps']} steps, "
        f"validation every {train['valid_every']}.",
        _teacher_line(teacher),
        "- The test split is used only for the scores in these tables.",
        "",
        "### Statistics",
        "",
        stats.METHODOLOGY,
        "",
    ]
    if seed_warning:
        lines += [f"> **Warning:** {seed_warning}", ""]
    return lines


def _teacher_line(teacher: dict[str, Any]) -> str:
    """How the teachers were made: trained here under a policy, or loaded from files."""
    seeds = ", ".join(map(str, teacher["seeds"]))
    files = teacher_files(teacher)
    if not files:
        return (
            f"- teacher (`teacher.checkpoint = {teacher['checkpoint']}`): "
            f"{_CHECKPOINT_MEANING[teacher['checkpoint']]}; {teacher['steps']} steps, "
            f"seed(s) {seeds}."
        )
    loaded = ", ".join(f"seed {seed}: `{Path(path).name}`" for seed, path in files.items())
    return (
        f"- teachers loaded from checkpoint files, not trained by this run ({loaded}); "
        "each file's sha256 is in its trials' ids and its own metadata says how it was trained."
    )


def grid_summary(data: LeaderboardData, dataset: str) -> str:
    """The page's first sentence: the grid's size, how much of it is done, the references."""
    expected = len(data.grid.students) // max(1, len(data.grid.datasets))
    return (
        f"{len(data.pairs)} pair(s) × {len(data.methods)} method(s) "
        f"({', '.join(data.methods)}) × "
        f"{len(data.grid.seeds)} seed(s) = {expected} student trial(s), "
        f"{expected - _missing(data, dataset)} done. Control: {data.control or '—'}; "
        f"baseline: {data.baseline or data.config.run['baseline'] + ' (not in this grid)'}."
    )


def _missing(data: LeaderboardData, dataset: str) -> int:
    return sum(count for (ds, _, _), count in data.missing.items() if ds == dataset)


def page(
    data: LeaderboardData, dataset: str, plots: dict[str, str], provenance: list[str]
) -> str:
    """The README.md of one dataset's directory; `plots` maps a caption to a PNG file name,
    `provenance` is the page's provenance section (`provenance_section`)."""
    missing = _missing(data, dataset)
    lines = [
        f"# kdbench leaderboard — {dataset}, preset `{data.config.preset}`",
        "",
        grid_summary(data, dataset),
        "",
        "**[Open the site](site/index.html)** (`site/index.html`, static, works offline): "
        "forest plots of each method's effect with confidence intervals, sortable and "
        "filterable tables, quality vs cost, and audio examples where the trials' checkpoints "
        "are available.",
        "",
    ]
    if missing:
        lines += [
            f"> **Incomplete:** {missing} student trial(s) are missing or failed; their cells are "
            "marked incomplete and summarise only the seeds that exist.",
            "",
        ]
    lines += ["## Results", ""]
    for table in display_tables(data):
        lines += [f"### {table.title}", "", markdown_table(table), ""]
    lines += [f"- {md_escape(line)}" for line in legend(data)]
    lines += [
        "- Δ = method − reference, mean of per-seed differences over the seeds both have; "
        "p (Holm) = Wilcoxon signed-rank on per-utterance differences, Holm-adjusted per "
        "(dataset, metric) table; d_z = mean / std of per-seed differences.",
        "",
        "## Rank summary across pairs",
        "",
        markdown_table(rank_table(data, dataset)),
        "",
        "Rank 1 = best mean within a pair; a win or loss needs Holm p < 0.05, anything else "
        "compared is a tie.",
        "",
        "## Is it real or seed noise? Across pairs, seeds as units",
        "",
        markdown_table(across_pairs_table(data, dataset)),
        "",
        "Each (pair, seed) is one unit: a pair of students trained independently of every "
        "other unit. Δ = mean over units of the difference of per-seed means (method − "
        "reference); better / units = units where the method is better; p (Holm) = Wilcoxon "
        "signed-rank over the units, Holm-adjusted per metric over every method and "
        "reference. Unlike the per-pair p above, which pools utterances and treats the "
        "trained students as fixed, this test includes training randomness; it speaks for "
        "the suite of pairs as a whole, not for any one pair. Also in `across_pairs.csv`.",
        *(
            [
                "",
                "### Does the gain grow with mismatch?",
                "",
                markdown_table(trend_table(data, dataset)),
                "",
                "Over the same units, Δ/level = the least-squares slope of the unit "
                "differences on each pair's mismatch level (declared by the pair's plugin): "
                "for a higher-is-better metric, positive means the gain grows as the "
                "teacher/student mismatch grows. 95 % CI and t-test of the slope, "
                "Holm-adjusted per metric like p. Columns `trend*` and `p_trend` of "
                "`across_pairs.csv`.",
            ]
            if has_trend(data)
            else []
        ),
        "",
        "## The teacher as a random factor; where the spread comes from",
        "",
        *(
            [markdown_table(teacher_level_table(data, dataset)), ""]
            if data.teachers > 1
            else [
                f"This grid distils from one teacher (`teacher.seeds` = "
                f"{list(data.config.teacher['seeds'])}), so every p-value above is conditional "
                "on that teacher; run with several teacher seeds for the teacher-level test.",
                "",
            ]
        ),
        markdown_table(variance_table(data, dataset)),
        "",
        hierarchy.METHODOLOGY + " Variance shares: ANOVA estimators of teacher, student seed "
        "(within teacher), utterance and residual variance of each student cell's "
        "per-utterance scores, median over the cells. Full rows in `teacher_level.csv` and "
        "`variance_components.csv`.",
        "",
        "## Plots",
        "",
    ]
    for caption, name in plots.items():
        lines += [f"![{caption}]({name})", ""]
    lines += [f"How to read the forest plots: {FOREST_READING}", ""]
    lines += provenance
    lines += [
        "## Files",
        "",
        "- `site/`: the same leaderboard as a static site (`site/index.html`), with audio.",
        "- `results.csv`: the summary rows of these tables (one per cell and reference).",
        "- `across_pairs.csv`: the across-pairs comparisons (one per metric, method and "
        "reference).",
        "- `results.tex`: the tables as LaTeX `tabular`s.",
        "- `trials.csv`: one row per trial of the grid in the store (the export these tables "
        "were computed from).",
        "",
    ]
    return "\n".join(lines)


def publish(
    data: LeaderboardData, directory: Path, command: str, store: Store,
    claims: Path | None = None, audio_pair: str | None = None, source: str | None = None,
) -> list[Path]:
    """Write `directory/<dataset>-<preset>/` for every shown dataset; return the README paths.

    `claims` is a Markdown file shown in the site's Claims section; `audio_pair` the pair
    whose students the site plays (default: the first shown pair).
    """
    from kdbench.report.site import write_site

    if claims is not None and not Path(claims).is_file():
        raise KdbenchError(f"{claims}: no such claims file")
    if audio_pair is not None and audio_pair not in data.pairs:
        raise KdbenchError(
            f"--audio-pair {audio_pair}: not shown on this page; shown: {', '.join(data.pairs)}"
        )
    preset = Path(data.config.preset).stem
    git = git_state()  # before writing: a page published into the checkout must not dirty itself
    if git["dirty"].startswith("yes"):
        logger.warning(
            "publishing from a checkout with uncommitted changes %s: the pages will say "
            "'dirty tree: yes', and their commit alone does not reproduce them; commit first "
            "for pages anyone can re-run", git["dirty"].removeprefix("yes "),
        )
    written = []
    for dataset in data.datasets:
        shown = select(data, datasets=[dataset], pairs=data.pairs, metrics=data.metrics,
                       methods=data.methods)
        block = data.blocks[dataset]
        tested = "" if block.test_set == block.dataset else f"-on-{block.test_set}"
        out = Path(directory) / f"{block.dataset}{tested}-{preset}"
        out.mkdir(parents=True, exist_ok=True)
        plots = {}
        for metric in shown.metrics:
            name = f"forest-{metric}.png"
            forest_plot(shown, dataset, metric, out / name)
            plots[f"{metric}: effect of each method vs the control and the baseline"] = name
        for metric in shown.metrics:
            name = f"cost-{metric}.png"
            cost_plot(shown, dataset, metric, out / name)
            plots[f"{metric} vs student MACs"] = name
        results_frame(shown).to_csv(out / "results.csv", index=False)
        if len(shown.across_pairs):
            shown.across_pairs[shown.across_pairs["dataset"] == dataset].to_csv(
                out / "across_pairs.csv", index=False
            )
        shown.teacher_level.to_csv(out / "teacher_level.csv", index=False)
        shown.variance.to_csv(out / "variance_components.csv", index=False)
        tables = [
            *display_tables(shown), rank_table(shown, dataset), across_pairs_table(shown, dataset),
            *([trend_table(shown, dataset)] if has_trend(shown) else []),
            variance_table(shown, dataset),
            *([teacher_level_table(shown, dataset)] if shown.teachers > 1 else []),
        ]
        (out / "results.tex").write_text("\n\n".join(latex_table(t) for t in tables) + "\n")
        trials_export(shown, dataset).to_csv(out / "trials.csv", index=False)
        provenance = provenance_section(shown, dataset, command, git, source)
        write_site(shown, dataset, out, store, "\n".join(provenance), claims, audio_pair,
                   grid_summary(shown, dataset))
        readme = out / "README.md"
        readme.write_text(page(shown, dataset, plots, provenance))
        written.append(readme)
    return written
