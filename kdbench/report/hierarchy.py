"""The teacher as a random factor: comparisons and variance components over teacher draws.

stats.py conditions on the one teacher a grid distils from: its p-values say a method helps
*these* students of *this* teacher. With several teacher seeds the teacher becomes a draw,
and the question becomes whether the method helps students of teachers trained this way.

Design. With `teacher.seeds = [t_0, ..., t_{T-1}]`, student seed s is distilled from
teacher t_(s mod T), and every method of a pair, the control included, with seed s uses
that teacher. Students are nested in teachers (a seed belongs to exactly one teacher), and
a *unit* (t, s) pairs all methods: method M and reference R are compared within units.
The input is the leaderboard's scores frame plus `teacher` (the teacher seed) and
`test_set` (the test block); tables are made per `group` (by default dataset, test_set).
Method, metric and pair names are plain data here, as in stats.py.

Comparison (`teacher_level_comparison`). Per unit, d_{t,s} = the mean over utterances of
y_M - y_R, pairing by (seed, utterance) and dropping a pair with a NaN score. One pair:

    d_{t,s} = delta + b_t + e_{t,s},       b_t ~ N(0, s2_teacher),  e ~ N(0, s2_seed)

Pooled over the pairs p of the table:

    d_{p,t,s} = delta + a_p + b_t + c_{p,t} + e_{p,t,s},   sum_p a_p = 0,  c ~ N(0, s2_pt)

both fitted by REML (statsmodels MixedLM, a random intercept per teacher; c as a variance
component within teacher, fitted only when some (pair, teacher) has two or more units).

* Pair is a *fixed* effect: a suite of pairs is chosen (a ladder of mismatches), not
  sampled from a population of architectures, and five levels cannot estimate a variance.
  So the pooled delta is the unweighted mean of the pair effects: the answer is for these
  pairs, generalised over teachers and student seeds. b_t is shared by the pairs because
  the pairs of a suite share one teacher spec, so teacher seed t is the same network for
  all of them; c_{p,t} lets a teacher suit one student better than another, and carries the
  teacher variation when pairs do have different teachers (then s2_teacher goes to 0).
* delta_hat +- t_(T-1) * SE, p from the same t: containment degrees of freedom (SAS's
  DDFM=CONTAIN), the number of teachers minus one, because delta is tested against the
  teacher level and a Wald z with 3-6 teachers is anti-conservative. In a balanced table
  with an interior s2_teacher this is exactly the one-sample t-test on the T teacher means.
* `fit` says which estimate a row holds, `method_note` why when it is not "mixed":
  - "mixed": the model above.
  - "teacher_means": a one-sample t-test (T-1 df) on the per-teacher mean differences
    (pooled: the mean over pairs of each (pair, teacher) mean) -- the summary-statistics
    approach to a nested design, valid whatever s2_teacher is. Used when MixedLM raises,
    does not converge, warns that its Hessian is not positive definite or gives no finite
    SE (its other ConvergenceWarnings, e.g. an optimiser retry that then converges, are
    not failures), when there is one unit per teacher (the model is then not
    identified), and when REML puts s2_teacher at 0 (below 1e-4 of the variance of d): a
    boundary fit drops the teacher level from the SE on a noisy estimate from a handful
    of teachers, which is the anti-conservative direction. In a balanced table it is what the mixed model gives
    whenever its teacher variance is interior, so the switch costs nothing there.
  - "units": one teacher, whose variance cannot be estimated: OLS over the units (a
    one-sample t-test over seeds for one pair; with pair fixed effects pooled). It is
    conditional on that teacher, like stats.py, and says so.
  - "none": fewer than two units, or differences with no spread; delta is still given.
* Two-stage bootstrap (`boot_low`, `boot_high`): resample teachers with replacement, then
  student seeds with replacement within each drawn teacher (pooled, a seed keeps all its
  pairs, so whatever a seed shares across pairs stays together); the statistic is the
  mean over pairs of each pair's mean d; 95 % percentile interval, n_boot replicates from
  `np.random.default_rng(boot_seed)` per comparison, so a row never depends on which
  other rows were computed. It is a model-free check on the mixed interval, not a
  replacement: T teachers give only C(2T-1, T) distinct teacher draws (10 for 3, 462 for
  6), the percentile interval is too narrow for small T, and resampling both stages
  slightly overstates the within-teacher part (Davison & Hinkley 1997, section 3.8).
* Signs are raw (method - reference); `n_better` (units) and `teachers_better` (teacher
  means) apply `higher_is_better`.
* Holm over each table (group..., metric) as stats.py does: the per-pair rows are one
  family (every pair, method and reference; A vs B and B vs A once), the pooled rows
  another, as stats.summarize and stats.across_pairs are.

Variance components (`variance_components`). Per cell (group..., pair, method, metric):

    y_{t,s,u} = mu + a_t + b_{t,s} + c_u + e_{t,s,u}

teacher, student seed within teacher, utterance (crossed with units: every unit scores
the same test utterances) and residual; with one score per (unit, utterance) the residual
also holds the seed x utterance and teacher x utterance interactions. The variances come
from ANOVA (method-of-moments) estimators on the units x utterances table, equating mean
squares to their expectations (Searle, Casella & McCulloch 1992, ch. 4): for balanced data
they are unbiased and equal REML whenever none is negative. Not MixedLM by default because
REML with ~300 crossed utterance effects took ~10 s per cell on the development machine
(a leaderboard has ~100 cells); `method="reml"` fits exactly that model (one group,
`vc_formula` for teacher, seed and utterance) for a cross-check or a badly unbalanced
cell. For the ANOVA estimators to stay exact, utterances with a NaN in any unit of the cell
are dropped (`n_dropped_utterances`); unequal seeds per teacher use the classical n0
coefficient. A negative estimate is set to 0 and noted. Shares are each variance over
their sum. One teacher: the teacher variance is not estimable (NaN, noted) and the shares
split seed, utterance and residual; one seed per teacher: teacher and seed are confounded,
and the teacher row holds both (seed NaN, noted). Caveat: the teacher variance rests on
T - 1 degrees of freedom, so with three teachers it is a rough number; that is the honest
answer, not a defect of the estimator.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Literal

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats as sps
from statsmodels.regression.mixed_linear_model import MixedLM

from kdbench.report.stats import _COLUMNS, _holm_once_per_hypothesis

__all__ = [
    "COMPARISON_COLUMNS",
    "METHODOLOGY",
    "POOLED",
    "VARIANCE_COLUMNS",
    "teacher_level_comparison",
    "variance_components",
]

POOLED = "pooled"
"""The `pair` of a row that pools every pair of its table."""

METHODOLOGY = (
    "Teacher as a random factor: each (teacher, student seed) unit pairs all methods; per "
    "unit the mean over utterances of the paired differences; a linear mixed model (REML, "
    "random intercept per teacher; pooled over pairs: pair fixed, pair x teacher random) "
    "gives the difference with a 95% CI and p on T-1 degrees of freedom (T teachers), "
    "Holm-adjusted per table; where it cannot be fit, a t-test over teacher means (or, with "
    "one teacher, over units, conditional on that teacher), as noted. Also a two-stage "
    "bootstrap CI (teachers, then seeds within teachers). Few teachers give wide intervals."
)

COMPARISON_COLUMNS = (
    "pair", "metric", "method", "reference", "n_teachers", "n_units", "delta", "se", "df",
    "ci_low", "ci_high", "p_mixed", "p_holm", "boot_low", "boot_high", "n_better",
    "teachers_better", "fit", "method_note",
)
"""Columns of `teacher_level_comparison` after the group columns."""

VARIANCE_COLUMNS = (
    "pair", "method", "metric", "n_teachers", "n_units", "n_utterances",
    "n_dropped_utterances", "var_teacher", "var_seed", "var_utterance", "var_residual",
    "share_teacher", "share_seed", "share_utterance", "share_residual", "note",
)
"""Columns of `variance_components` after the group columns."""

_COMPONENTS = ("teacher", "seed", "utterance", "residual")
_UNIT = ["pair", "teacher", "seed"]
_BOUNDARY = 1e-4
"""Teacher variance, as a fraction of the variance of d, below which a REML fit is on the
boundary (statsmodels' own warning uses an absolute 0.01, which depends on the metric's
scale, so it cannot serve)."""


def teacher_level_comparison(
    scores: pd.DataFrame,
    higher_is_better: Mapping[str, bool],
    references: Sequence[str] = ("none",),
    group: Sequence[str] = ("dataset", "test_set"),
    n_boot: int = 2000,
    boot_seed: int = 0,
) -> pd.DataFrame:
    """Each method against each reference with the teacher as a random factor.

    One row per (group..., pair or POOLED, metric, method, reference) where the reference
    is in the table; columns: the group columns, then COMPARISON_COLUMNS. `delta` is the
    estimated mean difference method - reference, `ci_low`/`ci_high` its 95 % interval and
    `p_mixed` its two-sided p (both on `df` degrees of freedom) from the estimate `fit`
    names, `p_holm` Holm-adjusted per table, `boot_low`/`boot_high` the two-stage bootstrap
    interval. See the module docstring for the model and every fallback.
    """
    group = list(group)
    _validate(scores, group, higher_is_better)
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    references = list(dict.fromkeys(references))
    rows: list[dict[str, object]] = []
    for keys, table in scores.groupby([*group, "metric"], sort=True):
        *group_keys, metric = keys
        sign = 1.0 if higher_is_better[metric] else -1.0
        wide = table.pivot(index=[*_UNIT, "utterance"], columns="method", values="value")
        for ref in references:
            if ref not in wide.columns:
                continue
            methods = [m for m in sorted(wide.columns) if m != ref]
            diffs = wide[methods].sub(wide[ref], axis=0)
            unit_d = diffs.groupby(level=_UNIT, sort=True).mean()
            for method in methods:
                units = unit_d[method].dropna().rename("d").reset_index()
                for pair, result in _compare_pairs_and_pooled(units, sign, n_boot, boot_seed):
                    row = dict(zip(group, group_keys))
                    row.update(pair=pair, metric=metric, method=method, reference=ref)
                    row.update(result)
                    rows.append(row)
    out = pd.DataFrame(rows, columns=[*group, *COMPARISON_COLUMNS])
    _holm_per_table(out, group)
    return out


def variance_components(
    scores: pd.DataFrame,
    group: Sequence[str] = ("dataset", "test_set"),
    method: Literal["anova", "reml"] = "anova",
) -> pd.DataFrame:
    """How much of the spread of per-utterance scores is teacher, seed, utterance, residual.

    One row per (group..., pair, method, metric); columns: the group columns, then
    VARIANCE_COLUMNS. `method="anova"` (default, fast) uses ANOVA estimators on the cell's
    complete units x utterances table; `method="reml"` fits the crossed model with MixedLM
    on every defined score (about 10 s a cell of 12 units x 300 utterances). See the module
    docstring for the model, the estimators and the cases where a component is NaN.
    """
    if method not in ("anova", "reml"):
        raise ValueError(f"method must be 'anova' or 'reml', got {method!r}")
    group = list(group)
    _validate(scores, group)
    estimate = _anova_components if method == "anova" else _reml_components
    rows = []
    for keys, cell in scores.groupby([*group, "pair", "method", "metric"], sort=True):
        *group_keys, pair, name, metric = keys
        row: dict[str, object] = dict(zip(group, group_keys))
        row.update(pair=pair, method=name, metric=metric)
        variances, info = estimate(cell)
        row.update(info)
        row.update({f"var_{c}": variances[c] for c in _COMPONENTS})
        row.update(_shares(variances))
        rows.append(row)
    return pd.DataFrame(rows, columns=[*group, *VARIANCE_COLUMNS])


# --------------------------------------------------------------------------- input


def _validate(
    scores: pd.DataFrame, group: list[str], higher_is_better: Mapping[str, bool] | None = None
) -> None:
    """Fail loudly on input that would otherwise be averaged into a wrong number."""
    needed = list(dict.fromkeys([*_COLUMNS, "teacher", *group]))
    absent = [c for c in needed if c not in scores.columns]
    if absent:
        raise ValueError(f"scores lacks column(s) {absent}")
    if higher_is_better is not None:
        metrics = [m for m in scores["metric"].unique() if m not in higher_is_better]
        if metrics:
            raise ValueError(f"higher_is_better has no entry for metric(s) {sorted(metrics)}")
    if (scores["pair"] == POOLED).any():
        raise ValueError(f"a pair may not be named {POOLED!r}: it labels the pooled rows")
    teachers = scores.groupby("seed")["teacher"].unique()
    shared = teachers[teachers.map(len) > 1]
    if len(shared):
        seed, names = shared.index[0], sorted(shared.iloc[0])
        raise ValueError(
            f"seed {seed} has teachers {names}: students must be nested in teachers "
            "(each student seed distilled from one teacher)"
        )
    key = list(dict.fromkeys([*group, "pair", "method", "seed", "utterance", "metric"]))
    dup = scores.duplicated(key, keep=False)
    if dup.any():
        first = scores.loc[dup, key].iloc[0].to_dict()
        raise ValueError(f"{int(dup.sum())} duplicate score rows, e.g. {first}")


def _compare_pairs_and_pooled(
    units: pd.DataFrame, sign: float, n_boot: int, boot_seed: int
) -> Iterator[tuple[str, dict[str, object]]]:
    """Each pair's comparison, then the pooled one (the same numbers when there is one pair,
    so it is not computed twice)."""
    by_pair = [(str(pair), _compare(sub, sign, False, n_boot, boot_seed))
               for pair, sub in units.groupby("pair", sort=True)]
    yield from by_pair
    if len(by_pair) == 1:
        yield POOLED, dict(by_pair[0][1])
    elif by_pair:
        yield POOLED, _compare(units, sign, True, n_boot, boot_seed)


# --------------------------------------------------------------------------- comparison


def _compare(
    units: pd.DataFrame, sign: float, pooled: bool, n_boot: int, boot_seed: int
) -> dict[str, object]:
    d = units["d"].to_numpy()
    teacher_means = _teacher_means(units)
    estimate = _estimate(units, teacher_means, pooled)
    boot_low, boot_high = _bootstrap_interval(units, n_boot, boot_seed)
    return {
        "n_teachers": int(units["teacher"].nunique()),
        "n_units": int(d.size),
        **estimate,
        "p_holm": np.nan,
        "boot_low": boot_low,
        "boot_high": boot_high,
        "n_better": int((sign * d > 0).sum()),
        "teachers_better": int((sign * teacher_means.to_numpy() > 0).sum()),
    }


def _teacher_means(units: pd.DataFrame) -> pd.Series:
    """Per teacher, the mean over pairs of its (pair, teacher) mean: pairs weigh equally,
    as the pooled model's sum-to-zero pair effects make them."""
    return units.groupby(["teacher", "pair"])["d"].mean().groupby(level="teacher").mean()


