"""Known-answer tests for kdbench.report.hierarchy: tables generated with a known effect and
known variance components, and scipy / statsmodels applied to numbers the test builds
itself as the oracle for the fallbacks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy import stats as sps

from kdbench.report.hierarchy import (
    COMPARISON_COLUMNS,
    POOLED,
    VARIANCE_COLUMNS,
    teacher_level_comparison,
    variance_components,
)
from kdbench.report.stats import holm

COLUMNS = ["dataset", "test_set", "pair", "method", "teacher", "seed", "utterance", "metric",
           "value"]
TRUE_SD = {"teacher": 0.3, "seed": 0.2, "utterance": 0.5, "residual": 0.1}
HIGHER = {"pesq": True}


def make_scores(
    effects: dict[str, float] | None = None,
    n_teachers: int = 6,
    seeds_per_teacher: int = 4,
    n_utts: int = 200,
    pairs: tuple[str, ...] = ("p1",),
    rng_seed: int = 0,
    dataset: str = "ds",
    gain_teacher_sd: float = 0.1,
    gain_seed_sd: float = 0.1,
) -> pd.DataFrame:
    """Scores of the control `none` and of methods shifted by `effects` (default kd +0.25).

    The control is 2.5 + teacher + seed + utterance + residual with the TRUE_SD spreads;
    a method adds its effect plus a per-teacher and a per-seed gain (so the difference
    varies at both levels) and its own residual. Student seed s belongs to teacher
    s mod n_teachers, the grid's nested design; teacher ids are 100 + t.
    """
    effects = {"kd": 0.25} if effects is None else effects
    methods = ["none", *effects]
    rng = np.random.default_rng(rng_seed)
    shape = (len(pairs), n_teachers, seeds_per_teacher)
    utterance = rng.normal(0.0, TRUE_SD["utterance"], n_utts)
    teacher = rng.normal(0.0, TRUE_SD["teacher"], shape[:2])[..., None]
    seed = rng.normal(0.0, TRUE_SD["seed"], shape)
    control = 2.5 + teacher + seed
    shifts = [np.zeros(shape)] + [
        effect + rng.normal(0.0, gain_teacher_sd, shape[:2])[..., None]
        + rng.normal(0.0, gain_seed_sd, shape)
        for effect in effects.values()
    ]
    unit_means = np.stack([control + shift for shift in shifts], axis=-1)  # (p, t, k, method)
    residual = rng.normal(0.0, TRUE_SD["residual"], (*unit_means.shape, n_utts))
    values = unit_means[..., None] + utterance + residual
    p, t, k, m, u = np.indices(values.shape).reshape(5, -1)
    return pd.DataFrame({
        "dataset": dataset, "test_set": "test", "pair": np.asarray(pairs)[p],
        "method": np.asarray(methods)[m], "teacher": 100 + t, "seed": t + n_teachers * k,
        "utterance": np.char.add("u", np.char.zfill(u.astype(str), 3)), "metric": "pesq",
        "value": values.ravel(),
    })[COLUMNS]


def unit_differences(scores: pd.DataFrame, method: str = "kd") -> pd.Series:
    """Per (pair, teacher, seed), the mean over utterances of method - none (the oracle)."""
    wide = scores.pivot(index=["pair", "teacher", "seed", "utterance"], columns="method",
                        values="value")
    return (wide[method] - wide["none"]).groupby(level=["pair", "teacher", "seed"]).mean()


def only(frame: pd.DataFrame, **keys: object) -> pd.Series:
    chosen = np.ones(len(frame), dtype=bool)
    for key, value in keys.items():
        chosen &= (frame[key] == value).to_numpy()
    (index,) = np.flatnonzero(chosen)
    return frame.iloc[index]


# --------------------------------------------------------------------------- comparison


def test_mixed_model_recovers_a_known_effect() -> None:
    out = teacher_level_comparison(make_scores(), HIGHER)
    assert list(out.columns) == ["dataset", "test_set", *COMPARISON_COLUMNS]
    row = only(out, pair="p1")
    assert row["fit"] == "mixed" and row["method_note"] == ""
    assert (row["n_teachers"], row["n_units"], row["df"]) == (6, 24, 5.0)
    assert row["ci_low"] < 0.25 < row["ci_high"]
    assert row["ci_low"] < row["delta"] < row["ci_high"]
    assert row["boot_low"] < 0.25 < row["boot_high"]
    assert row["p_mixed"] < 0.05  # t on 5 df: six teachers are few


def test_no_effect_is_not_significant() -> None:
    row = only(teacher_level_comparison(make_scores({"kd": 0.0}), HIGHER), pair="p1")
    assert row["fit"] == "mixed"
    assert row["p_mixed"] > 0.2
    assert row["ci_low"] < 0 < row["ci_high"]


def test_interval_covers_the_truth_and_null_rarely_rejects_over_seeds() -> None:
    covered = detected = rejected = 0
    for seed in range(20):
        scores = make_scores(n_utts=20, rng_seed=seed)
        hit = only(teacher_level_comparison(scores, HIGHER, n_boot=100), pair="p1")
        covered += hit["ci_low"] <= 0.25 <= hit["ci_high"]
        detected += hit["p_mixed"] < 0.05
        null_scores = make_scores({"kd": 0.0}, n_utts=20, rng_seed=seed)
        null = only(teacher_level_comparison(null_scores, HIGHER, n_boot=100), pair="p1")
        rejected += null["p_mixed"] < 0.05
    assert covered >= 16  # nominal 19 of 20
    assert detected >= 16
    assert rejected <= 4  # nominal 1 of 20


def test_balanced_mixed_fit_is_the_t_test_on_teacher_means() -> None:
    scores = make_scores()
    row = only(teacher_level_comparison(scores, HIGHER), pair="p1")
    teacher_means = unit_differences(scores).groupby(level="teacher").mean()
    oracle = sps.ttest_1samp(teacher_means, 0.0)
    low, high = oracle.confidence_interval()
    assert row["fit"] == "mixed"
    assert row["delta"] == pytest.approx(teacher_means.mean(), rel=1e-6)
    assert row["p_mixed"] == pytest.approx(oracle.pvalue, rel=1e-3)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((low, high), rel=1e-3)


def test_pooled_row_weighs_pairs_equally_and_counts_every_unit() -> None:
    scores = make_scores(pairs=("p1", "p2", "p3"))
    out = teacher_level_comparison(scores, HIGHER)
    pooled = only(out, pair=POOLED)
    per_pair = out[out["pair"] != POOLED]
    assert pooled["n_units"] == per_pair["n_units"].sum() == 72
    assert pooled["delta"] == pytest.approx(per_pair["delta"].mean(), rel=1e-6)
    assert pooled["ci_low"] < 0.25 < pooled["ci_high"]
    assert pooled["ci_high"] - pooled["ci_low"] < (per_pair["ci_high"] - per_pair["ci_low"]).min()


@pytest.mark.parametrize(
    ("n_teachers", "seeds_per_teacher", "fit", "note", "df"),
    [(1, 5, "units", "one teacher", 4.0), (5, 1, "teacher_means", "one unit per teacher", 4.0)],
)
def test_too_few_teachers_or_seeds_fall_back_to_a_t_test_and_say_so(
    n_teachers: int, seeds_per_teacher: int, fit: str, note: str, df: float
) -> None:
    scores = make_scores(n_teachers=n_teachers, seeds_per_teacher=seeds_per_teacher)
    row = only(teacher_level_comparison(scores, HIGHER), pair="p1")
    oracle = sps.ttest_1samp(unit_differences(scores), 0.0)
    assert row["fit"] == fit and note in row["method_note"]
    assert (row["n_teachers"], row["df"]) == (n_teachers, df)
    assert row["p_mixed"] == pytest.approx(oracle.pvalue, rel=1e-9)


def test_single_teacher_pooled_is_ols_with_sum_coded_pairs() -> None:
    scores = make_scores(n_teachers=1, seeds_per_teacher=5, pairs=("p1", "p2"))
    row = only(teacher_level_comparison(scores, HIGHER), pair=POOLED)
    oracle = smf.ols("d ~ C(pair, Sum)", data=unit_differences(scores).rename("d").reset_index())
    fitted = oracle.fit()
    assert row["fit"] == "units" and "one teacher" in row["method_note"]
    assert row["delta"] == pytest.approx(fitted.params["Intercept"], rel=1e-9)
    assert row["p_mixed"] == pytest.approx(fitted.pvalues["Intercept"], rel=1e-9)
    assert row["df"] == fitted.df_resid == 8


def test_identical_methods_give_zero_and_p_one() -> None:
    scores = make_scores(n_teachers=2, seeds_per_teacher=2, n_utts=5)
    copy = scores[scores["method"] == "none"].assign(method="same")
    row = only(teacher_level_comparison(pd.concat([scores, copy]), HIGHER), pair="p1",
               method="same")
    assert (row["delta"], row["p_mixed"], row["fit"]) == (0.0, 1.0, "none")
    assert row["n_better"] == 0


def test_teacher_variance_at_zero_falls_back_to_teacher_means() -> None:
    """Teacher means far closer together than the seeds within a teacher: REML puts the
    teacher variance at 0, and the row must not let that drop the teacher level."""
    d = {100: [0.05, 0.45, 0.25], 101: [0.46, 0.06, 0.26], 102: [0.24, 0.44, 0.04]}
    rows = []
    for teacher, diffs in d.items():
        for k, diff in enumerate(diffs):
            seed = 3 * k + teacher - 100
            for method, value in (("none", 0.0), ("kd", diff)):
                rows.append(("ds", "test", "p1", method, teacher, seed, "u0", "pesq", value))
    row = only(teacher_level_comparison(pd.DataFrame(rows, columns=COLUMNS), HIGHER),
               pair="p1")
    teacher_means = [np.mean(v) for v in d.values()]
    assert row["fit"] == "teacher_means"
    assert "teacher variance at 0" in row["method_note"]
    assert "teacher means instead" in row["method_note"]
    assert row["df"] == 2.0
    assert row["p_mixed"] == pytest.approx(sps.ttest_1samp(teacher_means, 0.0).pvalue, rel=1e-9)


def test_lower_is_better_flips_the_counts_not_the_delta() -> None:
    scores = make_scores({"kd": 0.02}, rng_seed=3)
    up = only(teacher_level_comparison(scores, {"pesq": True}), pair="p1")
    down = only(teacher_level_comparison(scores, {"pesq": False}), pair="p1")
    assert 0 < up["n_better"] < up["n_units"]
    assert down["n_better"] == up["n_units"] - up["n_better"]
    assert down["teachers_better"] == up["n_teachers"] - up["teachers_better"]
    assert down["delta"] == up["delta"]
    assert down["p_mixed"] == up["p_mixed"]


def test_nan_scores_are_dropped_pairwise() -> None:
    scores = make_scores()
    holes = (scores["method"] == "kd") & (
        scores["utterance"].isin(["u000", "u001", "u002"]) | (scores["seed"] == 0)
    )
    with_nan = scores.assign(value=scores["value"].mask(holes))
    kept = ~scores["utterance"].isin(["u000", "u001", "u002"]) & (scores["seed"] != 0)
    got = only(teacher_level_comparison(with_nan, HIGHER), pair="p1")
    expected = only(teacher_level_comparison(scores[kept], HIGHER), pair="p1")
    assert got["n_units"] == 23
    for column in ("delta", "ci_low", "ci_high", "p_mixed", "boot_low", "boot_high"):
        assert got[column] == pytest.approx(expected[column], rel=1e-9)


def test_bootstrap_is_deterministic_and_independent_of_other_rows() -> None:
    scores = make_scores({"kd": 0.25, "other": 0.1})
    first = teacher_level_comparison(scores, HIGHER)
    again = teacher_level_comparison(scores, HIGHER)
    pd.testing.assert_frame_equal(first, again)
    alone = teacher_level_comparison(scores[scores["method"] != "other"], HIGHER)
    kd = only(first, pair="p1", method="kd")
    assert (kd["boot_low"], kd["boot_high"]) == (
        only(alone, pair="p1")["boot_low"], only(alone, pair="p1")["boot_high"])
    reseeded = only(teacher_level_comparison(scores, HIGHER, boot_seed=1), pair="p1",
                    method="kd")
    assert reseeded["boot_low"] != kd["boot_low"]


def test_holm_per_table_with_pairs_and_pooled_as_separate_families() -> None:
    scores = pd.concat([
        make_scores({"kd": 0.25, "other": 0.05}, n_utts=20, pairs=("p1", "p2")),
        make_scores({"kd": 0.25, "other": 0.05}, n_utts=20, pairs=("p1", "p2"), rng_seed=1)
        .assign(test_set="real"),
    ])
    out = teacher_level_comparison(scores, HIGHER, references=("none", "kd"), n_boot=100)
    assert set(out["test_set"]) == {"test", "real"}
    table = out[out["test_set"] == "real"]
    per_pair = table[table["pair"] != POOLED]
    # kd vs none, other vs none, other vs kd, none vs kd (= kd vs none, counted once).
    assert len(per_pair) == 8
    distinct = per_pair[~((per_pair["method"] == "none") & (per_pair["reference"] == "kd"))]
    expected = holm(distinct["p_mixed"].tolist())
    assert distinct["p_holm"].tolist() == pytest.approx(expected)
    pooled = table[table["pair"] == POOLED]
    pooled_distinct = pooled[~((pooled["method"] == "none") & (pooled["reference"] == "kd"))]
    assert pooled_distinct["p_holm"].tolist() == pytest.approx(
        holm(pooled_distinct["p_mixed"].tolist()))


def test_input_errors_name_the_problem() -> None:
    scores = make_scores(n_teachers=2, seeds_per_teacher=2, n_utts=5)
    with pytest.raises(ValueError, match="teacher"):
        teacher_level_comparison(scores.drop(columns="teacher"), HIGHER)
    with pytest.raises(ValueError, match="seed 0 has teachers"):
        teacher_level_comparison(
            scores.assign(teacher=scores["teacher"].where(scores["method"] == "none", 999)),
            HIGHER)
    with pytest.raises(ValueError, match="pooled"):
        teacher_level_comparison(scores.assign(pair=POOLED), HIGHER)
    with pytest.raises(ValueError, match="higher_is_better"):
        teacher_level_comparison(scores, {})


# --------------------------------------------------------------------------- variance


def control_cells(replicates: int, **kwargs: object) -> pd.DataFrame:
    """The control's scores of `replicates` independent tables, one per dataset name."""
    tables = [make_scores(rng_seed=r, dataset=f"d{r:03d}", **kwargs) for r in range(replicates)]
    scores = pd.concat(tables, ignore_index=True)
    return scores[scores["method"] == "none"]


