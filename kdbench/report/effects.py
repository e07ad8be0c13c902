"""Each method's paired effect against a reference, per pair and pooled across pairs.

These are the rows of a forest plot. The figure and the site's tables read them from here so
that a plotted interval and a printed one can never disagree. Every number comes from
`stats`: per pair the cell's Δ (mean of per-seed differences), its t-interval over the
per-seed differences and the Holm-adjusted per-utterance Wilcoxon p; pooled, the
across-pairs Δ, its t-interval over the (pair, seed) units and their Holm-adjusted Wilcoxon p.
"""

from __future__ import annotations

import math

import pandas as pd

from kdbench.report.leaderboard import LeaderboardData

POOLED = "all pairs"
"""The `pair` of a pooled row."""

COLUMNS = ["method", "pair", "delta", "ci_low", "ci_high", "p_holm", "n_units", "better"]


def effects(data: LeaderboardData, dataset: str, metric: str, ref: str) -> pd.DataFrame:
    """One pooled row then one row per shown pair, for every shown method but `ref`.

    `better` applies the metric's direction to Δ; NaN Δ (nothing compared) gives None.
    """
    sign = 1.0 if data.higher_is_better[metric] else -1.0
    rows = []
    for method in data.methods:
        if method == ref:
            continue
        pooled = data.across(dataset, metric, method, ref)
        if pooled is not None:
            rows.append(_row(method, POOLED, pooled["delta"], pooled["ci_low"], pooled["ci_high"],
                             pooled["p_holm"], int(pooled["n_units"]), sign))
        for pair in data.pairs:
            cell = data.cell(dataset, pair, method, metric)
            if cell is None or math.isnan(cell[f"delta_{ref}"]):
                continue
            rows.append(_row(method, pair, cell[f"delta_{ref}"], cell[f"ci_low_{ref}"],
                             cell[f"ci_high_{ref}"], cell[f"p_holm_{ref}"],
                             int(cell[f"n_common_{ref}"]), sign))
    return pd.DataFrame(rows, columns=COLUMNS)


def _row(method: str, pair: str, delta: float, low: float, high: float, p: float, n: int,
         sign: float) -> dict[str, object]:
    better = None if math.isnan(delta) else bool(sign * delta > 0)
    return {"method": method, "pair": pair, "delta": float(delta), "ci_low": float(low),
            "ci_high": float(high), "p_holm": float(p), "n_units": n, "better": better}


def method_order(data: LeaderboardData, dataset: str, metric: str) -> list[str]:
    """The shown methods, best pooled effect against the first comparison first.

    The reference itself sits at its own effect, zero, so it lands between the methods
    that help and those that hurt; methods without a pooled effect go last, in grid order.
    """
    if not data.comparisons:
        return list(data.methods)
    ref = data.comparisons[0]
    sign = 1.0 if data.higher_is_better[metric] else -1.0
    pooled = effects(data, dataset, metric, ref)
    pooled = pooled[pooled["pair"] == POOLED].set_index("method")["delta"]
    key = {method: -sign * pooled.get(method, math.nan) for method in data.methods}
    key[ref] = 0.0
    known = [m for m in data.methods if not math.isnan(key[m])]
    unknown = [m for m in data.methods if math.isnan(key[m])]
    return sorted(known, key=lambda m: key[m]) + unknown
