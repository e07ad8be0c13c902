"""The leaderboard of one grid: what the store holds for exactly that grid's trial ids.

Reading by id, never by (pair, method, seed) alone, means rows made with another config
can never be mixed in; trials the grid expects but the store lacks make their cell
incomplete, shown as such rather than silently averaged.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence

import pandas as pd
from rich import box
from rich.console import Console
from rich.table import Table

from kdbench.api import PreparedDataset
from kdbench.config import Config
from kdbench.errors import KdbenchError
from kdbench.plugin.registry import get_registry
from kdbench.report import hierarchy, stats
from kdbench.run.grid import Grid
from kdbench.run.store import Store

PLATFORM_MARK = "§"
"""A cell whose trials ran on more than one numeric platform (`kdbench.run.platform`)."""
CONTROL_MARKS = ("*", "**")
"""Significance vs the control (p_holm < 0.05, < 0.01)."""
BASELINE_MARKS = ("†", "‡")
"""Significance vs the baseline; different symbols so the two comparisons never blur."""


@dataclasses.dataclass(frozen=True)
class Block:
    """One leaderboard block: models trained on `dataset`, scored on the test split of
    `test_set` (the same name for the in-domain block, another for cross-corpus ones)."""

    label: str
    dataset: str
    test_set: str
    tested_on: PreparedDataset


def block_label(dataset: str, test_set: str) -> str:
    return dataset if test_set == dataset else f"{dataset} → {test_set}"


def blocks_of(grid: Grid) -> dict[str, Block]:
    """The leaderboard blocks of a grid: each training dataset on its own test split, then
    on each extra test set."""
    blocks = {}
    for name, dataset in grid.datasets.items():
        blocks[name] = Block(name, name, name, dataset)
        for test_name, test in grid.test_datasets.items():
            label = block_label(name, test_name)
            blocks[label] = Block(label, name, test_name, test)
    return blocks


@dataclasses.dataclass
class LeaderboardData:
    """Everything a table needs, gathered once from the store.

    `datasets` are the blocks shown (a training dataset with its own test split, and with
    each extra test set: `blocks` says which), and with `pairs`, `methods` and `metrics` they
    start as the whole grid and shrink under `select`. Every frame's `dataset` column holds
    the block label. The statistics in `summary` are always those of the whole grid, so
    hiding rows never changes a Holm-corrected p.
    """

    grid: Grid
    config: Config
    trials: pd.DataFrame
    scores: pd.DataFrame
    anchors: pd.DataFrame
    summary: pd.DataFrame
    ranks: pd.DataFrame
    across_pairs: pd.DataFrame
    higher_is_better: dict[str, bool]
    reference_methods: list[str]
    control: str | None
    baseline: str | None
    student_size: dict[tuple[str, str], dict[str, float]]
    teacher_size: dict[str, float]
    missing: dict[tuple[str, str, str], int]
    undefined: pd.DataFrame
    trial_means: pd.DataFrame
    datasets: list[str]
    pairs: list[str]
    methods: list[str]
    metrics: list[str]
    blocks: dict[str, Block] = dataclasses.field(default_factory=dict)
    platforms: dict[tuple[str, str], set[str]] = dataclasses.field(default_factory=dict)
    mismatch: dict[str, int] = dataclasses.field(default_factory=dict)
    """Each pair's mismatch level (from its plugin): the x of the across-pairs trend."""
    teacher_level: pd.DataFrame = dataclasses.field(
        default_factory=lambda: pd.DataFrame(
            columns=["dataset", "test_set", *hierarchy.COMPARISON_COLUMNS]
        )
    )
    variance: pd.DataFrame = dataclasses.field(
        default_factory=lambda: pd.DataFrame(
            columns=["dataset", "test_set", *hierarchy.VARIANCE_COLUMNS]
        )
    )

    @property
    def teachers(self) -> int:
        return len(self.config.teacher["seeds"])

    def mixes_platforms(self, pair: str, *methods: str) -> bool:
        """Whether the trials of these methods' cells of `pair` (one cell, or a cell and
        its reference: a comparison) ran on more than one numeric platform."""
        found = set().union(*(self.platforms.get((pair, m), set()) for m in methods))
        return len(found) > 1

    def cell(self, dataset: str, pair: str, method: str, metric: str) -> pd.Series | None:
        """The summary row of one cell, or None when no seed of it has a score."""
        summary = self.summary
        if not len(summary):
            return None
        rows = summary[
            (summary["dataset"] == dataset)
            & (summary["pair"] == pair)
            & (summary["method"] == method)
            & (summary["metric"] == metric)
        ]
        return rows.iloc[0] if len(rows) else None

    def anchor(self, dataset: str, role: str, metric: str) -> pd.Series | None:
        """The noisy input's or the teachers' score summary (`role`) in one block."""
        anchors = self.anchors
        chosen = (
            (anchors["dataset"] == dataset) & (anchors["role"] == role) & (anchors["metric"] == metric)
        )
        rows = anchors[chosen]
        return rows.iloc[0] if len(rows) else None

    def across(self, dataset: str, metric: str, method: str, ref: str) -> pd.Series | None:
        """The across-pairs comparison of `method` with `ref`, or None if there is none."""
        table = self.across_pairs
        if method == ref or not len(table):
            return None
        rows = table[
            (table["dataset"] == dataset) & (table["metric"] == metric)
            & (table["method"] == method) & (table["reference"] == ref)
        ]
        return rows.iloc[0] if len(rows) and rows.iloc[0]["n_units"] else None

    @property
    def comparisons(self) -> list[str]:
        """The reference methods every table compares with: the first control and the baseline."""
        return [ref for ref in dict.fromkeys([self.control, self.baseline]) if ref]


