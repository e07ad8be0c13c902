"""Figures for a published leaderboard (matplotlib, Agg: no display is ever needed).

A reader of a KD benchmark wants the size of each method's effect against the control,
with its uncertainty; absolute scores on a shared axis hide differences of 0.01 dB next
to a spread of 1 dB between pairs. So the main figure is a forest plot of paired
differences, and the cost figure is a scatter, because pairs are not a series.

The suffix of `path` picks the format: `.svg` for the site (text kept as text, no date, a
fixed id salt, so the same store gives the same bytes), `.png` for the Markdown page.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter  # noqa: E402

from kdbench.report.effects import POOLED, effects, method_order  # noqa: E402
from kdbench.report.leaderboard import LeaderboardData, format_count, format_delta  # noqa: E402

matplotlib.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "kdbench"})

FOREST_READING = (
    "Δ = method − reference, per pair (dots) and pooled across pairs (diamonds), best "
    "pooled effect first; bars are 95 % confidence intervals, t-intervals over seed-level "
    "units. Pooled: the mean over the (pair, seed) units of the difference of per-seed "
    "means, its interval over those units, p = Holm-adjusted Wilcoxon signed-rank over them "
    "(the test that includes training randomness). Per pair: the mean of the per-seed "
    "differences, its interval over the seeds, p = Holm-adjusted Wilcoxon on per-utterance "
    "differences, which treats the trained students as fixed, so a small p with an interval "
    "that crosses zero reads \"real for these students, not shown to survive reseeding\". "
    "Intervals are unadjusted, p-values Holm-adjusted. Filled marks: Holm p < 0.05 (green "
    "better, red worse)."
)

_BETTER, _WORSE, _NEUTRAL = "#1a7f37", "#cf222e", "#57606a"
_ALPHA = 0.05
_ROW_INCHES = 0.2


def _save(fig: plt.Figure, path: Path) -> Path:
    path = Path(path)
    metadata = {"Date": None} if path.suffix == ".svg" else None
    fig.savefig(path, dpi=110, metadata=metadata)
    plt.close(fig)
    return path


def _colour(better: object, p: float) -> str:
    if better is None or math.isnan(p) or p >= _ALPHA:
        return _NEUTRAL
    return _BETTER if better else _WORSE


def _p_text(p: float) -> str:
    return "p —" if math.isnan(p) else f"p={p:.2g}"


def forest_plot(data: LeaderboardData, dataset: str, metric: str, path: Path) -> Path:
    """Per comparison a panel: each method's Δ per pair and pooled, with its 95 % CI and p.

    Methods run best first by pooled effect against the first comparison; each method's
    pooled row (diamond) heads its per-pair rows (dots). Filled marks are Holm p < 0.05.
    """
    rows = [row for method in method_order(data, dataset, metric)
            for row in [(method, POOLED), *[(method, pair) for pair in data.pairs]]]
    return _forest_figure(data, dataset, [(metric, rows)], path, per_pair=True)


def pooled_forest_plot(data: LeaderboardData, dataset: str, path: Path) -> Path:
    """The headline: every metric's pooled effects only, one block of panels per metric."""
    blocks = [(metric, [(method, POOLED) for method in method_order(data, dataset, metric)])
              for metric in data.metrics]
    return _forest_figure(data, dataset, blocks, path, per_pair=False)


