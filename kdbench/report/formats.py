"""The leaderboard as files for other tools: Markdown, CSV, LaTeX, HTML and JSON.

Every format starts from the same two things: `results_frame` (one row per shown cell,
plain numbers, for machines) and `display_tables` (formatted text per (dataset, metric),
for people). That keeps the numbers of a published page, its CSV and its LaTeX identical.
"""

from __future__ import annotations

import dataclasses
import html
import io
import json
import math
from collections.abc import Callable, Sequence

import pandas as pd

from kdbench.report.leaderboard import (
    BASELINE_MARKS,
    CONTROL_MARKS,
    TREND_COLUMNS,
    TREND_LEAD,
    LeaderboardData,
    across_pairs_cells,
    best_methods,
    format_anchor,
    format_count,
    format_delta,
    format_number,
    has_trend,
    legend,
    mean_std,
    seeds_label,
    significance_mark,
    teacher_level_cells,
    trend_cells,
    trend_title,
    variance_cells,
    wtl,
)

_STAT_COLUMNS = ("delta", "ci_low", "ci_high", "better", "p_holm", "p_wilcoxon", "p_ttest", "dz", "cliffs", "n_common")


@dataclasses.dataclass
class Cell:
    text: str
    bold: bool = False


@dataclasses.dataclass
class DisplayTable:
    """A formatted table: a title, a header row and rows of cells, ready for any markup."""

    title: str
    header: list[str]
    rows: list[list[Cell]]


def results_frame(data: LeaderboardData) -> pd.DataFrame:
    """One row per shown (dataset, pair, method, metric) and per anchor (noisy input,
    teachers). A student row's `std` is over seeds; an anchor row's `std` is over the
    utterances of all its trials, `std_over_trials` over its trials' means (the teachers of
    several seeds), NaN for a single trial.

    Cells the grid expects but the store has no score for are rows too, with NaN mean and
    `complete` False, so a consumer of the CSV cannot mistake absence for a result.
    """
    rows: list[dict[str, object]] = []
    expected = len(data.grid.seeds)
    for dataset in data.datasets:
        for metric in data.metrics:
            for role in ("noisy", "teacher"):
                ref = data.anchor(dataset, role, metric)
                size = data.teacher_size if role == "teacher" else {}
                rows.append({
                    "dataset": dataset, "role": role, "pair": "", "method": role,
                    "metric": metric, "mean": ref["mean"] if ref is not None else math.nan,
                    "std": ref["std"] if ref is not None else math.nan,
                    "n_trials": ref.get("n_trials", math.nan) if ref is not None else math.nan,
                    "std_over_trials": (
                        ref.get("std_over_trials", math.nan) if ref is not None else math.nan
                    ),
                    "params": size.get("params", math.nan),
                    "macs_per_second": size.get("macs_per_second", math.nan),
                })
            for pair in data.pairs:
                for method in data.methods:
                    rows.append(_student_row(data, dataset, pair, method, metric, expected))
    frame = pd.DataFrame(rows)
    nullable = {"n_seeds": "Int64", "expected_seeds": "Int64", "missing_trials": "Int64",
                "n_undefined": "Int64", "complete": "boolean"}
    nullable.update({f"n_common_{ref}": "Int64" for ref in data.comparisons})
    nullable.update({f"better_{ref}": "boolean" for ref in data.comparisons})
    return frame.astype({k: v for k, v in nullable.items() if k in frame.columns})


def _student_row(
    data: LeaderboardData, dataset: str, pair: str, method: str, metric: str, expected: int
) -> dict[str, object]:
    cell = data.cell(dataset, pair, method, metric)
    size = data.student_size.get((pair, method), {})
    row: dict[str, object] = {
        "dataset": dataset, "role": "student", "pair": pair, "method": method, "metric": metric,
        "n_seeds": 0 if cell is None else int(cell["n_seeds"]),
        "expected_seeds": expected,
        "complete": False if cell is None else bool(cell["complete"]),
        "missing_trials": data.missing.get((dataset, pair, method), 0),
        "mean": math.nan if cell is None else cell["mean"],
        "std": math.nan if cell is None else cell["std"],
        "n_undefined": 0 if cell is None else int(cell["n_undefined"]),
        "params": size.get("params", math.nan),
        "macs_per_second": size.get("macs_per_second", math.nan),
    }
    for ref in data.comparisons:
        for stat in _STAT_COLUMNS:
            value = math.nan if cell is None else cell[f"{stat}_{ref}"]
            row[f"{stat}_{ref}"] = None if value is pd.NA else value
    return row