def _reference_methods(grid: Grid, config: Config) -> list[str]:
    wanted = [*config.run["controls"], config.run["baseline"]]
    return [name for name in dict.fromkeys(wanted) if name in grid.methods]


def _ranks(summary: pd.DataFrame, higher: dict[str, bool], references: list[str]) -> pd.DataFrame:
    if not len(summary):
        return pd.DataFrame()
    return stats.rank_summary(summary, higher, references=references)


def _across_pairs(
    scores: pd.DataFrame, higher: dict[str, bool], references: list[str],
    mismatch: Mapping[str, int],
) -> pd.DataFrame:
    if not len(scores):
        return pd.DataFrame()
    return stats.across_pairs(scores, higher, references=references, mismatch=mismatch)


def mismatch_levels(pairs: Iterable[str]) -> dict[str, int]:
    """Each pair's mismatch level, as its plugin declares it (`ArchitecturePair.mismatch`)."""
    registry = get_registry()
    return {pair: registry.get("pairs", pair).mismatch for pair in pairs}


def _teacher_level(scores: pd.DataFrame, higher: dict[str, bool], references: list[str]) -> pd.DataFrame:
    if not len(scores) or not references:
        return pd.DataFrame(columns=["dataset", "test_set", *hierarchy.COMPARISON_COLUMNS])
    return hierarchy.teacher_level_comparison(scores, higher, references=references)


def _variance(scores: pd.DataFrame) -> pd.DataFrame:
    if not len(scores):
        return pd.DataFrame(columns=["dataset", "test_set", *hierarchy.VARIANCE_COLUMNS])
    return hierarchy.variance_components(scores)


def control_and_baseline(grid: Grid, config: Config) -> tuple[str | None, str | None]:
    """The first control and the baseline that the grid runs (None where it runs neither)."""
    control = next((m for m in config.run["controls"] if m in grid.methods), None)
    baseline = config.run["baseline"] if config.run["baseline"] in grid.methods else None
    return control, baseline