def _estimate(units: pd.DataFrame, teacher_means: pd.Series, pooled: bool) -> dict[str, object]:
    d = units["d"].to_numpy()
    n_teachers = teacher_means.size
    if d.size < 2 or np.ptp(d) == 0:
        return _degenerate(d)
    pair_effects = pooled and units["pair"].nunique() > 1
    over_teachers = (teacher_means.to_numpy(), np.ones((n_teachers, 1)))
    if n_teachers == 1:
        note = ("one teacher: its variance is not estimable, so this is OLS over the units, "
                "conditional on that teacher")
        return _ols_intercept(d, _design(units, pair_effects), "units", note)
    if (units.groupby("teacher").size() == 1).all():
        note = ("one unit per teacher: teacher and seed variation are confounded; "
                "t-test over the teacher means")
        return _ols_intercept(*over_teachers, "teacher_means", note)
    mixed, reason = _mixed_fit(units, pair_effects)
    if mixed is not None:
        return mixed
    note = f"{reason}; t-test over the {n_teachers} teacher means instead"
    return _ols_intercept(*over_teachers, "teacher_means", note)


def _degenerate(d: np.ndarray) -> dict[str, object]:
    """One unit, or units that all differ by the same amount: a delta but no test."""
    delta = float(d.mean())
    if d.size == 1:
        note = "one unit: nothing to test"
    elif delta == 0:
        return _result(0.0, 0.0, np.nan, 0.0, 0.0, 1.0, "none", "every difference is 0")
    else:
        note = "every unit has the same difference: no spread to test"
    return _result(delta, np.nan, np.nan, np.nan, np.nan, np.nan, "none", note)