def test_variance_shares_recover_known_components() -> None:
    out = variance_components(control_cells(1))
    assert list(out.columns) == ["dataset", "test_set", *VARIANCE_COLUMNS]
    row = out.iloc[0]
    true_var = {c: sd**2 for c, sd in TRUE_SD.items()}
    total = sum(true_var.values())
    shares = [row[f"share_{c}"] for c in TRUE_SD]
    assert sum(shares) == pytest.approx(1.0)
    assert row["var_residual"] == pytest.approx(true_var["residual"], rel=0.05)
    assert row["var_utterance"] == pytest.approx(true_var["utterance"], rel=0.15)
    assert row["share_utterance"] == pytest.approx(true_var["utterance"] / total, abs=0.1)
    assert row["share_seed"] == pytest.approx(true_var["seed"] / total, abs=0.1)
    assert row["share_teacher"] == pytest.approx(true_var["teacher"] / total, abs=0.15)
    assert row["note"] == ""


def test_variance_estimates_are_unbiased_over_replicates() -> None:
    """Averaged over 100 tables the ANOVA estimators are within a few standard errors of
    the truth: the teacher variance of one table (5 df) is noisy, its mean is not."""
    out = variance_components(control_cells(100, n_utts=40))
    for component, sd in TRUE_SD.items():
        assert out[f"var_{component}"].mean() == pytest.approx(sd**2, rel=0.15), component