def missing_trials(grid: Grid, done: set[str]) -> dict[tuple[str, str, str], int]:
    """Student trials of the grid not in `done`, counted per (block, pair, method): a
    missing trial is missing from every block of its dataset."""
    missing: dict[tuple[str, str, str], int] = {}
    for trial in grid.students:
        if trial.id not in done:
            for block in blocks_of(grid).values():
                if block.dataset == trial.dataset:
                    key = (block.label, trial.pair or "", trial.method or "")
                    missing[key] = missing.get(key, 0) + 1
    return missing


def collect(grid: Grid, store: Store, config: Config) -> LeaderboardData:
    """Read the grid's trials and scores from the store and compute every statistic once."""
    registry = get_registry()
    metrics = list(config.run["metrics"])
    higher = {name: registry.get("metrics", name).higher_is_better for name in metrics}
    blocks = blocks_of(grid)
    trials = store.trials(ds.identity for ds in grid.datasets.values())
    wanted = {trial.id for trial in grid.trials}
    trials = trials[trials["id"].isin(wanted)].reset_index(drop=True)
    done = trials[trials["status"] == "done"]
    scores = store.scores(done["id"])
    scores = scores[scores["metric"].isin(metrics)]
    merged = scores.merge(
        done[["id", "role", "dataset", "pair", "method", "seed", "teacher_seed"]],
        left_on="trial_id",
        right_on="id",
    )
    merged["dataset"] = [block_label(d, t) for d, t in zip(merged["dataset"], merged["test_set"])]
    merged = merged[merged["dataset"].isin(blocks)]
    students = merged[merged["role"] == "student"].rename(columns={"teacher_seed": "teacher"})
    student_scores = students[
        ["dataset", "test_set", "pair", "method", "teacher", "seed", "utterance", "metric", "value"]
    ].astype({"seed": int, "teacher": int})
    anchors = _anchor_summary(merged[merged["role"] != "student"])
    mismatch = mismatch_levels(grid.pairs)
    undefined = (
        merged.assign(undefined=merged["value"].isna())
        .groupby(["metric", "role"])["undefined"]
        .agg(n_undefined="sum", n_scores="count")
        .reset_index()
    )
    trial_means = (
        merged.groupby(["trial_id", "dataset", "metric"])["value"].mean().unstack("metric")
        if len(merged)
        else pd.DataFrame()
    ).reindex(columns=metrics)
    reference_methods = _reference_methods(grid, config)
    summary = (
        stats.summarize(
            student_scores, higher, references=reference_methods, expected_seeds=grid.seeds
        )
        if len(student_scores)
        else pd.DataFrame()
    )
    control, baseline = control_and_baseline(grid, config)
    comparisons = [ref for ref in dict.fromkeys([control, baseline]) if ref]
    student_rows = done[done["role"] == "student"]
    student_size = {(row.pair, row.method): row.model for row in student_rows.itertuples()}
    platforms: dict[tuple[str, str], set[str]] = {}
    for row in student_rows[student_rows["platform"].notna()].itertuples():
        platforms.setdefault((row.pair, row.method), set()).add(row.platform)
    teacher_rows = done[done["role"] == "teacher"]
    teacher_size = teacher_rows.iloc[0]["model"] if len(teacher_rows) else {}
    missing = missing_trials(grid, set(done["id"]))
    return LeaderboardData(
        grid=grid,
        config=config,
        trials=trials,
        scores=student_scores,
        anchors=anchors,
        summary=summary,
        ranks=_ranks(summary, higher, comparisons),
        across_pairs=_across_pairs(student_scores, higher, comparisons, mismatch),
        mismatch=mismatch,
        higher_is_better=higher,
        reference_methods=reference_methods,
        control=control,
        baseline=baseline,
        student_size=student_size,
        teacher_size=teacher_size,
        missing=missing,
        undefined=undefined,
        trial_means=trial_means,
        datasets=list(blocks),
        pairs=list(grid.pairs),
        methods=list(grid.methods),
        metrics=metrics,
        blocks=blocks,
        platforms=platforms,
        teacher_level=_teacher_level(student_scores, higher, comparisons),
        variance=_variance(student_scores),
    )


