"""Paired statistics for comparing KD methods against reference methods.

The benchmark runs every method with the same seeds, and a seed fixes the student's
initialisation and data order, so two methods trained with the same seed differ only by the
method. Every comparison here is therefore paired: across seeds on per-seed means, and
across (seed, utterance) pairs on per-utterance scores. Method, metric and reference names
are plain data; nothing here knows a particular method or metric.

Choices, and why:

* Per-seed mean = mean over the utterances the metric could score (NaN skipped). A seed
  whose utterances are all undefined counts as missing for that method.
* A cell (dataset, pair, metric, method) is *complete* when it has every seed that is
  expected (`expected_seeds`) or that any other method of the same (dataset, pair, metric)
  has. Incomplete cells are still summarised over the seeds they have, but flagged with
  `complete=False` and the missing seeds listed, so a table can never present them as if
  they were complete. Paired comparisons only ever use the seeds both sides have.
* The primary test is the two-sided Wilcoxon signed-rank test on per-utterance differences
  (method - reference) pooled over the common seeds, pairing by (seed, utterance) and
  dropping a pair when either score is NaN. It is primary because a signed-rank test over
  n seeds cannot go below p = 2/2^n (0.0625 for 5 seeds), whereas thousands of utterance
  pairs give real power. It treats the trained students as fixed: it says the difference
  is real on this test set for these students, and it is anti-conservative about training
  randomness because the same utterance recurs once per seed. The paired t-test over
  per-seed means (`p_ttest_*`) and d_z speak to the seed-to-seed variation and are reported
  unadjusted next to it.
* Across pairs (`across_pairs`), each (pair, seed) is one unit, an independently trained
  pair of students: a Wilcoxon test over the per-unit differences of per-seed means puts
  training randomness into the test, which the per-cell test cannot do with few seeds.
  It answers for the suite of pairs as a whole ("does the method help these students?").
* Trend with mismatch (`across_pairs` given each pair's mismatch level): over the same
  units, the least-squares slope of the per-unit difference on the pair's level
  (`scipy.stats.linregress`), its 95 % t-interval and the slope's two-sided t-test,
  Holm-adjusted per table like the across-pairs p. It answers "does the gain grow (or
  shrink) as the teacher/student gap grows?" with one number instead of a reading of five
  per-pair deltas by eye. A straight line in the level is the simplest trend a ladder of
  4–5 levels supports; it is a test of a monotone trend, not a model of its shape.
* Holm-Bonferroni adjusts the primary p over all comparisons of one table, a table being
  one (dataset, metric): every pair, every method and every reference in it. A comparison
  between two references (A vs B and B vs A) is one hypothesis and is counted once.
* Confidence intervals (`ci_low_*`, `ci_high_*`; `ci_low`, `ci_high` across pairs): the
  95 % t-interval of the mean difference over seed-level units (per cell the per-seed
  differences, across pairs the (pair, seed) units), from `scipy.stats.ttest_1samp`. It is
  over trained students, so it carries training randomness even where the per-cell p
  (pooled utterances) does not; unadjusted for multiplicity. A t-interval rather than a
  bootstrap because a bootstrap over 5 seeds has only a handful of distinct resamples and
  is too narrow.
* Effect sizes: d_z = mean / sample std of the per-seed differences (paired, across seeds);
  Cliff's delta = P(X > Y) - P(X < Y) between the method's and the reference's
  per-utterance scores pooled over the pairs the Wilcoxon test used. Cliff's delta ignores
  the pairing on purpose: it says how much the two score distributions overlap, which a
  reader can interpret without knowing the design, while d_z carries the paired effect.
* Signs are raw: `delta_*` and `cliffs_*` are method - reference whatever the metric's
  direction; `better_*` applies `higher_is_better`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

__all__ = [
    "METHODOLOGY",
    "CI_LEVEL",
    "across_pairs",
    "holm",
    "mean_ci",
    "min_p_over_seeds",
    "rank_summary",
    "seed_count_warning",
    "summarize",
]

METHODOLOGY = (
    "Scores are mean ± sample std over seeds of the per-seed mean over utterances "
    "(undefined scores excluded). Seeds pair the runs (same student initialisation and data "
    "order), so each method is compared with each reference within seeds. Significance: "
    "two-sided Wilcoxon signed-rank test on per-utterance differences paired by (seed, "
    "utterance), Holm-Bonferroni adjusted over all comparisons in the table; this test "
    "treats the trained students as fixed. Also reported: paired t-test over per-seed means "
    "(unadjusted), Cohen's d_z over per-seed differences, and Cliff's delta between "
    "per-utterance scores. Across pairs, each (pair, seed) pair of trained students is one "
    "unit: Wilcoxon signed-rank over the per-unit differences of per-seed means, "
    "Holm-adjusted per table; this test includes training randomness. The trend with "
    "mismatch is the least-squares slope of those unit differences on the pair's mismatch "
    "level, with a t-test of the slope, Holm-adjusted per table. Confidence intervals "
    "are 95 % t-intervals of the mean difference over seed-level units (per pair the "
    "per-seed differences, across pairs the (pair, seed) units), unadjusted. Cells missing "
    "seeds are flagged as incomplete."
)

CI_LEVEL = 0.95

_COLUMNS = ("dataset", "pair", "method", "seed", "utterance", "metric", "value")
_CELL = ["dataset", "pair", "metric"]
_TABLE = ["dataset", "metric"]


def min_p_over_seeds(n: int) -> float:
    """Smallest two-sided p an exact signed-rank test over `n` paired seeds can reach.

    It is reached when all n differences share a sign, which has probability 2/2^n under
    the null; this bounds what any seed-level rank test can ever claim.
    """
    if n < 1:
        raise ValueError(f"need at least one seed, got {n}")
    return min(1.0, 2.0 / 2.0**n)


def seed_count_warning(n: int, alpha: float = 0.05) -> str | None:
    """A sentence for a report when `n` seeds can never make a seed-level rank test significant."""
    floor = min_p_over_seeds(n)
    if floor < alpha:
        return None
    return (
        f"With {n} seed(s) a signed-rank test over seeds cannot reach p < {alpha:g} "
        f"(smallest possible p = {floor:.4g}) within one pair; rely on the per-utterance "
        "test, the across-pairs test (every (pair, seed) one unit) or add seeds."
    )


def mean_ci(diff: np.ndarray, level: float = CI_LEVEL) -> tuple[float, float]:
    """The t-interval of the mean of `diff` (seed-level units); NaNs below two units.

    Identical units have no spread, so their interval is the point itself, where scipy
    would return NaN from 0/0.
    """
    diff = np.asarray(diff, dtype=float)
    if diff.size < 2:
        return (np.nan, np.nan)
    if np.all(diff == diff[0]):
        return (float(diff[0]), float(diff[0]))
    interval = sps.ttest_1samp(diff, 0.0).confidence_interval(level)
    return (float(interval.low), float(interval.high))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni step-down adjusted p-values, in the input order.

    NaN marks a comparison that could not be made; it stays NaN and is not counted in the
    number of hypotheses, otherwise untestable comparisons would dilute the others.
    """
    p = np.asarray(pvalues, dtype=float)
    if p.ndim != 1:
        raise ValueError("holm() expects a flat sequence of p-values")
    defined = np.flatnonzero(~np.isnan(p))
    if np.any((p[defined] < 0) | (p[defined] > 1)):
        raise ValueError("p-values must lie in [0, 1]")
    out = np.full(p.shape, np.nan)
    m = defined.size
    if m:
        order = defined[np.argsort(p[defined], kind="stable")]
        scaled = (m - np.arange(m)) * p[order]
        out[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return out.tolist()


def summarize(
    scores: pd.DataFrame,
    higher_is_better: Mapping[str, bool],
    references: Sequence[str] = ("none",),
    expected_seeds: Sequence[int] | None = None,
) -> pd.DataFrame:
    """One row per (dataset, pair, metric, method) with seed statistics and paired tests.

    Columns: dataset, pair, metric, method, n_seeds, seeds_missing (tuple), complete,
    mean, std, n_undefined, then for each reference R: n_common_R (common seeds),
    n_pairs_R (utterance pairs tested), delta_R, ci_low_R, ci_high_R (`mean_ci` over the
    per-seed differences), better_R (nullable boolean), p_ttest_R,
    p_wilcoxon_R, p_holm_R, dz_R, cliffs_R. Comparison columns are NaN / <NA> where R is
    the method itself or absent from the (dataset, pair, metric). See the module docstring
    for the statistical choices.
    """
    _validate(scores, higher_is_better)
    references = list(dict.fromkeys(references))
    expected = {int(s) for s in expected_seeds} if expected_seeds is not None else set()
    rows: list[dict[str, object]] = []
    for (dataset, pair, metric), cell in scores.groupby(_CELL, sort=True):
        rows.extend(
            _summarize_cell(
                cell, dataset, pair, metric, bool(higher_is_better[metric]), references, expected
            )
        )
    out = pd.DataFrame(rows, columns=_summary_columns(references))
    for ref in references:
        out[f"better_{ref}"] = out[f"better_{ref}"].astype("boolean")
    _adjust_per_table(out, references)
    return out


def rank_summary(
    summary: pd.DataFrame,
    higher_is_better: Mapping[str, bool],
    references: Sequence[str] = ("none",),
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Aggregate a `summarize` table across architecture pairs.

    Columns: dataset, metric, method, mean_rank, n_pairs (pairs with a ranked mean),
    n_incomplete (pairs whose cell is incomplete), and for each reference R: wins_R,
    ties_R, losses_R. Rank 1 is the best mean within a (dataset, pair, metric), ties share
    the average rank. A win needs the better direction *and* Holm-adjusted p < alpha, a loss
    the worse direction and significance; anything else that was compared is a tie, so a
    non-significant lead never counts as a win. Mean ranks are only comparable between
    methods with the same n_pairs.
    """
    missing = [m for m in summary["metric"].unique() if m not in higher_is_better]
    if missing:
        raise ValueError(f"higher_is_better has no entry for metric(s) {sorted(missing)}")
    ranked = summary.copy()
    ascending = ~ranked["metric"].map(higher_is_better).astype(bool)
    # Flip the sign for higher-is-better metrics so one ascending rank serves both.
    oriented = ranked["mean"].where(ascending, -ranked["mean"])
    ranked["rank"] = oriented.groupby([ranked[c] for c in _CELL]).rank(
        method="average", ascending=True, na_option="keep"
    )
    ranked["incomplete"] = ~ranked["complete"].astype(bool)
    for ref in references:
        better = ranked[f"better_{ref}"].astype("boolean")
        delta = ranked[f"delta_{ref}"]
        significant = ranked[f"p_holm_{ref}"] < alpha
        compared = better.notna().to_numpy()
        worse = (~better.fillna(True)) & (delta != 0)
        ranked[f"wins_{ref}"] = (better.fillna(False) & significant).astype(int)
        ranked[f"losses_{ref}"] = (worse & significant).astype(int)
        ranked[f"ties_{ref}"] = (
            compared & (ranked[f"wins_{ref}"] == 0) & (ranked[f"losses_{ref}"] == 0)
        ).astype(int)
    agg: dict[str, tuple[str, str]] = {
        "mean_rank": ("rank", "mean"),
        "n_pairs": ("rank", "count"),
        "n_incomplete": ("incomplete", "sum"),
    }
    for ref in references:
        for kind in ("wins", "ties", "losses"):
            agg[f"{kind}_{ref}"] = (f"{kind}_{ref}", "sum")
    return (
        ranked.groupby(["dataset", "metric", "method"], sort=True).agg(**agg).reset_index()
    )


def across_pairs(
    scores: pd.DataFrame,
    higher_is_better: Mapping[str, bool],
    references: Sequence[str] = ("none",),
    mismatch: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Each method against each reference over every (pair, seed) both have, with the
    trained student pair as the unit: the seed-level answer to "is it real or seed noise?".

    Per unit, the difference of per-seed means (method − reference); over the units, the
    two-sided Wilcoxon signed-rank test, Holm-adjusted per (dataset, metric) over every
    method and reference (an unordered pair of methods once). Unlike the per-cell test,
    which pools utterances and so treats the trained students as fixed, here every unit is
    an independently trained pair of students, so training randomness is in the test; the
    price is that it asks a question about the whole suite of pairs, not about one pair.
    Columns: dataset, metric, method, reference, n_units, delta (mean difference),
    ci_low, ci_high (`mean_ci` over the units), n_better (units where the method is
    strictly better), p_wilcoxon, p_holm; and, from each pair's `mismatch` level, the
    trend of the difference with the level: trend (slope per level, raw sign like delta),
    trend_ci_low, trend_ci_high, p_trend (Holm-adjusted like p_holm). The trend is NaN
    without levels, or with fewer than two levels or three units.
    """
    _validate(scores, higher_is_better)
    unit = ["dataset", "pair", "seed", "metric"]
    means = scores.groupby([*unit, "method"], sort=False)["value"].mean().unstack("method")
    rows = []
    for (dataset, metric), table in means.groupby(level=["dataset", "metric"], sort=False):
        sign = 1.0 if higher_is_better[metric] else -1.0
        for ref in references:
            if ref not in table.columns:
                continue
            for method in table.columns:
                if method == ref:
                    continue
                units = (table[method] - table[ref]).dropna()
                diff = units.to_numpy()
                low, high = mean_ci(diff)
                levels = units.index.get_level_values("pair").map(
                    lambda pair: (mismatch or {}).get(pair, np.nan)
                ).to_numpy(dtype=float)
                rows.append({
                    "dataset": dataset, "metric": metric, "method": method, "reference": ref,
                    "n_units": int(diff.size),
                    "delta": float(diff.mean()) if diff.size else np.nan,
                    "ci_low": low, "ci_high": high,
                    "n_better": int((sign * diff > 0).sum()),
                    "p_wilcoxon": _signed_rank(diff),
                    **_trend(levels, diff),
                })
    out = pd.DataFrame(rows, columns=[
        "dataset", "metric", "method", "reference", "n_units", "delta", "ci_low", "ci_high",
        "n_better", "p_wilcoxon", "p_holm", "trend", "trend_ci_low", "trend_ci_high",
        "p_trend_raw", "p_trend",
    ])
    for _, table in out.groupby(_TABLE, sort=False):
        for raw, adjusted in (("p_wilcoxon", "p_holm"), ("p_trend_raw", "p_trend")):
            tested = table[table[raw].notna()]
            keys = [frozenset(pair) for pair in zip(tested["method"], tested["reference"])]
            out.loc[tested.index, adjusted] = _holm_once_per_hypothesis(keys, tested[raw])
    return out.drop(columns="p_trend_raw")


def _trend(levels: np.ndarray, diff: np.ndarray) -> dict[str, float]:
    """Slope of the unit differences on the mismatch level, its 95 % t-interval and the
    two-sided p of the slope (NaN where a line is not determined)."""
    known = ~np.isnan(levels)
    levels, diff = levels[known], diff[known]
    if diff.size < 3 or np.unique(levels).size < 2:
        return {"trend": np.nan, "trend_ci_low": np.nan, "trend_ci_high": np.nan,
                "p_trend_raw": np.nan}
    fit = sps.linregress(levels, diff)
    half = sps.t.ppf(0.5 + CI_LEVEL / 2, diff.size - 2) * fit.stderr
    p = float(fit.pvalue) if np.isfinite(fit.pvalue) else np.nan
    return {"trend": float(fit.slope), "trend_ci_low": float(fit.slope - half),
            "trend_ci_high": float(fit.slope + half), "p_trend_raw": p}


def _validate(scores: pd.DataFrame, higher_is_better: Mapping[str, bool]) -> None:
    """Fail loudly on input that would otherwise be averaged into a wrong number."""
    absent = [c for c in _COLUMNS if c not in scores.columns]
    if absent:
        raise ValueError(f"scores lacks column(s) {absent}")
    metrics = [m for m in scores["metric"].unique() if m not in higher_is_better]
    if metrics:
        raise ValueError(f"higher_is_better has no entry for metric(s) {sorted(metrics)}")
    key = ["dataset", "pair", "method", "seed", "utterance", "metric"]
    dup = scores.duplicated(key, keep=False)
    if dup.any():
        first = scores.loc[dup, key].iloc[0].to_dict()
        raise ValueError(f"{int(dup.sum())} duplicate score rows, e.g. {first}")


def _summary_columns(references: Sequence[str]) -> list[str]:
    cols = ["dataset", "pair", "metric", "method", "n_seeds", "seeds_missing", "complete"]
    cols += ["mean", "std", "n_undefined"]
    for ref in references:
        cols += [
            f"n_common_{ref}",
            f"n_pairs_{ref}",
            f"delta_{ref}",
            f"ci_low_{ref}",
            f"ci_high_{ref}",
            f"better_{ref}",
            f"p_ttest_{ref}",
            f"p_wilcoxon_{ref}",
            f"p_holm_{ref}",
            f"dz_{ref}",
            f"cliffs_{ref}",
        ]
    return cols


def _summarize_cell(
    cell: pd.DataFrame,
    dataset: object,
    pair: object,
    metric: object,
    higher: bool,
    references: Sequence[str],
    expected: set[int],
) -> list[dict[str, object]]:
    per_seed = cell.groupby(["seed", "method"])["value"].mean().unstack("method")
    per_utt = cell.pivot(index=["seed", "utterance"], columns="method", values="value")
    undefined = cell["value"].isna().groupby(cell["method"]).sum()
    wanted = expected | {int(s) for s in cell["seed"].unique()}
    rows = []
    for method in sorted(per_seed.columns):
        seed_means = per_seed[method].dropna()
        have = {int(s) for s in seed_means.index}
        missing = tuple(sorted(wanted - have))
        row: dict[str, object] = {
            "dataset": dataset,
            "pair": pair,
            "metric": metric,
            "method": method,
            "n_seeds": len(have),
            "seeds_missing": missing,
            "complete": not missing,
            "mean": float(seed_means.mean()) if len(seed_means) else np.nan,
            "std": float(seed_means.std(ddof=1)) if len(seed_means) > 1 else np.nan,
            "n_undefined": int(undefined.get(method, 0)),
        }
        for ref in references:
            if ref == method or ref not in per_seed.columns:
                row.update(_no_comparison(ref))
            else:
                row.update(_compare(per_seed, per_utt, method, ref, higher))
        rows.append(row)
    return rows


def _no_comparison(ref: str) -> dict[str, object]:
    return {
        f"n_common_{ref}": 0,
        f"n_pairs_{ref}": 0,
        f"delta_{ref}": np.nan,
        f"ci_low_{ref}": np.nan,
        f"ci_high_{ref}": np.nan,
        f"better_{ref}": pd.NA,
        f"p_ttest_{ref}": np.nan,
        f"p_wilcoxon_{ref}": np.nan,
        f"p_holm_{ref}": np.nan,
        f"dz_{ref}": np.nan,
        f"cliffs_{ref}": np.nan,
    }


def _compare(
    per_seed: pd.DataFrame, per_utt: pd.DataFrame, method: str, ref: str, higher: bool
) -> dict[str, object]:
    seeds = per_seed[[method, ref]].dropna()
    diff = (seeds[method] - seeds[ref]).to_numpy()
    utts = per_utt[[method, ref]].dropna()
    x, y = utts[method].to_numpy(), utts[ref].to_numpy()
    delta = float(diff.mean()) if diff.size else np.nan
    better: object = pd.NA if np.isnan(delta) else bool(delta > 0 if higher else delta < 0)
    low, high = mean_ci(diff)
    return {
        f"n_common_{ref}": int(diff.size),
        f"n_pairs_{ref}": int(x.size),
        f"delta_{ref}": delta,
        f"ci_low_{ref}": low,
        f"ci_high_{ref}": high,
        f"better_{ref}": better,
        f"p_ttest_{ref}": _paired_t(seeds[method].to_numpy(), seeds[ref].to_numpy()),
        f"p_wilcoxon_{ref}": _signed_rank(x - y),
        f"p_holm_{ref}": np.nan,
        f"dz_{ref}": _cohen_dz(diff),
        f"cliffs_{ref}": _cliffs_delta(x, y),
    }


def _paired_t(a: np.ndarray, b: np.ndarray) -> float:
    """Paired t-test p; identical inputs give 1.0 rather than scipy's 0/0 NaN."""
    if a.size < 2:
        return np.nan
    if np.array_equal(a, b):
        return 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(sps.ttest_rel(a, b).pvalue)


def _signed_rank(diff: np.ndarray) -> float:
    """Two-sided Wilcoxon p; zero differences are dropped (Wilcoxon's convention).

    With no non-zero difference there is no evidence of any difference, hence 1.0.
    """
    if diff.size == 0:
        return np.nan
    if not np.any(diff != 0):
        return 1.0
    return float(sps.wilcoxon(diff, zero_method="wilcox", alternative="two-sided").pvalue)


def _cohen_dz(diff: np.ndarray) -> float:
    if diff.size < 2:
        return np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.mean(diff) / np.std(diff, ddof=1))


def _cliffs_delta(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y) - P(X < Y) over all cross pairs, by sorting instead of an n*m matrix."""
    if x.size == 0 or y.size == 0:
        return np.nan
    ys = np.sort(y)
    below = np.searchsorted(ys, x, side="left").sum()
    above = (ys.size - np.searchsorted(ys, x, side="right")).sum()
    return float((below - above) / (x.size * ys.size))


def _adjust_per_table(out: pd.DataFrame, references: Sequence[str]) -> None:
    """Holm over every primary p of one (dataset, metric), all pairs and references together.

    When two methods are both references, "A vs B" and "B vs A" are one hypothesis (the
    two-sided test is symmetric); counting it twice would make the correction stricter
    for no reason, so each unordered pair of methods enters the family once.
    """
    for _, table in out.groupby(_TABLE, sort=False):
        keys: list[tuple[object, frozenset[object]]] = []
        pvalues: list[float] = []
        cells: list[tuple[object, str]] = []
        for idx, rec in table.iterrows():
            for ref in references:
                p = rec[f"p_wilcoxon_{ref}"]
                if np.isnan(p):
                    continue
                keys.append((rec["pair"], frozenset((rec["method"], ref))))
                pvalues.append(p)
                cells.append((idx, ref))
        for (idx, ref), adjusted in zip(cells, _holm_once_per_hypothesis(keys, pvalues)):
            out.at[idx, f"p_holm_{ref}"] = adjusted


def _holm_once_per_hypothesis(keys: Sequence[object], pvalues: Sequence[float]) -> list[float]:
    """Holm over the distinct `keys`, mapped back to every entry: entries with one key (A vs
    B and B vs A) are one hypothesis, counted once; the first entry's p stands for it."""
    hypotheses: dict[object, float] = {}
    for key, p in zip(keys, pvalues):
        hypotheses.setdefault(key, p)
    adjusted = dict(zip(hypotheses, holm(list(hypotheses.values()))))
    return [adjusted[key] for key in keys]
