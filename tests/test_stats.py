"""Known-answer tests for kdbench.report.stats: expected values come from hand computation or from
scipy applied to numbers the test builds itself (holm() is used as an oracle only after its
own hand-computed test)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats as sps

from kdbench.report.stats import (
    METHODOLOGY,
    across_pairs,
    holm,
    mean_ci,
    min_p_over_seeds,
    rank_summary,
    seed_count_warning,
    summarize,
)

SEEDS = range(5)
UTTS = [f"u{i:02d}" for i in range(30)]


def make_scores(
    offsets: dict[str, float],
    noise: float = 0.05,
    rng_seed: int = 0,
    metric: str = "pesq",
    pair: str = "p1",
) -> pd.DataFrame:
    """Scores = utterance difficulty + per-seed shift + method offset + small noise.

    Utterance and seed effects are shared by every method, as pairing intends, so the
    paired differences carry only the offset and the noise.
    """
    rng = np.random.default_rng(rng_seed)
    difficulty = rng.normal(2.5, 0.5, len(UTTS))
    seed_shift = rng.normal(0.0, 0.2, len(SEEDS))
    rows = []
    for method, offset in offsets.items():
        for s in SEEDS:
            for u, base in zip(UTTS, difficulty):
                value = base + seed_shift[s] + offset + rng.normal(0.0, noise)
                rows.append(("ds", pair, method, s, u, metric, value))
    return pd.DataFrame(
        rows, columns=["dataset", "pair", "method", "seed", "utterance", "metric", "value"]
    )


def row(summary: pd.DataFrame, method: str, **keys: str) -> pd.Series:
    sel = summary["method"] == method
    for k, v in keys.items():
        sel &= summary[k] == v
    (idx,) = np.flatnonzero(sel.to_numpy())
    return summary.iloc[idx]


# --------------------------------------------------------------------------- holm


def test_holm_known_vector() -> None:
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def test_holm_nan_stays_nan_and_does_not_count() -> None:
    out = holm([0.01, math.nan, 0.04, 0.03])
    assert math.isnan(out[1])
    assert [out[0], out[2], out[3]] == pytest.approx([0.03, 0.06, 0.06])


def test_holm_caps_at_one_and_handles_empty() -> None:
    assert holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []
    assert all(math.isnan(p) for p in holm([math.nan, math.nan]))


@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=20))
def test_holm_is_monotone_and_bounded(ps: list[float]) -> None:
    adj = holm(ps)
    for p, a in zip(ps, adj):
        assert p <= a + 1e-12 and a <= 1.0
    for i in range(len(ps)):
        for j in range(len(ps)):
            if ps[i] <= ps[j]:
                assert adj[i] <= adj[j] + 1e-12


def test_holm_rejects_out_of_range() -> None:
    with pytest.raises(ValueError):
        holm([0.5, 1.5])


# --------------------------------------------------------------------------- seed floor


def test_min_p_over_seeds() -> None:
    assert min_p_over_seeds(5) == 0.0625
    assert min_p_over_seeds(6) == 0.03125
    assert min_p_over_seeds(1) == 1.0
    with pytest.raises(ValueError):
        min_p_over_seeds(0)


def test_min_p_matches_exact_wilcoxon() -> None:
    """The floor is what scipy's exact test gives when all differences share a sign."""
    for n in (3, 5, 7):
        p = sps.wilcoxon(np.arange(1.0, n + 1), method="exact").pvalue
        assert p == pytest.approx(min_p_over_seeds(n))


def test_seed_count_warning() -> None:
    text = seed_count_warning(5)
    assert text is not None and "5 seed" in text and "0.0625" in text
    assert seed_count_warning(6) is None
    assert seed_count_warning(6, alpha=0.01) is not None


# --------------------------------------------------------------------------- summarize


