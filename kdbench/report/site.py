"""A published leaderboard as a static site: `site/index.html` beside the Markdown page.

It opens from a file or any static host: every figure, clip, style and script is a file in
the folder, nothing is fetched from the network. Figures are Matplotlib SVGs (the
Markdown page gets the same figures as PNG); the tables are plain HTML, readable without
scripts, that a small bundled script (`site_assets/site.js`) makes sortable and
filterable. The numbers are the ones of the page's CSV files: both come from
`results_frame`, `effects` and `LeaderboardData.across`.
"""

from __future__ import annotations

import html
import importlib.resources
import math
import os
import re
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd
from markdown_it import MarkdownIt

from kdbench.report.formats import DisplayTable, rank_table, results_frame
from kdbench.report.leaderboard import (
    BASELINE_MARKS,
    CONTROL_MARKS,
    LeaderboardData,
    best_methods,
    format_count,
    format_delta,
    format_number,
    legend,
    significance_mark,
)
from kdbench.report.listening import AudioExamples, write_audio_examples
from kdbench.report.plots import FOREST_READING, cost_plot, forest_plot, pooled_forest_plot
from kdbench.run.store import Store

FOLDER = "site"
ASSETS = ("site.css", "site.js")



def test_block(dataset: str) -> str:
    """The test set a row was scored on. Today one dataset is one test set; the column and
    its filter exist so cross-corpus blocks slot in without changing the tables' shape."""
    return dataset


def _markdown(text: str, links_from: Path | None = None, site: Path | None = None) -> str:
    """Markdown as HTML (raw HTML in it is escaped); relative links written for a file in
    `links_from` are rewritten to work from `site`."""
    markdown = MarkdownIt("commonmark", {"html": False}).enable("table")
    tokens = markdown.parse(text)
    if links_from is not None and site is not None:
        for token in tokens:
            for child in token.children or []:
                href = child.attrGet("href") if child.type == "link_open" else None
                if href and not re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:|#|/", href):
                    child.attrSet("href", Path(os.path.relpath(links_from / href, site)).as_posix())
    return markdown.renderer.render(tokens, markdown.options, {})


def _cell(text: str, sort: object = None, classes: Sequence[str] = (), bold: bool = False,
          title: str | None = None) -> str:
    attributes = ""
    if sort is not None:
        value = "" if isinstance(sort, float) and math.isnan(sort) else sort
        attributes += f' data-sort="{html.escape(str(value))}"'
    if classes:
        attributes += f' class="{" ".join(classes)}"'
    if title:
        attributes += f' title="{html.escape(title)}"'
    body = html.escape(text)
    return f"<td{attributes}>{f'<b>{body}</b>' if bold else body}</td>"


def _head(columns: Iterable[str]) -> str:
    return "<thead><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in columns) + "</tr></thead>"


def _table(table_id: str, columns: Sequence[str], rows: Sequence[str], caption: str) -> str:
    return (f'<div class="scroll"><table id="{table_id}" class="sortable"><caption>{caption}'
            f"</caption>{_head(columns)}<tbody>{''.join(rows)}</tbody></table></div>")


def _filters(table_id: str, choices: dict[int, tuple[str, list[str]]]) -> str:
    """Selects for some columns (index → label, values) and a free-text search."""
    parts = [f'<div class="filters" data-filters-for="{table_id}">']
    for column, (label, values) in choices.items():
        options = "".join(f"<option>{html.escape(v)}</option>" for v in values)
        parts.append(f'<label>{html.escape(label)} <select data-column="{column}">'
                     f'<option value="">all</option>{options}</select></label>')
    parts.append('<label>search <input type="search" placeholder="any text"></label>'
                 '<span class="count" aria-live="polite"></span></div>')
    return "".join(parts)


def _count(value: float) -> str:
    return "—" if value is None or math.isnan(value) else format_count(value)


def _delta_cells(data: LeaderboardData, row: pd.Series, ref: str) -> list[str]:
    delta = row.get(f"delta_{ref}", math.nan)
    if row["method"] == ref or delta is None or math.isnan(delta):
        return [_cell("—", math.nan, ["num"]) for _ in range(4)]
    p = row[f"p_holm_{ref}"]
    symbols = CONTROL_MARKS if ref == data.control else BASELINE_MARKS
    mark = significance_mark(p, symbols)
    classes = ["num"]
    if mark:
        classes.append("better" if row[f"better_{ref}"] else "worse")
    low, high = row[f"ci_low_{ref}"], row[f"ci_high_{ref}"]
    interval = "—" if math.isnan(low) else f"[{format_delta(low)}, {format_delta(high)}]"
    return [
        _cell(f"{format_delta(delta)}{mark}", delta, classes),
        _cell(interval, low, ["num", "ci"]),
        _cell("—" if math.isnan(p) else f"{p:.3g}", p, ["num"]),
        _cell(format_number(row[f"dz_{ref}"], 2), row[f"dz_{ref}"], ["num"]),
    ]