def test_anova_estimates_equal_reml_on_a_balanced_table() -> None:
    scores = control_cells(1, n_teachers=3, seeds_per_teacher=3, n_utts=25)
    anova = variance_components(scores).iloc[0]
    reml = variance_components(scores, method="reml").iloc[0]
    assert anova["note"] == reml["note"] == ""
    for component in TRUE_SD:
        assert anova[f"var_{component}"] == pytest.approx(reml[f"var_{component}"], rel=0.02)


def test_single_teacher_variance_is_not_estimable_and_says_so() -> None:
    row = variance_components(control_cells(1, n_teachers=1, seeds_per_teacher=6)).iloc[0]
    assert np.isnan(row["var_teacher"]) and np.isnan(row["share_teacher"])
    assert "one teacher" in row["note"]
    assert row["share_seed"] + row["share_utterance"] + row["share_residual"] == pytest.approx(1)


def test_one_seed_per_teacher_confounds_teacher_and_seed() -> None:
    row = variance_components(control_cells(1, n_teachers=8, seeds_per_teacher=1)).iloc[0]
    assert np.isnan(row["var_seed"]) and "confounded" in row["note"]
    assert row["share_teacher"] + row["share_utterance"] + row["share_residual"] == pytest.approx(1)


def test_utterances_with_a_nan_are_dropped_from_the_split() -> None:
    scores = control_cells(1, n_utts=50)
    holes = (scores["utterance"].isin(["u000", "u007"])) & (scores["seed"] == 3)
    row = variance_components(scores.assign(value=scores["value"].mask(holes))).iloc[0]
    complete = variance_components(scores[~scores["utterance"].isin(["u000", "u007"])]).iloc[0]
    assert (row["n_utterances"], row["n_dropped_utterances"]) == (48, 2)
    for component in TRUE_SD:
        assert row[f"var_{component}"] == pytest.approx(complete[f"var_{component}"])