def test_known_effect_is_significant_with_right_sign() -> None:
    scores = make_scores({"none": 0.0, "kd": 0.5})
    summary = summarize(scores, {"pesq": True})
    kd = row(summary, "kd")
    assert kd["delta_none"] == pytest.approx(0.5, abs=0.05)
    assert bool(kd["better_none"])
    assert kd["p_holm_none"] < 1e-6
    assert kd["p_ttest_none"] < 1e-3
    assert kd["dz_none"] > 5
    assert 0 < kd["cliffs_none"] <= 1
    assert kd["n_common_none"] == 5 and kd["n_pairs_none"] == 150
    ref = row(summary, "none")
    assert pd.isna(ref["better_none"]) and math.isnan(ref["p_holm_none"])


def test_identical_methods_are_not_significant() -> None:
    scores = make_scores({"none": 0.0})
    twin = scores.assign(method="twin")
    summary = summarize(pd.concat([scores, twin]), {"pesq": True})
    t = row(summary, "twin")
    assert t["delta_none"] == 0.0
    assert not bool(t["better_none"])
    assert t["p_wilcoxon_none"] == 1.0 and t["p_holm_none"] == 1.0
    assert t["p_ttest_none"] == 1.0
    assert t["cliffs_none"] == 0.0


def test_pure_noise_is_not_significant() -> None:
    # rng_seed 3 was chosen once and is fixed: its noise gives a clearly large p.
    scores = make_scores({"none": 0.0, "noisy": 0.0}, noise=0.1, rng_seed=3)
    n = row(summarize(scores, {"pesq": True}), "noisy")
    assert n["p_holm_none"] > 0.3
    assert n["p_ttest_none"] > 0.3
    assert abs(n["cliffs_none"]) < 0.1


def test_holm_spans_the_whole_table() -> None:
    """Two pairs and two methods in one (dataset, metric) give four hypotheses."""
    a = make_scores({"none": 0.0, "kd": 0.5, "x": 0.5}, pair="p1")
    b = make_scores({"none": 0.0, "kd": 0.5, "x": 0.5}, pair="p2", rng_seed=1)
    summary = summarize(pd.concat([a, b]), {"pesq": True})
    raw = summary["p_wilcoxon_none"].to_numpy()
    assert summary["p_holm_none"].to_numpy() == pytest.approx(holm(raw), nan_ok=True)
    assert np.count_nonzero(~np.isnan(raw)) == 4


def test_holm_is_separate_per_metric() -> None:
    a = make_scores({"none": 0.0, "kd": 0.5}, metric="pesq")
    b = make_scores({"none": 0.0, "kd": 0.5}, metric="stoi", rng_seed=1)
    summary = summarize(pd.concat([a, b]), {"pesq": True, "stoi": True})
    for metric in ("pesq", "stoi"):
        r = row(summary, "kd", metric=metric)
        assert r["p_holm_none"] == pytest.approx(r["p_wilcoxon_none"])


def test_ttest_matches_scipy_and_seed_stats_by_hand() -> None:
    scores = make_scores({"none": 0.0, "kd": 0.1}, noise=0.3, rng_seed=7)
    per_seed = scores.groupby(["method", "seed"])["value"].mean()
    kd_means, ref_means = per_seed["kd"].to_numpy(), per_seed["none"].to_numpy()
    kd = row(summarize(scores, {"pesq": True}), "kd")
    assert kd["p_ttest_none"] == pytest.approx(sps.ttest_rel(kd_means, ref_means).pvalue)
    diff = kd_means - ref_means
    assert kd["dz_none"] == pytest.approx(diff.mean() / diff.std(ddof=1))
    assert kd["mean"] == pytest.approx(kd_means.mean())
    assert kd["std"] == pytest.approx(kd_means.std(ddof=1))
    assert kd["n_seeds"] == 5 and kd["complete"] and kd["seeds_missing"] == ()


def test_mean_ci_by_hand() -> None:
    diff = np.array([0.1, 0.3, -0.1, 0.2, 0.5])
    half = sps.t.ppf(0.975, 4) * diff.std(ddof=1) / math.sqrt(5)
    assert mean_ci(diff) == pytest.approx((diff.mean() - half, diff.mean() + half))
    assert mean_ci(np.array([0.2, 0.2, 0.2])) == (0.2, 0.2)  # no spread: the point itself
    assert all(math.isnan(v) for v in mean_ci(np.array([0.4])))