def _forest_figure(
    data: LeaderboardData, dataset: str, blocks: Sequence[tuple[str, list[tuple[str, str]]]],
    path: Path, per_pair: bool,
) -> Path:
    """Blocks of panels stacked top to bottom (one per metric), one panel per comparison."""
    refs = data.comparisons or []
    label_in, panel_in, text_in, gap_in, legend_in = 1.3, 3.5, 2.4, 0.85, 0.45
    heights = [_ROW_INCHES * len(rows) + 0.3 for _, rows in blocks]
    width = max(label_in + len(refs) * (panel_in + text_in) + 0.2, 5.5)
    height = sum(heights) + gap_in * len(blocks) + legend_in
    fig = plt.figure(figsize=(width, height))
    top = height
    for (metric, rows), block in zip(blocks, heights):
        top -= 0.35
        direction = "higher" if data.higher_is_better[metric] else "lower"
        y = {row: -index for index, row in enumerate(rows)}
        for index, ref in enumerate(refs):
            left = label_in + index * (panel_in + text_in)
            ax = fig.add_axes((left / width, (top - block) / height, panel_in / width,
                               block / height))
            _forest_panel(ax, data, dataset, metric, ref, rows, y, show_labels=index == 0)
            ax.set_title(f"{metric}: method − {ref}", fontsize=9, loc="left")
            ax.set_xlabel(f"Δ {metric} ({direction} is better)", fontsize=8)
        top -= block + gap_in - 0.35
    handles = [
        Line2D([], [], marker="D", color=_NEUTRAL, ls="", label="all pairs: (pair, seed) units"),
        *([Line2D([], [], marker="o", color=_NEUTRAL, ls="", label="one pair: its seeds")]
          if per_pair else []),
        Line2D([], [], marker="o", color=_BETTER, ls="", label="better, Holm p < 0.05"),
        Line2D([], [], marker="o", color=_WORSE, ls="", label="worse, Holm p < 0.05"),
        Line2D([], [], marker="o", mfc="white", color=_NEUTRAL, ls="", label="not significant"),
        Line2D([], [], color=_NEUTRAL, lw=2, label="95 % CI (t, seed-level units)"),
    ]
    fig.legend(handles=handles, loc="lower left", ncol=len(handles), fontsize=7, frameon=False,
               bbox_to_anchor=(0.01, 0.0))
    return _save(fig, path)


def _forest_panel(
    ax: plt.Axes, data: LeaderboardData, dataset: str, metric: str, ref: str,
    rows: Sequence[tuple[str, str]], y: dict[tuple[str, str], int], show_labels: bool,
) -> None:
    table = effects(data, dataset, metric, ref).set_index(["method", "pair"])
    per_method = len(rows) // max(1, len({m for m, _ in rows}))
    for shade, method in enumerate(dict.fromkeys(m for m, _ in rows)):
        if shade % 2 == 0:
            top = y[(method, POOLED)]
            ax.axhspan(top - per_method + 0.5, top + 0.5, color="#f3f4f6", zorder=0)
    for method, pair in rows:
        row_y = y[(method, pair)]
        if method == ref:
            if pair == POOLED:
                ax.text(0.02, row_y, "reference", transform=ax.get_yaxis_transform(),
                        va="center", fontsize=7, color=_NEUTRAL, style="italic")
            continue
        if (method, pair) not in table.index:
            continue
        effect = table.loc[(method, pair)]
        colour = _colour(effect["better"], effect["p_holm"])
        significant = colour != _NEUTRAL
        pooled = pair == POOLED
        if not math.isnan(effect["ci_low"]):
            ax.plot([effect["ci_low"], effect["ci_high"]], [row_y, row_y], color=colour,
                    lw=2.2 if pooled else 1.1, solid_capstyle="butt", zorder=2)
        ax.plot([effect["delta"]], [row_y], marker="D" if pooled else "o",
                ms=6 if pooled else 4, color=colour, mfc=colour if significant else "white",
                mew=1.2, zorder=3)
        interval = ("" if math.isnan(effect["ci_low"]) else
                    f" [{format_delta(effect['ci_low'])}, {format_delta(effect['ci_high'])}]")
        ax.annotate(
            f"{format_delta(effect['delta'])}{interval}  {_p_text(effect['p_holm'])}",
            (1.02, row_y), xycoords=("axes fraction", "data"), va="center", fontsize=6.5,
            fontweight="bold" if pooled else "normal", color=colour if significant else "black",
            annotation_clip=False,
        )
    ax.axvline(0.0, color="black", lw=0.8, zorder=1)
    ax.set_ylim(min(y.values()) - 0.7, 0.7)
    ax.set_yticks(list(y.values()))
    if show_labels:
        ax.set_yticklabels([m if p == POOLED else p for m, p in rows], fontsize=7)
        for tick, (_, pair) in zip(ax.get_yticklabels(), rows):
            if pair == POOLED:
                tick.set_fontweight("bold")
    else:
        ax.set_yticklabels([])
    ax.tick_params(axis="y", length=0)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=6))
    ax.tick_params(axis="x", labelsize=7)
    ax.grid(axis="x", alpha=0.3)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def pareto_front(points: Sequence[tuple[float, float]], higher_is_better: bool) -> list[tuple[float, float]]:
    """The (cost, quality) points no other point beats on both, cheapest first.

    A point is on the front when it is strictly better than every cheaper point; of
    equally cheap points only the best can be.
    """
    sign = 1.0 if higher_is_better else -1.0
    front: list[tuple[float, float]] = []
    for cost, quality in sorted(points, key=lambda p: (p[0], -sign * p[1])):
        if front and front[-1][0] == cost:
            continue
        if not front or sign * quality > sign * front[-1][1]:
            front.append((cost, quality))
    return front