def _chosen(kind: str, requested: Iterable[str] | None, available: Sequence[str]) -> list[str]:
    """The requested names (comma lists allowed) in grid order; an unknown one is an error."""
    names = [part.strip() for item in requested or () for part in item.split(",") if part.strip()]
    if not names:
        return list(available)
    unknown = [name for name in names if name not in available]
    if unknown:
        raise KdbenchError(
            f"--{kind} {', '.join(unknown)}: not in this grid; available: {', '.join(available)}"
        )
    return [name for name in available if name in names]


def select(
    data: LeaderboardData,
    datasets: Iterable[str] | None = None,
    pairs: Iterable[str] | None = None,
    metrics: Iterable[str] | None = None,
    methods: Iterable[str] | None = None,
) -> LeaderboardData:
    """Show only some datasets, pairs, metrics or methods.

    Means, deltas and p-values stay those computed on the whole grid: hiding rows must not
    shrink the Holm family and so make a comparison look more significant. The rank
    summary is recomputed over what is shown, because a rank is only meaningful among the
    methods and pairs a reader sees.
    """
    shown = dataclasses.replace(
        data,
        datasets=_chosen("dataset", datasets, data.datasets),
        pairs=_chosen("pair", pairs, data.pairs),
        metrics=_chosen("metric", metrics, data.metrics),
        methods=_chosen("only-method", methods, data.methods),
    )
    summary = data.summary
    if len(summary):
        summary = summary[
            summary["dataset"].isin(shown.datasets)
            & summary["pair"].isin(shown.pairs)
            & summary["metric"].isin(shown.metrics)
            & summary["method"].isin(shown.methods)
        ].reset_index(drop=True)
    anchors = data.anchors
    shown.anchors = anchors[
        anchors["dataset"].isin(shown.datasets) & anchors["metric"].isin(shown.metrics)
    ]
    shown.summary = summary
    trained_on = {data.blocks[label].dataset for label in shown.datasets}
    shown.trials = data.trials[data.trials["dataset"].isin(trained_on)].reset_index(drop=True)
    shown.ranks = _ranks(summary, data.higher_is_better, data.comparisons)
    # Over the shown pairs, but every method: hiding a method never changes a Holm p.
    scores = data.scores
    shown.across_pairs = _across_pairs(
        scores[scores["dataset"].isin(shown.datasets) & scores["pair"].isin(shown.pairs)],
        data.higher_is_better,
        data.comparisons,
        data.mismatch,
    )
    level, variance = data.teacher_level, data.variance
    shown.teacher_level = level[level["dataset"].isin(shown.datasets)]
    shown.variance = variance[
        variance["dataset"].isin(shown.datasets) & variance["pair"].isin(shown.pairs)
        & variance["method"].isin(shown.methods)
    ]
    return shown