def test_seed_level_ci_in_cells_and_across_pairs() -> None:
    scores = make_scores({"none": 0.0, "kd": 0.1}, noise=0.3, rng_seed=7)
    per_seed = scores.groupby(["method", "seed"])["value"].mean()
    diff = per_seed["kd"].to_numpy() - per_seed["none"].to_numpy()
    kd = row(summarize(scores, {"pesq": True}), "kd")
    assert (kd["ci_low_none"], kd["ci_high_none"]) == pytest.approx(mean_ci(diff))
    assert kd["ci_low_none"] < kd["delta_none"] < kd["ci_high_none"]
    assert math.isnan(row(summarize(scores, {"pesq": True}), "none")["ci_low_none"])
    unit = row(across_pairs(scores, {"pesq": True}), "kd")
    assert (unit["ci_low"], unit["ci_high"]) == pytest.approx(mean_ci(diff))


def test_cliffs_delta_by_hand() -> None:
    rows = [
        ("d", "p", m, 0, f"u{i}", "m", v)
        for m, vals in {"none": [1.0, 2.0, 3.0], "kd": [2.0, 3.0, 4.0]}.items()
        for i, v in enumerate(vals)
    ]
    scores = pd.DataFrame(
        rows, columns=["dataset", "pair", "method", "seed", "utterance", "metric", "value"]
    )
    kd = row(summarize(scores, {"m": True}), "kd")
    # kd vs none cross pairs: 6 greater, 2 equal, 1 less -> (6 - 1) / 9.
    assert kd["cliffs_none"] == pytest.approx(5 / 9)
    assert kd["n_common_none"] == 1
    assert math.isnan(kd["p_ttest_none"]) and math.isnan(kd["dz_none"])
    assert math.isnan(kd["std"])


def test_nan_utterances_counted_and_dropped_pairwise() -> None:
    scores = make_scores({"none": 0.0, "kd": 0.2}, noise=0.3, rng_seed=11)
    nan_kd = (scores["method"] == "kd") & (scores["utterance"].isin(["u00", "u01"]))
    nan_ref = (scores["method"] == "none") & (scores["seed"] == 0) & (scores["utterance"] == "u05")
    scores.loc[nan_kd | nan_ref, "value"] = np.nan
    summary = summarize(scores, {"pesq": True})
    kd, ref = row(summary, "kd"), row(summary, "none")
    assert kd["n_undefined"] == 10 and ref["n_undefined"] == 1
    assert kd["n_pairs_none"] == 150 - 10 - 1

    wide = scores.pivot(index=["seed", "utterance"], columns="method", values="value").dropna()
    expected = sps.wilcoxon(wide["kd"] - wide["none"]).pvalue
    assert kd["p_wilcoxon_none"] == pytest.approx(expected)
    # Each method's per-seed mean skips only its own NaNs, not its partner's.
    per_seed = scores.groupby(["method", "seed"])["value"].apply(np.nanmean)
    assert kd["mean"] == pytest.approx(per_seed["kd"].mean())
    assert ref["mean"] == pytest.approx(per_seed["none"].mean())


def test_all_undefined_seed_counts_as_missing() -> None:
    scores = make_scores({"none": 0.0, "kd": 0.5})
    scores.loc[(scores.method == "kd") & (scores.seed == 2), "value"] = np.nan
    kd = row(summarize(scores, {"pesq": True}), "kd")
    assert kd["n_seeds"] == 4 and kd["seeds_missing"] == (2,) and not kd["complete"]
    assert kd["n_undefined"] == 30 and kd["n_common_none"] == 4


def test_incomplete_cells_flagged() -> None:
    scores = make_scores({"none": 0.0, "kd": 0.5})
    scores = scores[~((scores.method == "kd") & (scores.seed == 3))]
    summary = summarize(scores, {"pesq": True})
    kd, ref = row(summary, "kd"), row(summary, "none")
    assert kd["n_seeds"] == 4 and kd["seeds_missing"] == (3,) and not kd["complete"]
    assert ref["complete"] and ref["seeds_missing"] == ()
    assert kd["n_common_none"] == 4 and kd["n_pairs_none"] == 120

    summary = summarize(scores, {"pesq": True}, expected_seeds=range(6))
    assert row(summary, "none")["seeds_missing"] == (5,)
    assert row(summary, "kd")["seeds_missing"] == (3, 5)
    assert not summary["complete"].any()


