"""Figures for a published leaderboard (matplotlib, Agg: no display is ever needed).

Each figure shows the per-seed points next to the summary, because with a handful of seeds
a mean and an interval alone hide how few and how spread the runs are.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402
from scipy import stats as sps  # noqa: E402

from kdbench.report.leaderboard import LeaderboardData  # noqa: E402


def ci95(values: np.ndarray) -> float:
    """Half-width of the t-based 95 % interval of the mean; NaN below two values."""
    if values.size < 2:
        return float("nan")
    return float(sps.t.ppf(0.975, values.size - 1) * values.std(ddof=1) / np.sqrt(values.size))


def seed_plot(data: LeaderboardData, dataset: str, metric: str, path: Path) -> Path:
    """One panel per pair: each method's per-seed means, their mean and 95 % CI."""
    scores = data.scores
    scores = scores[(scores["dataset"] == dataset) & (scores["metric"] == metric)]
    width = max(4.5, 1.2 + 0.9 * len(data.methods) * len(data.pairs))
    fig, axes = plt.subplots(
        1, len(data.pairs), figsize=(width, 3.4),
        sharey=True, squeeze=False,
    )
    rng = np.random.default_rng(0)
    for ax, pair in zip(axes[0], data.pairs):
        for x, method in enumerate(data.methods):
            chosen = scores[(scores["pair"] == pair) & (scores["method"] == method)]
            values = chosen.groupby("seed")["value"].mean().dropna().to_numpy()
            if not values.size:
                continue
            jitter = rng.uniform(-0.12, 0.12, values.size)
            ax.scatter(x + jitter, values, s=14, alpha=0.6, color="tab:blue", zorder=2)
            half = ci95(values)
            ax.errorbar(
                x + 0.25, values.mean(), yerr=None if np.isnan(half) else half,
                fmt="o", color="black", capsize=3, zorder=3,
            )
        ax.set_xticks(range(len(data.methods)), data.methods, rotation=30, ha="right")
        ax.set_title(pair)
        ax.grid(axis="y", alpha=0.3)
    direction = "higher" if data.higher_is_better[metric] else "lower"
    axes[0][0].set_ylabel(f"{metric} ({direction} is better)")
    fig.suptitle(
        f"{dataset}: per-seed {metric} (dots),\nmean ± 95 % CI over seeds (black)", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def cost_plot(data: LeaderboardData, dataset: str, path: Path) -> Path:
    """Each metric against the student's MACs per second of audio (log x), one line per method."""
    fig, axes = plt.subplots(
        1, len(data.metrics), figsize=(3.4 * len(data.metrics), 3.2), squeeze=False
    )
    summary = data.summary
    for ax, metric in zip(axes[0], data.metrics):
        for method in data.methods:
            points = []
            for pair in data.pairs:
                macs = data.student_size.get((pair, method), {}).get("macs_per_second")
                cell = data.cell(dataset, pair, method, metric) if len(summary) else None
                if macs and cell is not None and not np.isnan(cell["mean"]):
                    points.append((macs, cell["mean"]))
            if points:
                xs, ys = zip(*sorted(points))
                ax.plot(xs, ys, marker="o", label=method)
        teacher = data.reference(dataset, "teacher", metric)
        macs = data.teacher_size.get("macs_per_second")
        if teacher is not None and macs:
            ax.scatter([macs], [teacher["mean"]], marker="*", s=90, color="black", label="teacher")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("MACs per second of audio")
        ax.set_title(metric)
        ax.grid(alpha=0.3, which="both")
    if axes[0][-1].get_legend_handles_labels()[0]:
        axes[0][-1].legend(fontsize=7)
    fig.suptitle(f"{dataset}: quality vs compute (mean over seeds)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