def results_table(data: LeaderboardData, dataset: str) -> str:
    """Every (pair, method, metric) cell and the anchors (noisy input, teachers), one row each."""
    frame = results_frame(data)
    frame = frame[frame["dataset"] == dataset]
    best = best_methods(data)
    columns = ["test block", "pair", "method", "metric", "params", "MAC/s", "seeds",
               "mean ± std"]
    for ref in data.comparisons:
        columns += [f"Δ vs {ref}", "95 % CI", "p (Holm)", "d_z"]
    columns.append("flags")
    rows = []
    for _, row in frame.iterrows():
        student = row["role"] == "student"
        flags = []
        if student and row["missing_trials"]:
            flags.append(f"{int(row['missing_trials'])} missing")
        if student and not row["complete"]:
            flags.append(f"incomplete: {int(row['n_seeds'])}/{int(row['expected_seeds'])} seeds")
        if student and row["n_undefined"]:
            flags.append(f"{int(row['n_undefined'])} undefined")
        mean = row["mean"]
        spread = f" ± {format_number(row['std'])}" if student else ""
        if not student and row["n_trials"] >= 2:
            spread = f" ± {format_number(row['std_over_trials'])}"
        cells = [
            _cell(test_block(dataset), title=data.blocks[dataset].tested_on.identity),
            _cell(row["pair"] if student else "anchor"),
            _cell(row["method"] if student else {"noisy": "noisy input"}.get(row["method"], row["method"])),
            _cell(row["metric"]),
            _cell(_count(row["params"]), row["params"], ["num"]),
            _cell(_count(row["macs_per_second"]), row["macs_per_second"], ["num"]),
            _cell(f"{int(row['n_seeds'])}/{int(row['expected_seeds'])}" if student else "—",
                  row["n_seeds"] if student else math.nan, ["num"]),
            _cell(f"{format_number(mean)}{spread}", mean, ["num"],
                  bold=(dataset, row["pair"], row["metric"], row["method"]) in best),
        ]
        for ref in data.comparisons:
            cells += (_delta_cells(data, row, ref) if student
                      else [_cell("", math.nan) for _ in range(4)])
        cells.append(_cell("; ".join(flags), classes=["flag"] if flags else ()))
        classes = [] if student else ["anchor"]
        if flags:
            classes.append("incomplete")
        attribute = f' class="{" ".join(classes)}"' if classes else ""
        rows.append(f"<tr{attribute}>{''.join(cells)}</tr>")
    choices = {
        0: ("test block", [test_block(dataset)]),
        1: ("pair", ["anchor", *data.pairs]),
        2: ("method", ["noisy input", "teacher", *data.methods]),
        3: ("metric", list(data.metrics)),
    }
    caption = "Every cell of the grid: click a column to sort, use the filters to narrow."
    return _filters("results", choices) + _table("results", columns, rows, caption)


def across_table(data: LeaderboardData, dataset: str) -> str:
    columns = ["test block", "metric", "method"]
    for ref in data.comparisons:
        columns += [f"Δ vs {ref}", "95 % CI", "better / units", "p (Holm)", "Δ per level",
                    "95 % CI", "p trend"]
    rows = []
    for metric in data.metrics:
        for method in data.methods:
            cells = [_cell(test_block(dataset)), _cell(metric), _cell(method)]
            for ref in data.comparisons:
                found = data.across(dataset, metric, method, ref)
                if found is None:
                    cells += [_cell("—", math.nan, ["num"]) for _ in range(7)]
                    continue
                p = found["p_holm"]
                mark = significance_mark(p, CONTROL_MARKS if ref == data.control else BASELINE_MARKS)
                higher = data.higher_is_better[metric]
                classes = ["num"] + ([("better" if (found["delta"] > 0) == higher else "worse")]
                                     if mark else [])
                interval = ("—" if math.isnan(found["ci_low"]) else
                            f"[{format_delta(found['ci_low'])}, {format_delta(found['ci_high'])}]")
                cells += [
                    _cell(f"{format_delta(found['delta'])}{mark}", found["delta"], classes),
                    _cell(interval, found["ci_low"], ["num", "ci"]),
                    _cell(f"{int(found['n_better'])} / {int(found['n_units'])}",
                          found["n_better"], ["num"]),
                    _cell("—" if math.isnan(p) else f"{p:.3g}", p, ["num"]),
                    *_trend_cells(found, higher,
                                  CONTROL_MARKS if ref == data.control else BASELINE_MARKS),
                ]
            rows.append(f"<tr>{''.join(cells)}</tr>")
    choices = {1: ("metric", list(data.metrics)), 2: ("method", list(data.methods))}
    caption = ("Across pairs, each (pair, seed) one unit: Wilcoxon over the units, Holm per "
               "metric; the 95 % CI is a t-interval over the units. Δ per level: the "
               "least-squares slope of the unit differences on the pairs' mismatch level "
               "(does the gain grow with the mismatch?), t-test of the slope, Holm per metric.")
    return _filters("across", choices) + _table("across", columns, rows, caption)