def test_lower_is_better_flips_better() -> None:
    scores = make_scores({"none": 0.0, "kd": 0.5}, metric="err")
    up = row(summarize(scores, {"err": True}), "kd")
    down = row(summarize(scores, {"err": False}), "kd")
    assert bool(up["better_none"]) and not bool(down["better_none"])
    assert up["delta_none"] == down["delta_none"] > 0
    assert up["p_holm_none"] == down["p_holm_none"]


def test_multiple_references_and_absent_reference() -> None:
    scores = make_scores({"none": 0.0, "output": 0.3, "kd": 0.5})
    summary = summarize(scores, {"pesq": True}, references=("none", "output", "absent"))
    kd = row(summary, "kd")
    assert kd["delta_output"] == pytest.approx(0.2, abs=0.05)
    assert row(summary, "output")["delta_none"] == pytest.approx(0.3, abs=0.05)
    assert pd.isna(kd["better_absent"]) and math.isnan(kd["p_wilcoxon_absent"])
    # Three hypotheses share one Holm family: kd-none, kd-output, and output-none, which
    # appears on two rows (output vs none, none vs output) but is counted once.
    out, none = row(summary, "output"), row(summary, "none")
    assert out["p_wilcoxon_none"] == none["p_wilcoxon_output"]
    raw = [kd["p_wilcoxon_none"], kd["p_wilcoxon_output"], out["p_wilcoxon_none"]]
    expected = holm(raw)
    assert kd["p_holm_none"] == pytest.approx(expected[0])
    assert kd["p_holm_output"] == pytest.approx(expected[1])
    assert out["p_holm_none"] == none["p_holm_output"] == pytest.approx(expected[2])


def test_input_errors() -> None:
    scores = make_scores({"none": 0.0})
    with pytest.raises(ValueError, match="pesq"):
        summarize(scores, {"stoi": True})
    with pytest.raises(ValueError, match="duplicate"):
        summarize(pd.concat([scores, scores.iloc[:1]]), {"pesq": True})
    with pytest.raises(ValueError, match="value"):
        summarize(scores.drop(columns="value"), {"pesq": True})


def test_methodology_text_names_the_choices() -> None:
    for word in ("Wilcoxon", "Holm", "paired t-test", "d_z", "Cliff", "incomplete"):
        assert word in METHODOLOGY


# --------------------------------------------------------------------------- rank_summary


def _hand_summary() -> pd.DataFrame:
    """Two pairs, three methods, one higher-is-better metric and one lower-is-better."""
    recs = []
    for metric, means in {
        "pesq": {"p1": (2.0, 2.5, 2.2), "p2": (2.0, 2.1, 2.4)},
        "err": {"p1": (0.3, 0.1, 0.3), "p2": (0.3, 0.2, 0.4)},
    }.items():
        for pair, (m_none, m_a, m_b) in means.items():
            for method, mean in (("none", m_none), ("a", m_a), ("b", m_b)):
                recs.append(
                    {"dataset": "ds", "pair": pair, "metric": metric, "method": method,
                     "mean": mean, "complete": not (method == "b" and pair == "p2")}
                )
    s = pd.DataFrame(recs)
    higher = {"pesq": True, "err": False}
    ref_mean = s[s.method == "none"].set_index(["pair", "metric"])["mean"]
    s["delta_none"] = s["mean"] - [ref_mean[(r.pair, r.metric)] for r in s.itertuples()]
    s.loc[s.method == "none", "delta_none"] = np.nan
    up = s["metric"].map(higher)
    better = ((s["delta_none"] > 0) & up) | ((s["delta_none"] < 0) & ~up)
    s["better_none"] = better.astype("boolean").where(s.method != "none", pd.NA)
    # Significance by hand: only 'a' on p1/pesq, 'b' on p2/pesq and 'b' on p2/err.
    p = {("p1", "pesq", "a"): 0.01, ("p1", "pesq", "b"): 0.2, ("p2", "pesq", "a"): 0.5,
         ("p2", "pesq", "b"): 0.001, ("p1", "err", "a"): 0.3, ("p1", "err", "b"): 0.9,
         ("p2", "err", "a"): 0.07, ("p2", "err", "b"): 0.02}
    s["p_holm_none"] = [p.get((r.pair, r.metric, r.method), np.nan) for r in s.itertuples()]
    return s