def _delta_cells(data: LeaderboardData, cell: pd.Series | None, ref: str) -> list[Cell]:
    symbols = CONTROL_MARKS if ref == data.control else BASELINE_MARKS
    if cell is None or ref == cell["method"] or math.isnan(cell[f"delta_{ref}"]):
        return [Cell("—"), Cell("—"), Cell("—")]
    p = cell[f"p_holm_{ref}"]
    return [
        Cell(f"{format_delta(cell[f'delta_{ref}'])}{significance_mark(p, symbols)}"),
        Cell("—" if math.isnan(p) else f"{p:.3g}"),
        Cell(format_number(cell[f"dz_{ref}"], 2)),
    ]


def display_tables(data: LeaderboardData) -> list[DisplayTable]:
    """Per (dataset, metric): references, then pairs × methods with Δ, Holm p and d_z."""
    best = best_methods(data)
    tables = []
    for dataset in data.datasets:
        identity = data.blocks[dataset].tested_on.identity
        for metric in data.metrics:
            arrow = "↑" if data.higher_is_better[metric] else "↓"
            header = ["pair", "method", "params", "MAC/s", "seeds", f"{metric} {arrow} mean ± std"]
            for ref in data.comparisons:
                header += [f"Δ {ref}", "p (Holm)", "d_z"]
            rows = []
            for role, label in (("noisy", "noisy input"), ("teacher", "teacher")):
                ref_row = data.anchor(dataset, role, metric)
                size = data.teacher_size if role == "teacher" else {}
                rows.append([
                    Cell("anchor"), Cell(label), Cell(format_count(size.get("params"))),
                    Cell(format_count(size.get("macs_per_second"))), Cell("—"),
                    Cell(format_anchor(ref_row)),
                    *[Cell("") for _ in range(3 * len(data.comparisons))],
                ])
            for pair in data.pairs:
                for method in data.methods:
                    rows.append(_display_row(data, dataset, pair, method, metric, best))
            tables.append(DisplayTable(f"{dataset} ({identity}) — {metric}", header, rows))
    return tables


def _display_row(
    data: LeaderboardData, dataset: str, pair: str, method: str, metric: str,
    best: set[tuple[str, str, str, str]],
) -> list[Cell]:
    cell = data.cell(dataset, pair, method, metric)
    size = data.student_size.get((pair, method), {})
    missing = data.missing.get((dataset, pair, method), 0)
    label = method + (f" ({missing} missing)" if missing else "")
    if cell is None:
        value, seeds = Cell("missing (no seed scored)"), Cell(f"0/{len(data.grid.seeds)}")
    else:
        text = mean_std(cell).replace("±", " ± ")
        if cell["n_undefined"]:
            text += f" ({int(cell['n_undefined'])} undefined)"
        if not cell["complete"]:
            text += f" (incomplete: {seeds_label(data, cell)})"
        value = Cell(text, bold=(dataset, pair, metric, method) in best)
        seeds = Cell(f"{int(cell['n_seeds'])}/{len(data.grid.seeds)}")
    row = [Cell(pair), Cell(label), Cell(format_count(size.get("params"))),
           Cell(format_count(size.get("macs_per_second"))), seeds, value]
    for ref in data.comparisons:
        row += _delta_cells(data, cell, ref)
    return row