def significance_mark(p: float | None, symbols: tuple[str, str] = CONTROL_MARKS) -> str:
    """`symbols[0]` for p < 0.05, `symbols[1]` for p < 0.01, nothing otherwise or untested."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return ""
    return symbols[1] if p < 0.01 else symbols[0] if p < 0.05 else ""


def best_methods(data: LeaderboardData) -> set[tuple[str, str, str, str]]:
    """(dataset, pair, metric, method) of the best shown mean per (dataset, pair, metric).

    Only complete cells compete: an incomplete cell's mean rests on fewer seeds and could
    win by luck of which seeds happen to be there.
    """
    best: set[tuple[str, str, str, str]] = set()
    summary = data.summary
    if not len(summary):
        return best
    eligible = summary[summary["complete"].astype(bool) & summary["mean"].notna()]
    for (dataset, pair, metric), group in eligible.groupby(["dataset", "pair", "metric"]):
        top = group["mean"].max() if data.higher_is_better[metric] else group["mean"].min()
        for method in group.loc[group["mean"] == top, "method"]:
            best.add((dataset, pair, metric, method))
    return best


def format_count(count: float | None) -> str:
    """Parameter or MAC counts to 3 significant digits (38.2k, 226M): a column has room for 5."""
    if not count:
        return "—"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if count >= scale:
            return f"{count / scale:.3g}{suffix}"
    return f"{count:.0f}"


def format_delta(delta: float) -> str:
    """Signed, 3 decimals; a tiny non-zero difference in scientific form rather than +0.000."""
    if delta != 0 and abs(delta) < 0.001:
        return f"{delta:+.1e}"
    return f"{delta:+.3f}"


def _anchor_summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Per block, role and metric: the mean and std over every utterance of the role's
    trials, and how many trials (teachers) there are with the std of their means. Several
    teachers are pooled into one row, so the spread between them must be shown beside it:
    it is the part of a student's ceiling that is a draw of the teacher's seed."""
    keys = ["dataset", "role", "metric"]
    pooled = rows.groupby(keys)["value"].agg(["mean", "std", "count"])
    per_trial = rows.groupby([*keys, "trial_id"])["value"].mean().groupby(level=keys)
    between = per_trial.agg(n_trials="count", std_over_trials="std")
    return pooled.join(between).reset_index()


def format_anchor(anchor: pd.Series | None) -> str:
    """An anchor's mean, with ± the std over its trials when there are several (teachers of
    several seeds), as a student cell shows ± over seeds; one trial shows no spread."""
    if anchor is None:
        return format_number(None)
    trials = anchor.get("n_trials")
    if trials is None or pd.isna(trials) or int(trials) < 2:
        return format_number(anchor["mean"])
    return f"{format_number(anchor['mean'])}±{format_number(anchor['std_over_trials'])}"


def format_number(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{digits}f}"


def mean_std(row: pd.Series) -> str:
    """`1.605±0.024`; a single seed has no spread, shown as ±— rather than ±0."""
    return f"{format_number(row['mean'])}±{format_number(row['std'])}"


def is_true(value: object) -> bool:
    """True for a definite True; a nullable boolean's <NA> (not compared) is not True."""
    return value is not pd.NA and bool(value)


def seeds_label(data: LeaderboardData, row: pd.Series) -> str:
    return f"{int(row['n_seeds'])}/{len(data.grid.seeds)} seeds"


def wtl(row: pd.Series, ref: str) -> str:
    """Wins/ties/losses against `ref` as `W/T/L`."""
    return "/".join(str(int(row[f"{kind}_{ref}"])) for kind in ("wins", "ties", "losses"))


def render_terminal(data: LeaderboardData, console: Console) -> None:
    """One compact rich table per dataset, then the rank summary across pairs.

    Cells are `mean±std` plus significance marks so three metrics fit in ~110 columns;
    the deltas, p-values and effect sizes are in the other formats (`--format md`).
    """
    best = best_methods(data)
    for dataset in data.datasets:
        identity = data.blocks[dataset].tested_on.identity
        table = _compact_table(f"kdbench — {dataset} ({identity})")
        table.add_column("pair")
        table.add_column("method")
        table.add_column("params", justify="right")
        table.add_column("MAC/s", justify="right")
        for metric in data.metrics:
            arrow = "↑" if data.higher_is_better[metric] else "↓"
            # A cell such as `10.444±0.149**` is read as one number: narrow terminals fold
            # the pair and method names, never a score.
            table.add_column(f"{metric}{arrow}", justify="right", no_wrap=True)
        for role, label in (("noisy", "noisy input"), ("teacher", "teacher")):
            cells = []
            for metric in data.metrics:
                cells.append(format_anchor(data.anchor(dataset, role, metric)))
            sizes = (
                [format_count(data.teacher_size.get(k)) for k in ("params", "macs_per_second")]
                if role == "teacher"
                else ["—", "—"]
            )
            table.add_row("[dim]anchor[/dim]", f"[dim]{label}[/dim]", *sizes, *cells)
        for pair in data.pairs:
            table.add_section()
            for method in data.methods:
                cells = [
                    _terminal_cell(data, data.cell(dataset, pair, method, metric), best)
                    for metric in data.metrics
                ]
                missing = data.missing.get((dataset, pair, method), 0)
                label = method + (f" [yellow]({missing} missing)[/yellow]" if missing else "")
                if data.mixes_platforms(pair, method):
                    label += f" [yellow]{PLATFORM_MARK}[/yellow]"
                size = data.student_size.get((pair, method), {})
                table.add_row(
                    pair, label, format_count(size.get("params")),
                    format_count(size.get("macs_per_second")), *cells,
                )
        console.print(table)
        _render_ranks(data, dataset, console)
        _render_across_pairs(data, dataset, console)
        if has_trend(data):
            _render_trend(data, dataset, console)
        if data.teachers > 1:
            _render_teacher_level(data, dataset, console)
        if len(data.variance):
            _render_variance(data, dataset, console)
    _render_legend(data, console)