def test_rank_summary_hand_built() -> None:
    out = rank_summary(_hand_summary(), {"pesq": True, "err": False}).set_index(
        ["metric", "method"]
    )
    # pesq: p1 ranks none 3, a 1, b 2; p2 ranks none 3, a 2, b 1.
    assert out.loc[("pesq", "none"), "mean_rank"] == 3.0
    assert out.loc[("pesq", "a"), "mean_rank"] == 1.5
    assert out.loc[("pesq", "b"), "mean_rank"] == 1.5
    # err (lower is better): p1 a 1, none/b tie at 2.5; p2 a 1, none 2, b 3.
    assert out.loc[("err", "a"), "mean_rank"] == 1.0
    assert out.loc[("err", "none"), "mean_rank"] == pytest.approx(2.25)
    assert out.loc[("err", "b"), "mean_rank"] == pytest.approx(2.75)

    wtl = ["wins_none", "ties_none", "losses_none"]
    assert list(out.loc[("pesq", "a"), wtl]) == [1, 1, 0]
    assert list(out.loc[("pesq", "b"), wtl]) == [1, 1, 0]
    assert list(out.loc[("err", "a"), wtl]) == [0, 2, 0]
    assert list(out.loc[("err", "b"), wtl]) == [0, 1, 1]  # worse on p2 and significant
    assert list(out.loc[("pesq", "none"), wtl]) == [0, 0, 0]  # never compared with itself
    assert out.loc[("pesq", "b"), "n_incomplete"] == 1
    assert out.loc[("pesq", "a"), "n_pairs"] == 2


def test_rank_summary_alpha() -> None:
    out = rank_summary(_hand_summary(), {"pesq": True, "err": False}, alpha=0.005)
    a = out.set_index(["metric", "method"]).loc[("pesq", "a")]
    assert (a["wins_none"], a["ties_none"]) == (0, 2)


def test_summarize_feeds_rank_summary() -> None:
    scores = make_scores({"none": 0.0, "kd": 0.5, "x": 0.2})
    higher = {"pesq": True}
    out = rank_summary(summarize(scores, higher), higher).set_index("method")
    assert out.loc["kd", "mean_rank"] == 1 and out.loc["none", "mean_rank"] == 3
    assert out.loc["kd", "wins_none"] == 1 and out.loc["x", "wins_none"] == 1


# --------------------------------------------------------------------------- across pairs


def unit_scores(differences: dict[str, list[float]], metric: str = "pesq") -> pd.DataFrame:
    """Two utterances per (pair, seed) unit: none scores 2 and 3 (mean 2.5); a method adds
    its unit's difference to both, so its per-seed mean differs from none's by exactly it."""
    units = [(pair, seed) for pair in ("p1", "p2") for seed in range(3)]
    rows = []
    for pair, seed in units:
        for u, base in (("u0", 2.0), ("u1", 3.0)):
            rows.append(("ds", pair, "none", seed, u, metric, base))
    for method, diffs in differences.items():
        for (pair, seed), diff in zip(units, diffs):
            for u, base in (("u0", 2.0), ("u1", 3.0)):
                rows.append(("ds", pair, method, seed, u, metric, base + diff))
    return pd.DataFrame(rows, columns=["dataset", "pair", "method", "seed", "utterance", "metric", "value"])