def _trend_cells(found: pd.Series, higher: bool, symbols: Sequence[str]) -> list[str]:
    """The slope of Δ per mismatch level, its 95 % CI and Holm p; dashes without levels."""
    trend, p = found.get("trend", math.nan), found.get("p_trend", math.nan)
    if math.isnan(trend):
        return [_cell("—", math.nan, ["num"]) for _ in range(3)]
    mark = significance_mark(p, symbols)
    classes = ["num"] + ([("better" if (trend > 0) == higher else "worse")] if mark else [])
    low, high = found["trend_ci_low"], found["trend_ci_high"]
    return [
        _cell(f"{format_delta(trend)}{mark}", trend, classes),
        _cell(f"[{format_delta(low)}, {format_delta(high)}]", low, ["num", "ci"]),
        _cell("—" if math.isnan(p) else f"{p:.3g}", p, ["num"]),
    ]


def display_table_html(table_id: str, table: DisplayTable, caption: str) -> str:
    rows = ["<tr>" + "".join(_cell(c.text, bold=c.bold) for c in row) + "</tr>"
            for row in table.rows]
    return _table(table_id, table.header, rows, caption)


def _audio_section(examples: AudioExamples, metrics: Sequence[str]) -> str:
    parts = []
    if examples.unavailable:
        items = "".join(f"<li>{html.escape(reason)}</li>" for reason in examples.unavailable)
        parts.append('<div class="notice"><b>Not playable here</b>: a clip is only played '
                     "from the checkpoint of the very trial the tables describe.<ul>"
                     f"{items}</ul></div>")
    if not examples.examples:
        return "".join(parts) + "<p>No audio examples on this page: no teacher or student " \
            "of the page's trials could be played.</p>"
    parts.append(
        f"<p>Pair <b>{html.escape(str(examples.pair))}</b>. One test utterance per input-SNR "
        "band: the first of the test split in each band, never chosen by a result. Each "
        f"method plays its median-seed student (by the per-seed mean of "
        f"{html.escape(examples.median_metric)}). Scores are the stored per-utterance "
        "scores of that trial; the clip was recomputed from the trial's checkpoint and "
        "scored again, and ✓ marks that this gave the stored scores. Spectrograms share one "
        "colour scale per utterance (80 dB below the noisy input's peak). MP3, 16 kHz mono.</p>"
    )
    for example in examples.examples:
        header = "".join(f"<th>{html.escape(m)}</th>" for m in metrics)
        rows = []
        for clip in example.clips:
            scores = "".join(
                f'<td class="num">{format_number(clip.scores.get(m))}</td>' for m in metrics
            )
            check = {True: '<span class="better" title="recomputed = stored">✓</span>',
                     False: '<span class="worse" title="recomputed differs from stored">'
                            "differs from the stored scores</span>", None: ""}[clip.matches_store]
            rows.append(
                f"<tr><th scope=\"row\">{html.escape(clip.label)}<small>"
                f"{html.escape(clip.detail)}</small></th>"
                f'<td><audio controls preload="metadata" src="{clip.audio}"></audio></td>'
                f'<td><img class="spectrogram" src="{clip.spectrogram}" '
                f'alt="spectrogram of {html.escape(clip.label)}"></td>{scores}<td>{check}</td></tr>'
            )
        parts.append(
            f'<article class="example"><h3>{html.escape(example.band)}: utterance '
            f"<code>{html.escape(example.utterance)}</code>, input SNR {example.snr_db:.1f} dB"
            f'</h3><table class="clips"><thead><tr><th>who</th><th>listen</th>'
            f"<th>spectrogram (0–8 kHz)</th>{header}<th></th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></article>"
        )
    return "".join(parts)