def _result(
    delta: float, se: float, df: float, low: float, high: float, p: float, fit: str, note: str
) -> dict[str, object]:
    return {"delta": delta, "se": se, "df": df, "ci_low": low, "ci_high": high,
            "p_mixed": p, "fit": fit, "method_note": note}


def _mixed_fit(units: pd.DataFrame, pair_effects: bool) -> tuple[dict[str, object] | None, str]:
    """REML fit of the module docstring's model, or None and why it cannot be used.

    d is divided by its standard deviation first, so the optimiser and the boundary test
    see the same scale whatever the metric's units are; estimates scale back exactly. The
    design is built as arrays rather than through a formula, which halves the time a fit
    takes (a leaderboard makes a hundred or more).
    """
    scale = float(units["d"].std(ddof=0))
    teachers = units["teacher"].to_numpy()
    exog_vc = None
    if pair_effects and bool((units.groupby(["pair", "teacher"]).size() > 1).any()):
        pair_dummies = pd.get_dummies(units["pair"]).to_numpy(dtype=float)
        exog_vc = {"pair": {t: pair_dummies[teachers == t] for t in np.unique(teachers)}}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = MixedLM(units["d"].to_numpy() / scale, _design(units, pair_effects),
                            groups=teachers, exog_re=np.ones((len(units), 1)), exog_vc=exog_vc)
            result = model.fit(reml=True)
        except (np.linalg.LinAlgError, ValueError, ArithmeticError) as exc:
            return None, f"the mixed model failed ({type(exc).__name__}: {exc})"
    estimate = float(result.fe_params[0]) * scale
    se = float(result.bse_fe[0]) * scale
    # The boundary first: an optimum on the edge of the parameter space is where gradient
    # optimisers stall, so whether the same fit also reports "not converged" depends on the
    # statsmodels/scipy release and the machine (tests/test_hierarchy.py's boundary case
    # stalls with statsmodels 0.15.0 and scipy 1.17.1 on an AMD EPYC VM; it did not in the
    # CI runs before 2026-12-02).
    if float(result.cov_re[0, 0]) < _BOUNDARY:
        stalled = "" if result.converged else "; the optimiser stalled there"
        return None, f"REML put the teacher variance at 0 (boundary fit{stalled})"
    if not result.converged:
        return None, "the mixed model did not converge"
    if any("not positive definite" in str(w.message) for w in caught):
        return None, "the mixed model's Hessian is not positive definite (its SE is unreliable)"
    if not math.isfinite(se) or se <= 0:
        return None, "the mixed model gave no finite SE"
    df = float(np.unique(teachers).size - 1)
    half = float(sps.t.ppf(0.975, df)) * se
    p = float(2 * sps.t.sf(abs(estimate / se), df))
    return _result(estimate, se, df, estimate - half, estimate + half, p, "mixed", ""), ""