def test_across_pairs_known_wilcoxon_and_holm() -> None:
    scores = unit_scores({
        "all_up": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
        "mixed": [0.1, -0.2, 0.3, -0.4, 0.5, -0.6],
    })
    extra = scores[(scores["method"] == "all_up") & (scores["seed"] == 0)].assign(seed=9)
    out = across_pairs(pd.concat([scores, extra]), {"pesq": True}, references=["none"])
    up = row(out, "all_up")
    assert up["n_units"] == 6  # seed 9 has no `none` to pair with
    assert up["delta"] == pytest.approx(0.35) and up["n_better"] == 6
    assert up["p_wilcoxon"] == pytest.approx(2 / 2**6)  # every sign alike: 2 of 64 outcomes
    mixed = row(out, "mixed")
    expected = sps.wilcoxon([0.1, -0.2, 0.3, -0.4, 0.5, -0.6]).pvalue
    assert mixed["n_better"] == 3 and mixed["p_wilcoxon"] == pytest.approx(expected)
    assert up["p_holm"] == pytest.approx(2 * 2 / 2**6)
    assert mixed["p_holm"] == pytest.approx(max(2 * 2 / 2**6, expected))


def test_across_pairs_lower_is_better_and_references_once() -> None:
    scores = unit_scores({"worse": [0.1] * 6, "ref2": [0.0, 0.0, 0.1, -0.1, 0.2, -0.2]}, metric="wer")
    out = across_pairs(scores, {"wer": False}, references=["none", "ref2"])
    assert row(out, "worse", reference="none")["n_better"] == 0  # higher WER is worse
    both = out[out["method"].isin(["none", "ref2"]) & out["reference"].isin(["none", "ref2"])]
    assert len(both) == 2 and both["p_holm"].nunique() == 1  # A vs B and B vs A: one hypothesis
    distinct = [
        row(out, "worse", reference="none")["p_wilcoxon"],
        row(out, "worse", reference="ref2")["p_wilcoxon"],
        row(out, "ref2", reference="none")["p_wilcoxon"],
    ]
    adjusted = holm(distinct)
    assert row(out, "worse", reference="none")["p_holm"] == pytest.approx(adjusted[0])
    assert row(out, "none", reference="ref2")["p_holm"] == pytest.approx(adjusted[2])


def test_across_pairs_trend_with_mismatch_recovers_a_known_slope() -> None:
    levels = {"mild": 1, "middle": 2, "severe": 3, "extreme": 4}
    rng = np.random.default_rng(3)
    rows = []
    truth = {"grows": 0.05, "flat": 0.0}
    units = {method: [] for method in truth}
    for pair, level in levels.items():
        for seed in range(6):
            rows.append(("ds", pair, "none", seed, "u0", "pesq", 2.0))
            for method, slope in truth.items():
                diff = 0.1 + slope * level + rng.normal(0, 0.02)
                units[method].append((level, diff))
                rows.append(("ds", pair, method, seed, "u0", "pesq", 2.0 + diff))
    scores = pd.DataFrame(rows, columns=["dataset", "pair", "method", "seed", "utterance", "metric", "value"])
    out = across_pairs(scores, {"pesq": True}, references=["none"], mismatch=levels)
    raw = {}
    for method, slope in truth.items():
        found = row(out, method)
        x, y = map(np.array, zip(*units[method]))
        fit = sps.linregress(x, y)
        raw[method] = fit.pvalue
        assert found["trend"] == pytest.approx(fit.slope)
        assert found["trend_ci_low"] < slope < found["trend_ci_high"]
    assert row(out, "grows")["p_trend"] < 1e-6
    assert row(out, "flat")["p_trend"] > 0.05
    assert [row(out, m)["p_trend"] for m in truth] == pytest.approx(holm(list(raw.values())))
    assert out.loc[out["method"] != "none", "trend"].notna().all()
    without = across_pairs(scores, {"pesq": True}, references=["none"])
    assert without["trend"].isna().all() and without["p_trend"].isna().all()
    one_level = across_pairs(scores, {"pesq": True}, references=["none"],
                             mismatch=dict.fromkeys(levels, 1))
    assert one_level["trend"].isna().all()