def _compact_table(title: str) -> Table:
    """The one style of every leaderboard table: tight enough for three metrics in ~110
    columns."""
    return Table(
        title=title, box=box.SIMPLE_HEAD, padding=(0, 1), collapse_padding=True, pad_edge=False
    )


def _terminal_cell(
    data: LeaderboardData, row: pd.Series | None, best: set[tuple[str, str, str, str]]
) -> str:
    if row is None:
        return "[yellow]missing[/yellow]"
    text = mean_std(row)
    if (row["dataset"], row["pair"], row["metric"], row["method"]) in best:
        text = f"[bold]{text}[/bold]"
    for ref, symbols in ((data.control, CONTROL_MARKS), (data.baseline, BASELINE_MARKS)):
        if ref and ref != row["method"]:
            mark = significance_mark(row[f"p_holm_{ref}"], symbols)
            if mark:
                colour = "green" if is_true(row[f"better_{ref}"]) else "red"
                text += f"[{colour}]{mark}[/{colour}]"
    if row["n_undefined"]:
        text += f" [dim]u{int(row['n_undefined'])}[/dim]"
    if not row["complete"]:
        text += f" [yellow]({seeds_label(data, row)})[/yellow]"
    return text


def _render_ranks(data: LeaderboardData, dataset: str, console: Console) -> None:
    ranks = data.ranks
    if not len(ranks):
        return
    ranks = ranks[ranks["dataset"] == dataset]
    table = _compact_table(f"rank summary across pairs — {dataset}")
    table.add_column("metric")
    table.add_column("method")
    table.add_column("mean rank", justify="right")
    table.add_column("pairs", justify="right")
    for ref in data.comparisons:
        table.add_column(f"W/T/L vs {ref}", justify="right")
    for metric in data.metrics:
        table.add_section()
        chosen = ranks[ranks["metric"] == metric].sort_values("mean_rank", kind="stable")
        for _, row in chosen.iterrows():
            pairs = f"{int(row['n_pairs'])}"
            if row["n_incomplete"]:
                pairs += f" [yellow]({int(row['n_incomplete'])} incomplete)[/yellow]"
            table.add_row(
                metric, row["method"], format_number(row["mean_rank"], 2), pairs,
                *[wtl(row, ref) if ref != row["method"] else "—" for ref in data.comparisons],
            )
    console.print(table)


def across_pairs_cells(data: LeaderboardData, dataset: str, metric: str, method: str, ref: str) -> list[str]:
    """Δ with its significance mark, better / units, and Holm p; dashes when not compared."""
    found = data.across(dataset, metric, method, ref)
    if found is None:
        return ["—", "—", "—"]
    p = found["p_holm"]
    symbols = CONTROL_MARKS if ref == data.control else BASELINE_MARKS
    return [
        f"{format_delta(found['delta'])}{significance_mark(p, symbols)}",
        f"{int(found['n_better'])} / {int(found['n_units'])}",
        "—" if math.isnan(p) else f"{p:.3g}",
    ]