def rank_table(data: LeaderboardData, dataset: str) -> DisplayTable:
    """Mean rank and wins/ties/losses across pairs, for one dataset."""
    header = ["metric", "method", "mean rank", "pairs", "incomplete"]
    header += [f"W/T/L vs {ref}" for ref in data.comparisons]
    rows = []
    ranks = data.ranks
    for metric in data.metrics if len(ranks) else []:
        chosen = ranks[(ranks["dataset"] == dataset) & (ranks["metric"] == metric)]
        chosen = chosen.sort_values("mean_rank", kind="stable")
        for _, row in chosen.iterrows():
            rows.append([
                Cell(row["metric"]), Cell(row["method"]), Cell(format_number(row["mean_rank"], 2)),
                Cell(str(int(row["n_pairs"]))), Cell(str(int(row["n_incomplete"]))),
                *[Cell("—" if r == row["method"] else wtl(row, r)) for r in data.comparisons],
            ])
    return DisplayTable(f"{dataset} — rank summary across pairs", header, rows)


def _comparison_table(
    data: LeaderboardData, title: str, columns: Sequence[str],
    cells: Callable[[str, str, str], list[str]], lead: str = "Δ vs {ref}",
) -> DisplayTable:
    """One row per (metric, method), `lead` and `columns` per reference method, filled by
    `cells`."""
    header = ["metric", "method"]
    for ref in data.comparisons:
        header += [lead.format(ref=ref), *columns]
    rows = [
        [Cell(metric), Cell(method)]
        + [Cell(text) for ref in data.comparisons for text in cells(metric, method, ref)]
        for metric in data.metrics
        for method in data.methods
    ]
    return DisplayTable(title, header, rows)


def across_pairs_table(data: LeaderboardData, dataset: str) -> DisplayTable:
    """Each method vs each reference with every (pair, seed) as one unit, for one dataset."""
    return _comparison_table(
        data, f"{dataset} — across pairs, each trained pair of students one unit",
        ("better / units", "p (Holm)"),
        lambda metric, method, ref: across_pairs_cells(data, dataset, metric, method, ref),
    )


def trend_table(data: LeaderboardData, dataset: str) -> DisplayTable:
    """Over the (pair, seed) units, the slope of Δ on the pairs' mismatch level."""
    return _comparison_table(
        data, trend_title(data, dataset), TREND_COLUMNS,
        lambda metric, method, ref: trend_cells(data, dataset, metric, method, ref),
        lead=TREND_LEAD,
    )


def teacher_level_table(data: LeaderboardData, dataset: str) -> DisplayTable:
    """Pooled over pairs with the teacher as a random factor (kdbench.report.hierarchy)."""
    return _comparison_table(
        data,
        f"{dataset} — teacher as a random factor ({data.teachers} teacher(s)), pooled over pairs",
        ("95 % CI", "p (Holm)", "teachers better"),
        lambda metric, method, ref: teacher_level_cells(data, dataset, metric, method, ref),
    )


def variance_table(data: LeaderboardData, dataset: str) -> DisplayTable:
    """Median variance shares of the student scores: teacher, seed, utterance, residual."""
    header = ["metric", "teacher", "seed", "utterance", "residual"]
    rows = [
        [Cell(metric), *(Cell(text) for text in variance_cells(data, dataset, metric))]
        for metric in data.metrics
    ]
    return DisplayTable(f"{dataset} — where the spread of student scores comes from", header, rows)


# --------------------------------------------------------------------------- markup


def md_escape(text: str) -> str:
    """Pipes would split a cell and asterisks (significance marks) would start emphasis."""
    return text.replace("|", "\\|").replace("*", "\\*")


def markdown_table(table: DisplayTable) -> str:
    lines = [
        "| " + " | ".join(md_escape(h) for h in table.header) + " |",
        "|" + "|".join("---" if i < 2 else "---:" for i in range(len(table.header))) + "|",
    ]
    for row in table.rows:
        texts = [f"**{md_escape(c.text)}**" if c.bold else md_escape(c.text) for c in row]
        lines.append("| " + " | ".join(texts) + " |")
    return "\n".join(lines)


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "±": r"$\pm$", "Δ": r"$\Delta$", "—": "--", "↑": r"$\uparrow$", "↓": r"$\downarrow$",
    "†": r"$^\dagger$", "‡": r"$^\ddagger$", "×": r"$\times$",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(char, char) for char in text)