def _figures(data: LeaderboardData, dataset: str, site: Path, kind: str, caption: str) -> str:
    draw = forest_plot if kind == "forest" else cost_plot
    parts = []
    for metric in data.metrics:
        name = f"plots/{kind}-{metric}.svg"
        draw(data, dataset, metric, site / name)
        heading = f"<h3>{html.escape(metric)}, per pair and pooled</h3>" if kind == "forest" else ""
        parts.append(f'{heading}<figure class="{kind}"><img src="{name}" alt="{kind} plot of '
                     f'{metric}"><figcaption>{caption}</figcaption></figure>')
    return "".join(parts)


def _headline(data: LeaderboardData, dataset: str, site: Path) -> str:
    name = "plots/forest-pooled.svg"
    pooled_forest_plot(data, dataset, site / name)
    return (
        "<p class='lead'>How much each method changes each metric against the control "
        f"({html.escape(str(data.control))}) and the baseline ({html.escape(str(data.baseline))}), "
        "pooled over every pair with each trained (pair, seed) one unit, so the interval and "
        "the test include training randomness. Per-pair plots follow.</p>"
        f'<figure class="forest pooled"><img src="{name}" alt="pooled effects of every method">'
        "</figure>"
    )


def write_site(
    data: LeaderboardData, dataset: str, out: Path, store: Store, provenance: str,
    claims: Path | None, audio_pair: str | None, summary: str,
) -> Path:
    """Write `out/site/` (replacing an older one) and return its index.html.

    `provenance` is Markdown (the page's provenance section), `claims` a Markdown file of
    the authors' claims; `summary` is the page's first paragraph.
    """
    site = Path(out) / FOLDER
    if site.exists():
        shutil.rmtree(site)
    (site / "plots").mkdir(parents=True)
    assets = importlib.resources.files("kdbench.report") / "site_assets"
    for name in ASSETS:
        (site / name).write_text((assets / name).read_text(encoding="utf-8"), encoding="utf-8")
    forest = _headline(data, dataset, site) + _figures(
        data, dataset, site, "forest", html.escape(FOREST_READING))
    cost = _figures(data, dataset, site, "cost", html.escape(
        "Each student (pair × method) at its MACs per second of audio, mean ± std over seeds "
        "(methods dodged sideways within a pair); dashed: the Pareto front over students; "
        "star: the teacher; dotted: the noisy input."))
    examples = write_audio_examples(data, dataset, store, audio_pair, site)
    notes = "".join(f"<li>{html.escape(line)}</li>" for line in legend(data))
    title = f"kdbench leaderboard — {dataset}, preset {data.config.preset}"
    sections = [
        ("effects", "Effects", "Effects against the control and the baseline", forest),
        ("tables", "Tables", "Tables", results_table(data, dataset) + f"<ul class='legend'>{notes}</ul>"
         + "<h3>Across pairs: is it real or seed noise?</h3>" + across_table(data, dataset)
         + "<h3>Rank summary across pairs</h3>"
         + display_table_html("ranks", rank_table(data, dataset),
                              "Rank 1 = best mean within a pair; a win or loss needs Holm "
                              "p &lt; 0.05, anything else compared is a tie.")),
        ("cost", "Quality vs cost", "Quality vs cost", cost),
        ("listen", "Listen", "Listen", _audio_section(examples, data.metrics)),
    ]
    if claims is not None:
        text = Path(claims).read_text(encoding="utf-8")
        sections.append(("claims", "Claims", "Claims",
                         _markdown(text, Path(claims).resolve().parent, site.resolve())))
    sections.append(("provenance", "Provenance", "Provenance", _markdown(provenance)))
    nav = "".join(f'<a href="#{key}">{html.escape(label)}</a>' for key, label, _, _ in sections)
    body = "".join(f'<section id="{key}"><h2>{html.escape(heading)}</h2>{content}</section>'
                   for key, _, heading, content in sections)
    index = site / "index.html"
    index.write_text(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title>"
        '<link rel="icon" href="data:,"><link rel="stylesheet" href="site.css"></head>'
        f"<body><header><h1>{html.escape(title)}</h1><p>{html.escape(summary)}</p>"
        f"<nav>{nav}</nav></header><main>{body}</main>"
        '<footer>Made by <code>kdbench leaderboard --publish</code>; the data behind every '
        'number is in <a href="../trials.csv">trials.csv</a>, <a href="../results.csv">'
        'results.csv</a> and <a href="../across_pairs.csv">across_pairs.csv</a>.</footer>'
        '<script src="site.js"></script></body></html>\n',
        encoding="utf-8",
    )
    return index