TREND_LEAD = "Δ/level vs {ref}"
TREND_COLUMNS = ("95 % CI", "p (Holm)")
"""The trend table's columns: the slope of Δ per mismatch level, then these per reference."""


def has_trend(data: LeaderboardData) -> bool:
    """Whether there are across-pairs comparisons and the shown pairs span two mismatch
    levels or more, so a trend is defined."""
    levels = {data.mismatch.get(pair) for pair in data.pairs} - {None}
    return len(data.across_pairs) > 0 and len(levels) >= 2


def trend_cells(data: LeaderboardData, dataset: str, metric: str, method: str, ref: str) -> list[str]:
    """The slope of Δ per mismatch level with its mark, its 95 % CI and Holm p; dashes when
    not compared."""
    found = data.across(dataset, metric, method, ref)
    trend = math.nan if found is None else found.get("trend", math.nan)
    if math.isnan(trend):
        return ["—", "—", "—"]
    p = found["p_trend"]
    symbols = CONTROL_MARKS if ref == data.control else BASELINE_MARKS
    return [
        f"{format_delta(trend)}{significance_mark(p, symbols)}",
        f"[{format_delta(found['trend_ci_low'])}, {format_delta(found['trend_ci_high'])}]",
        "—" if math.isnan(p) else f"{p:.3g}",
    ]


def trend_title(data: LeaderboardData, dataset: str) -> str:
    levels = ", ".join(f"{pair} {data.mismatch[pair]}" for pair in data.pairs if pair in data.mismatch)
    return f"does the gain grow with mismatch? slope of Δ per level ({levels}) — {dataset}"


def teacher_level_cells(
    data: LeaderboardData, dataset: str, metric: str, method: str, ref: str
) -> list[str]:
    """Pooled over pairs, the teacher a random factor: Δ with its mark, 95 % CI, Holm p
    and teachers where the method is better; dashes when not compared."""
    level = data.teacher_level
    rows = level[
        (level["dataset"] == dataset) & (level["pair"] == hierarchy.POOLED)
        & (level["metric"] == metric) & (level["method"] == method) & (level["reference"] == ref)
    ] if len(level) and method != ref else level.iloc[0:0]
    if not len(rows):
        return ["—", "—", "—", "—"]
    row = rows.iloc[0]
    p = row["p_holm"]
    symbols = CONTROL_MARKS if ref == data.control else BASELINE_MARKS
    ci = (
        "—" if pd.isna(row["ci_low"])
        else f"[{format_delta(row['ci_low'])}, {format_delta(row['ci_high'])}]"
    )
    return [
        f"{format_delta(row['delta'])}{significance_mark(p, symbols)}",
        ci,
        "—" if pd.isna(p) else f"{p:.3g}",
        f"{int(row['teachers_better'])} / {int(row['n_teachers'])}",
    ]


def variance_cells(data: LeaderboardData, dataset: str, metric: str) -> list[str]:
    """Median over the block's student cells of each variance share (teacher, seed,
    utterance, residual) of the per-utterance scores; — where not estimable."""
    variance = data.variance
    cells = variance[(variance["dataset"] == dataset) & (variance["metric"] == metric)]
    texts = []
    for component in ("teacher", "seed", "utterance", "residual"):
        shares = cells[f"share_{component}"].dropna() if len(cells) else cells
        texts.append("—" if not len(shares) else f"{100 * shares.median():.1f} %")
    return texts


CellsOf = Callable[[str, str, str], list[str]]
"""(metric, method, reference method) -> the cells of one comparison."""