def latex_table(table: DisplayTable) -> str:
    """A plain `tabular` (no booktabs) so it compiles in any preamble."""
    spec = "ll" + "r" * (len(table.header) - 2)
    lines = [
        f"% {latex_escape(table.title)}",
        f"\\begin{{tabular}}{{{spec}}}",
        "\\hline",
        " & ".join(latex_escape(h) for h in table.header) + r" \\",
        "\\hline",
    ]
    for row in table.rows:
        texts = [latex_escape(c.text) for c in row]
        texts = [f"\\textbf{{{t}}}" if c.bold else t for c, t in zip(row, texts)]
        lines.append(" & ".join(texts) + r" \\")
    lines += ["\\hline", "\\end{tabular}"]
    return "\n".join(lines)


def html_table(table: DisplayTable) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.header)
    body = []
    for row in table.rows:
        texts = [f"<b>{html.escape(c.text)}</b>" if c.bold else html.escape(c.text) for c in row]
        cells = "".join(f"<td>{text}</td>" for text in texts)
        body.append(f"<tr>{cells}</tr>")
    return (
        f"<h3>{html.escape(table.title)}</h3>\n<table>\n<thead><tr>{head}</tr></thead>\n"
        f"<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table>"
    )


def _all_tables(data: LeaderboardData) -> list[DisplayTable]:
    tables = display_tables(data)
    for dataset in data.datasets:
        tables += [rank_table(data, dataset), across_pairs_table(data, dataset)]
        if has_trend(data):
            tables.append(trend_table(data, dataset))
        if data.teachers > 1:
            tables.append(teacher_level_table(data, dataset))
        tables.append(variance_table(data, dataset))
    return tables


def render_markdown(data: LeaderboardData) -> str:
    parts = []
    for table in _all_tables(data):
        parts += [f"### {table.title}", "", markdown_table(table), ""]
    parts += [f"- {md_escape(line)}" for line in legend(data)]
    return "\n".join(parts) + "\n"


def render_latex(data: LeaderboardData) -> str:
    return "\n\n".join(latex_table(table) for table in _all_tables(data)) + "\n"


def render_html(data: LeaderboardData) -> str:
    notes = "".join(f"<li>{html.escape(line)}</li>" for line in legend(data))
    return "\n".join(html_table(table) for table in _all_tables(data)) + f"\n<ul>{notes}</ul>\n"


def render_csv(data: LeaderboardData) -> str:
    buffer = io.StringIO()
    results_frame(data).to_csv(buffer, index=False)
    return buffer.getvalue()


def _records(frame: pd.DataFrame) -> list[dict[str, object]]:
    """Rows as JSON-ready dicts: NaN and <NA> become null, numpy scalars plain numbers."""
    return json.loads(frame.to_json(orient="records")) if len(frame) else []


def render_json(data: LeaderboardData) -> str:
    ranks, across = data.ranks, data.across_pairs
    if len(ranks):
        ranks = ranks[ranks["dataset"].isin(data.datasets) & ranks["metric"].isin(data.metrics)]
    if len(across):
        across = across[
            across["dataset"].isin(data.datasets) & across["metric"].isin(data.metrics)
            & across["method"].isin(data.methods)
        ]
    document = {
        "preset": data.config.preset,
        "datasets": {name: data.blocks[name].tested_on.identity for name in data.datasets},
        "seeds": list(data.grid.seeds),
        "control": data.control,
        "baseline": data.baseline,
        "results": _records(results_frame(data)),
        "ranks": _records(ranks),
        "across_pairs": _records(across),
        "teacher_level": _records(data.teacher_level),
        "variance_components": _records(data.variance),
    }
    return json.dumps(document, indent=2) + "\n"


def render(data: LeaderboardData, fmt: str) -> str:
    """The leaderboard as text in `fmt`: md, csv, latex, html or json."""
    renderers = {
        "md": render_markdown, "csv": render_csv, "latex": render_latex,
        "html": render_html, "json": render_json,
    }
    return renderers[fmt](data)