def cost_plot(data: LeaderboardData, dataset: str, metric: str, path: Path) -> Path:
    """Every student (pair, method) at its MACs per second of audio (log x), mean ± std over
    seeds, with the Pareto front over students, the teacher and the noisy input."""
    fig, ax = plt.subplots(figsize=(7.0, 4.3))
    colours = plt.get_cmap("tab10")
    points: list[tuple[float, float]] = []
    dodge = np.linspace(-0.025, 0.025, max(1, len(data.methods)))
    tops: dict[str, tuple[float, float]] = {}
    for index, method in enumerate(data.methods):
        xs, ys, errors = [], [], []
        for pair in data.pairs:
            macs = data.student_size.get((pair, method), {}).get("macs_per_second")
            cell = data.cell(dataset, pair, method, metric)
            if not macs or cell is None or math.isnan(cell["mean"]):
                continue
            points.append((float(macs), float(cell["mean"])))
            xs.append(macs * 10 ** dodge[index])
            ys.append(cell["mean"])
            errors.append(0.0 if math.isnan(cell["std"]) else cell["std"])
            best = tops.get(pair)
            if best is None or cell["mean"] + errors[-1] > best[1]:
                tops[pair] = (float(macs), float(cell["mean"] + errors[-1]))
        if xs:
            ax.errorbar(xs, ys, yerr=errors, fmt="o", ms=4, lw=0.8, capsize=2,
                        color=colours(index % 10), label=method, zorder=3)
    higher = data.higher_is_better[metric]
    front = pareto_front(points, higher)
    if front:
        fx, fy = zip(*front)
        ax.step(fx, fy, where="post", color="black", lw=1, ls="--", zorder=2,
                label="Pareto front (students)")
    for pair, (macs, top) in tops.items():
        ax.annotate(pair, (macs, top), xytext=(0, 6), textcoords="offset points",
                    ha="center", fontsize=7, color=_NEUTRAL)
    teacher = data.anchor(dataset, "teacher", metric)
    teacher_macs = data.teacher_size.get("macs_per_second")
    if teacher is not None and teacher_macs:
        ax.scatter([teacher_macs], [teacher["mean"]], marker="*", s=140, color="black",
                   zorder=4, label="teacher")
    noisy = data.anchor(dataset, "noisy", metric)
    if noisy is not None:
        ax.axhline(noisy["mean"], color=_NEUTRAL, lw=0.8, ls=":", label="noisy input")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: format_count(value)))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("MACs per second of audio (log)", fontsize=8)
    ax.set_ylabel(f"{metric} ({'higher' if higher else 'lower'} is better)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3, which="both")
    ax.set_title(f"{dataset}: {metric} vs compute, mean ± std over seeds", fontsize=9, loc="left")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    return _save(fig, path)