def _render_comparisons(
    data: LeaderboardData, title: str, columns: Sequence[str], cells: CellsOf, console: Console,
    lead: str = "Δ vs {ref}",
) -> None:
    """One row per (metric, method), `lead` and `columns` per reference method, filled by
    `cells`."""
    table = _compact_table(title)
    table.add_column("metric")
    table.add_column("method")
    for ref in data.comparisons:
        table.add_column(lead.format(ref=ref), justify="right")
        for column in columns:
            table.add_column(column, justify="right")
    for metric in data.metrics:
        table.add_section()
        for method in data.methods:
            table.add_row(metric, method, *[c for ref in data.comparisons for c in cells(metric, method, ref)])
    console.print(table)


def _render_trend(data: LeaderboardData, dataset: str, console: Console) -> None:
    _render_comparisons(
        data, trend_title(data, dataset), TREND_COLUMNS,
        lambda metric, method, ref: trend_cells(data, dataset, metric, method, ref),
        console, lead=TREND_LEAD,
    )


def _render_teacher_level(data: LeaderboardData, dataset: str, console: Console) -> None:
    _render_comparisons(
        data,
        f"teacher as a random factor, {data.teachers} teacher(s), pooled over pairs — {dataset}",
        ("95 % CI", "p (Holm)", "teachers better"),
        lambda metric, method, ref: teacher_level_cells(data, dataset, metric, method, ref),
        console,
    )


def _render_variance(data: LeaderboardData, dataset: str, console: Console) -> None:
    table = _compact_table(
        f"where the spread of student scores comes from (median share over cells) — {dataset}"
    )
    table.add_column("metric")
    for component in ("teacher", "seed", "utterance", "residual"):
        table.add_column(component, justify="right")
    for metric in data.metrics:
        table.add_row(metric, *variance_cells(data, dataset, metric))
    console.print(table)


def _render_across_pairs(data: LeaderboardData, dataset: str, console: Console) -> None:
    if not len(data.across_pairs):
        return
    _render_comparisons(
        data,
        f"across pairs, each (pair, seed) one unit: real or seed noise? — {dataset}",
        ("better/units", "p (Holm)"),
        lambda metric, method, ref: across_pairs_cells(data, dataset, metric, method, ref),
        console,
    )


def legend(data: LeaderboardData) -> list[str]:
    """How to read a table, as sentences shared by every format."""
    lines = [f"mean±std over {len(data.grid.seeds)} seed(s) of the per-seed mean over utterances; "
             "bold = best complete mean of the pair."]
    if data.control:
        lines.append(f"{'/'.join(CONTROL_MARKS)}: Holm p<0.05/0.01 vs {data.control} "
                     "(terminal: green = better, red = worse)")
    if data.baseline:
        lines.append(f"{'/'.join(BASELINE_MARKS)}: Holm p<0.05/0.01 vs baseline {data.baseline}")
    else:
        lines.append(
            f"baseline {data.config.run['baseline']} is not in this grid: no comparison with it"
        )
    lines.append("uN: N utterance scores undefined (excluded); (k/n seeds): incomplete cell.")
    mixed = sorted(f"{pair}/{method}" for (pair, method), found in data.platforms.items()
                   if len(found) > 1)
    if mixed:
        lines.append(
            f"{PLATFORM_MARK}: the cell's trials ran on more than one numeric platform (CPU type, "
            f"kernel ISA, library versions or threads), so its seeds differ in more than their "
            f"seed: {', '.join(mixed)}"
        )
    compared = [
        f"{pair}/{method} vs {ref}"
        for pair in data.pairs for method in data.methods for ref in data.comparisons
        if method != ref and not data.mixes_platforms(pair, method)
        and not data.mixes_platforms(pair, ref) and data.mixes_platforms(pair, method, ref)
    ]
    if compared:
        lines.append(
            f"{PLATFORM_MARK} comparisons: method and reference ran on different numeric "
            f"platforms: {', '.join(compared)}"
        )
    warning = stats.seed_count_warning(len(data.grid.seeds))
    if warning:
        lines.append(warning)
    return lines


def _render_legend(data: LeaderboardData, console: Console) -> None:
    for line in legend(data):
        console.print(f"[dim]{line}[/dim]")