def _design(units: pd.DataFrame, pair_effects: bool) -> np.ndarray:
    """An intercept, plus sum-to-zero pair columns (patsy's Sum coding) so that the
    intercept is the unweighted mean of the pair effects."""
    intercept = np.ones((len(units), 1))
    if not pair_effects:
        return intercept
    codes, levels = pd.factorize(units["pair"], sort=True)
    contrast = np.vstack([np.eye(len(levels) - 1), -np.ones(len(levels) - 1)])
    return np.hstack([intercept, contrast[codes]])


def _ols_intercept(d: np.ndarray, exog: np.ndarray, fit: str, note: str) -> dict[str, object]:
    """The intercept (first column) of an OLS fit with its t-based 95 % CI and p."""
    result = sm.OLS(d, exog).fit()
    if result.df_resid < 1:
        return _result(float(result.params[0]), np.nan, 0.0, np.nan, np.nan, np.nan, "none",
                       f"{note}; too few units left for a test")
    low, high = result.conf_int(alpha=0.05)[0]
    return _result(float(result.params[0]), float(result.bse[0]), float(result.df_resid),
                   float(low), float(high), float(result.pvalues[0]), fit, note)


def _bootstrap_interval(units: pd.DataFrame, n_boot: int, boot_seed: int) -> tuple[float, float]:
    """95 % percentile interval of the two-stage bootstrap in the module docstring.

    Written here because no library resamples two nested levels (scipy.stats.bootstrap
    resamples one); the replicates are counts per seed, so every replicate's statistic is
    one matrix product over a (seed x pair) table of unit differences.
    """
    if units["d"].size < 2:
        return np.nan, np.nan
    table = units.pivot(index=["teacher", "seed"], columns="pair", values="d").sort_index()
    present = table.notna().to_numpy(dtype=float)
    values = table.fillna(0.0).to_numpy()
    _, sizes = np.unique(table.index.get_level_values("teacher"), return_counts=True)
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    rng = np.random.default_rng(boot_seed)
    drawn = rng.integers(0, sizes.size, size=(n_boot, sizes.size))
    within = rng.integers(0, sizes[drawn][..., None], size=(*drawn.shape, sizes.max()))
    keep = np.arange(sizes.max()) < sizes[drawn][..., None]
    rows = (starts[drawn][..., None] + within)[keep]
    replicate = np.broadcast_to(np.arange(n_boot)[:, None, None], keep.shape)[keep]
    n_rows = values.shape[0]
    counts = np.bincount(replicate * n_rows + rows, minlength=n_boot * n_rows)
    counts = counts.reshape(n_boot, n_rows).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        pair_means = (counts @ values) / (counts @ present)
        statistic = np.nanmean(pair_means, axis=1)
    low, high = np.nanquantile(statistic, [0.025, 0.975])
    return float(low), float(high)


def _holm_per_table(out: pd.DataFrame, group: list[str]) -> None:
    """Holm per (group..., metric): the per-pair rows one family, the pooled rows another."""
    if not len(out):
        return
    family = out["pair"] == POOLED
    for _, table in out.groupby([*group, "metric", family], sort=False):
        tested = table[table["p_mixed"].notna()]
        keys = [(pair, frozenset((m, r)))
                for pair, m, r in zip(tested["pair"], tested["method"], tested["reference"])]
        adjusted = _holm_once_per_hypothesis(keys, tested["p_mixed"].tolist())
        out.loc[tested.index, "p_holm"] = adjusted


# --------------------------------------------------------------------------- variance


def _unit_table(cell: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The cell as units x utterances, complete: utterances a unit could not score are
    dropped (their count returned), units with no score at all are dropped first."""
    table = cell.pivot(index=["teacher", "seed"], columns="utterance", values="value")
    table = table.dropna(how="all").sort_index()
    complete = table.dropna(axis=1, how="any")
    return complete, table.shape[1] - complete.shape[1]


def _anova_components(cell: pd.DataFrame) -> tuple[dict[str, float], dict[str, object]]:
    """ANOVA estimators for teacher / seed-in-teacher / utterance / residual.

    Hand-written because no library offers variance-component ANOVA estimators for this
    design; `method="reml"` (MixedLM) is the reference they are tested against.
    """
    table, dropped = _unit_table(cell)
    y = table.to_numpy()
    n_units, n_utts = y.shape
    _, teacher, sizes = np.unique(table.index.get_level_values("teacher"),
                                  return_inverse=True, return_counts=True)
    info: dict[str, object] = {"n_teachers": int(sizes.size), "n_units": int(n_units),
                               "n_utterances": int(n_utts), "n_dropped_utterances": int(dropped)}
    variances = dict.fromkeys(_COMPONENTS, np.nan)
    if n_units < 2 or n_utts < 2:
        info["note"] = "fewer than 2 units or 2 fully scored utterances: nothing to split"
        return variances, info
    grand = y.mean()
    unit_means, utt_means = y.mean(axis=1), y.mean(axis=0)
    teacher_means = np.bincount(teacher, weights=unit_means) / sizes
    ms_residual = ((y - unit_means[:, None] - utt_means[None, :] + grand) ** 2).sum() / (
        (n_units - 1) * (n_utts - 1))
    ms_utterance = n_units * ((utt_means - grand) ** 2).sum() / (n_utts - 1)
    ms_seed = (n_utts * ((unit_means - teacher_means[teacher]) ** 2).sum() / (n_units - sizes.size)
               if n_units > sizes.size else np.nan)
    ms_teacher = (n_utts * (sizes * (teacher_means - grand) ** 2).sum() / (sizes.size - 1)
                  if sizes.size > 1 else np.nan)
    variances["residual"] = ms_residual
    variances["utterance"] = (ms_utterance - ms_residual) / n_units
    notes = []
    if sizes.size == 1:
        variances["seed"] = (ms_seed - ms_residual) / n_utts
        notes.append("one teacher: teacher variance not estimable")
    elif n_units == sizes.size:
        variances["teacher"] = (ms_teacher - ms_residual) / n_utts
        notes.append("one seed per teacher: teacher and seed confounded, 'teacher' holds both")
    else:
        n0 = (n_units - (sizes**2).sum() / n_units) / (sizes.size - 1)
        variances["seed"] = (ms_seed - ms_residual) / n_utts
        variances["teacher"] = (ms_teacher - ms_seed) / (n_utts * n0)
    negative = [c for c, v in variances.items() if v < 0]
    for name in negative:
        variances[name] = 0.0
    if negative:
        notes.append(f"negative estimate of {', '.join(negative)} set to 0")
    info["note"] = "; ".join(notes)
    return variances, info


def _reml_components(cell: pd.DataFrame) -> tuple[dict[str, float], dict[str, object]]:
    """The crossed model by REML: MixedLM with one group and a variance component each."""
    data = cell.dropna(subset=["value"])
    per_teacher = data.groupby("teacher")["seed"].nunique()
    info: dict[str, object] = {
        "n_teachers": int(per_teacher.size), "n_units": int(per_teacher.sum()),
        "n_utterances": int(data["utterance"].nunique()), "n_dropped_utterances": 0,
    }
    variances = dict.fromkeys(_COMPONENTS, np.nan)
    factors = {"utterance": "0 + C(utterance)"}
    notes = []
    if per_teacher.size > 1:
        factors["teacher"] = "0 + C(teacher)"
    else:
        notes.append("one teacher: teacher variance not estimable")
    if (per_teacher > 1).any():
        factors["seed"] = "0 + C(seed)"
    else:
        notes.append("one seed per teacher: teacher and seed confounded, 'teacher' holds both")
    scale = float(data["value"].std())
    frame = data.assign(value=data["value"] / scale, one=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = MixedLM.from_formula("value ~ 1", data=frame, groups="one", re_formula="0",
                                          vc_formula=factors).fit(reml=True)
        except (np.linalg.LinAlgError, ValueError, ArithmeticError) as exc:
            info["note"] = "; ".join([*notes, f"REML failed ({type(exc).__name__}: {exc})"])
            return variances, info
    if not result.converged:
        notes.append("REML did not converge: " + "; ".join(str(w.message) for w in caught))
    for name, value in zip(result.model.exog_vc.names, result.vcomp):
        variances[name] = float(value) * scale**2
    variances["residual"] = float(result.scale) * scale**2
    info["note"] = "; ".join(notes)
    return variances, info


def _shares(variances: dict[str, float]) -> dict[str, float]:
    total = sum(v for v in variances.values() if not math.isnan(v))
    return {f"share_{c}": (v / total if total > 0 and not math.isnan(v) else np.nan)
            for c, v in variances.items()}
