"""metrics.stats against answers computed independently: by hand, by enumeration, or by SciPy directly."""
from __future__ import annotations

import itertools
import math
import time

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from metrics import stats


def _scores(rows):
    return pd.DataFrame(rows, columns=["variant", "prompt_id", "seed", "metric", "value"])


@pytest.fixture
def small():
    # 3 prompts × 2 seeds; "b" vs "base" on q (higher better) and on err (lower better, tolerance 0.1)
    base_q = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    b_q = [1.5, 2.0, 2.0, 4.5, 5.5, 6.0]          # Δ: +.5, 0, −1, +.5, +.5, 0 → win, tie, loss, win, win, tie
    base_e = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    b_e = [0.5, 1.05, 1.5, 0.95, 0.2, 2.0]        # lower better: Δ −.5 win, +.05 tie, +.5 loss, −.05 tie, −.8 win, +1 loss
    rows = []
    for i, (p, s) in enumerate(itertools.product(["p1", "p2", "p3"], [0, 1])):
        rows += [("base", p, s, "q", base_q[i]), ("b", p, s, "q", b_q[i]),
                 ("base", p, s, "err", base_e[i]), ("b", p, s, "err", b_e[i])]
    rows.append(("b", "p4", 0, "q", 9.0))  # no baseline partner: must be left out
    return _scores(rows)


def test_outcomes_tolerance_boundary():
    assert stats.outcomes([0.2, -0.2, 0.05, -0.05, 0.0], 0.05).tolist() == [1, 0, 0.5, 0.5, 0.5]
    assert stats.outcomes([1e-12, 0.0], 0.0).tolist() == [1, 0.5]
    assert stats.outcomes([0.2, 0.2], [0.1, 0.3]).tolist() == [1, 0.5]  # one tolerance per difference


def test_pairing_scores_outcomes_with_the_tested_rule(monkeypatch):
    """The report's pairs get their outcomes from `outcomes` (the rule tested above), at the boundary too."""
    rows = [("base", f"p{i}", 0, "q", 0.0) for i in range(4)] + [("v", f"p{i}", 0, "q", d)
                                                                    for i, d in enumerate([0.25, -0.25, 0.5, -0.75])]
    p = stats.paired_differences(_scores(rows), "base", {"q": True}, {"q": 0.25}).sort_values("prompt_id")
    assert p["outcome"].tolist() == stats.outcomes([0.25, -0.25, 0.5, -0.75], 0.25).tolist() == [0.5, 0.5, 1, 0]
    monkeypatch.setattr(stats, "outcomes", lambda a, tol: np.full(len(a), 0.25))
    assert (stats.paired_differences(_scores(rows), "base", {"q": True})["outcome"] == 0.25).all()


def test_paired_differences_orientation_and_pairing(small):
    p = stats.paired_differences(small, "base", {"q": True, "err": False}, {"err": 0.1})
    assert len(p) == 12  # the unpaired p4 row is gone
    q = p[p.metric == "q"].sort_values(["prompt_id", "seed"])
    assert q["diff"].tolist() == [0.5, 0.0, -1.0, 0.5, 0.5, 0.0]
    assert q["outcome"].tolist() == [1, 0.5, 0, 1, 1, 0.5]  # exact zeros tie with tolerance 0
    e = p[p.metric == "err"].sort_values(["prompt_id", "seed"])
    assert np.allclose(e["advantage"], [0.5, -0.05, -0.5, 0.05, 0.8, -1.0])  # lower is better: sign flipped
    assert e["outcome"].tolist() == [1, 0.5, 0, 0.5, 1, 0]


def test_paired_differences_refuses_unknown_direction(small):
    with pytest.raises(KeyError, match="err"):
        stats.paired_differences(small, "base", {"q": True})


def test_win_rate_table_counts_by_hand(small):
    p = stats.paired_differences(small, "base", {"q": True, "err": False}, {"err": 0.1})
    t = stats.win_rate_table(p, n_boot=200, seed=1).set_index("metric")
    q = t.loc["q"]
    assert (q.wins, q.ties, q.losses, q.n_pairs, q.n_prompts) == (3, 2, 1, 6, 3)
    assert q.win_rate == pytest.approx((3 + 0.5 * 2) / 6)
    assert q.tie_share == pytest.approx(2 / 6)
    assert q.mean_diff == pytest.approx(0.5 / 6)
    assert q.mean_value == pytest.approx(np.mean([1.5, 2.0, 2.0, 4.5, 5.5, 6.0]))
    e = t.loc["err"]
    assert (e.wins, e.ties, e.losses) == (2, 2, 2)
    assert e.win_rate == pytest.approx(0.5)
    # prompt-level sign test: per-prompt mean outcome p1 .75 (win), p2 .25 (loss), p3 .5 (tie) for err
    assert (e.test_wins, e.test_losses) == (1, 1)
    for c in ("win_rate", "mean_diff", "tie_share"):
        assert t[f"{c}_lo"].le(t[c] + 1e-12).all() and t[f"{c}_hi"].ge(t[c] - 1e-12).all()


def test_sign_test_matches_hand_binomial():
    # 9 wins, 2 losses: two-sided exact p = 2 · P(X ≤ 2), X ~ Bin(11, ½)
    hand = 2 * sum(math.comb(11, k) for k in range(3)) / 2 ** 11
    assert stats.sign_test(9, 2) == pytest.approx(hand)
    assert stats.sign_test(0, 0) == 1.0


def test_sign_test_in_table_excludes_ties():
    rows = []
    diffs = [1.0] * 9 + [-1.0] * 2 + [0.0] * 5  # 5 ties must not dilute the test
    for i, d in enumerate(diffs):
        rows += [("base", f"p{i}", 0, "m", 0.0), ("v", f"p{i}", 0, "m", d)]
    t = stats.win_rate_table(stats.paired_differences(_scores(rows), "base", {"m": True}), n_boot=50)
    assert t.loc[0, "p_sign"] == pytest.approx(stats.sign_test(9, 2))
    assert t.loc[0, "win_rate"] == pytest.approx((9 + 2.5) / 16)


def _wilcoxon_exact_by_enumeration(d):
    """Two-sided exact signed-rank p by listing all 2^n sign patterns (no ties in |d|, no zeros)."""
    d = np.asarray(d, float)
    ranks = sps.rankdata(np.abs(d))
    observed = ranks[d > 0].sum()
    dist = np.array([sum(r for r, s in zip(ranks, signs) if s) for signs in itertools.product([0, 1], repeat=len(d))])
    lower, upper = np.mean(dist <= observed), np.mean(dist >= observed)
    return min(1.0, 2 * min(lower, upper))


def test_wilcoxon_exact_against_enumeration_and_zero_handling():
    d = [0.3, -1.2, 2.5, 0.7, 1.9, -0.4, 3.1, 1.4]
    hand = _wilcoxon_exact_by_enumeration(d)
    assert stats.wilcoxon_signed_rank(d)[0] == pytest.approx(hand)
    # differences within the tolerance are ties: dropped, like the sign test drops them
    assert stats.wilcoxon_signed_rank(d + [0.01, -0.02, 0.0], tolerance=0.05)[0] == pytest.approx(hand)
    assert stats.wilcoxon_signed_rank([0.0, 0.01], tolerance=0.05) == (1.0, "none")


def test_holm_by_hand():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted .005 .01 .03 .04 × 4 3 2 1 = .02 .03 .06 .04 → running max .02 .03 .06 .06
    assert np.allclose(stats.holm(p), [0.03, 0.06, 0.06, 0.02])
    out = stats.holm([0.02, np.nan, 0.5])
    assert np.isnan(out[1]) and np.allclose(out[[0, 2]], [0.04, 0.5])  # NaN not counted in m
    assert stats.holm([0.6, 0.7]).max() <= 1.0


def test_benjamini_hochberg_by_hand_and_scipy():
    p = [0.01, 0.04, 0.03, 0.005]
    assert np.allclose(stats.benjamini_hochberg(p), [0.02, 0.04, 0.04, 0.02])
    rng = np.random.default_rng(3)
    q = rng.uniform(size=40) ** 3
    assert np.allclose(stats.benjamini_hochberg(q), sps.false_discovery_control(q, method="bh"))


def test_adjusted_table_flags_survivors():
    t = pd.DataFrame({"p_sign": [0.001, 0.02, 0.3], "p_wilcoxon": [0.002, 0.01, 0.9]})
    holm = stats.add_adjusted_pvalues(t, "holm", 0.05)
    assert holm["significant"].tolist() == [True, True, False]  # .003, .04, .3
    bh = stats.add_adjusted_pvalues(t, "bh", 0.05)
    assert np.allclose(bh["p_sign_adj"], [0.003, 0.03, 0.3])
    with pytest.raises(ValueError):
        stats.adjust_pvalues([0.1], "bonferonni")


def test_cluster_bootstrap_matches_scipy_when_one_seed_per_prompt():
    rng = np.random.default_rng(0)
    x = (rng.uniform(size=150) < 0.63).astype(float)
    est, lo, hi = stats.cluster_bootstrap_ratio(x, np.ones_like(x), n_boot=20000, rng=1)
    ref = sps.bootstrap((x,), np.mean, n_resamples=20000, method="percentile", confidence_level=0.95,
                        random_state=np.random.default_rng(2)).confidence_interval
    assert est == pytest.approx(x.mean())
    assert lo == pytest.approx(ref.low, abs=0.012) and hi == pytest.approx(ref.high, abs=0.012)


def test_cluster_bootstrap_moves_seeds_together():
    # Four identical seeds per prompt carry no more information than one: the cluster interval must not
    # shrink (with the same draws it is identical), while a naive pair-level bootstrap would halve it.
    rng = np.random.default_rng(5)
    x = (rng.uniform(size=80) < 0.6).astype(float)
    one = stats.cluster_bootstrap_ratio(x, np.ones(80), n_boot=2000, rng=9)
    four = stats.cluster_bootstrap_ratio(4 * x, 4 * np.ones(80), n_boot=2000, rng=9)
    assert np.allclose(one, four)
    naive = stats.cluster_bootstrap_ratio(np.repeat(x, 4), np.ones(320), n_boot=2000, rng=9)
    assert (naive[2] - naive[1]) < 0.6 * (one[2] - one[1])


def test_bootstrap_is_seeded():
    x = np.random.default_rng(1).uniform(size=50)
    a = stats.cluster_bootstrap_ratio(x, np.ones(50), n_boot=300, rng=4)
    b = stats.cluster_bootstrap_ratio(x, np.ones(50), n_boot=300, rng=4)
    c = stats.cluster_bootstrap_ratio(x, np.ones(50), n_boot=300, rng=5)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_cluster_bootstrap_coverage_is_near_nominal():
    """Simulated clustered win/loss data with a known population win rate of 0.6 (prompt effects make the
    seeds of a prompt correlated): the 95 % interval should cover 0.6 in about 95 % of experiments."""
    rng = np.random.default_rng(2024)
    reps, n_prompts, n_seeds, truth = 300, 60, 3, 0.6
    covered = covered_naive = 0
    for _ in range(reps):
        pi = np.clip(truth + 0.35 * rng.uniform(-1, 1, size=n_prompts), 0, 1)  # E[pi] = 0.6
        wins = (rng.uniform(size=(n_prompts, n_seeds)) < pi[:, None]).astype(float)
        _, lo, hi = stats.cluster_bootstrap_ratio(wins.sum(1), np.full(n_prompts, n_seeds), n_boot=400, rng=rng)
        covered += lo <= truth <= hi
        _, lo, hi = stats.cluster_bootstrap_ratio(wins.ravel(), np.ones(wins.size), n_boot=400, rng=rng)
        covered_naive += lo <= truth <= hi
    coverage = covered / reps
    assert 0.90 <= coverage <= 0.99, coverage
    assert covered_naive / reps < coverage  # ignoring the clustering is over-confident


def test_breakdown_strata_resample_within_category(small):
    s = small.copy()
    s["category"] = s["prompt_id"].map({"p1": "photo", "p2": "photo", "p3": "anime", "p4": "anime"})
    p = stats.paired_differences(s, "base", {"q": True, "err": False}, {"err": 0.1})
    t = stats.win_rate_table(p, by=["category"], n_boot=100)
    q = t[t.metric == "q"].set_index("category")
    assert q.loc["photo", "n_prompts"] == 2 and q.loc["anime", "n_prompts"] == 1
    assert q.loc["photo", "win_rate"] == pytest.approx(2.5 / 4)  # p1: win, tie; p2: loss, win
    assert q.loc["anime", "win_rate"] == pytest.approx(1.5 / 2)  # p3: win, tie
    # one prompt is one observation: its interval is wide, never the zero-width [75, 75] of a percentile
    # bootstrap that draws the same prompt every time
    assert q.loc["anime", "win_rate_lo"] < 0.2 and q.loc["anime", "win_rate_hi"] > 0.95


def test_bootstrap_is_fast_for_thousands_of_prompts():
    rng = np.random.default_rng(0)
    n_prompts, n_seeds = 3000, 4
    rows = []
    for v, eff in (("base", 0.0), ("a", 0.1), ("b", 0.2)):
        for s in range(n_seeds):
            for m in ("m1", "m2"):
                rows.append(pd.DataFrame({"variant": v, "prompt_id": np.arange(n_prompts).astype(str), "seed": s,
                                          "metric": m, "value": eff + rng.normal(size=n_prompts)}))
    scores = pd.concat(rows, ignore_index=True)
    start = time.perf_counter()
    t = stats.compare_to_baseline(scores, "base", {"m1": True, "m2": True}, n_boot=1000).table
    elapsed = time.perf_counter() - start
    assert len(t) == 4 and t["n_pairs"].eq(n_prompts * n_seeds).all()
    assert elapsed < 15, f"{elapsed:.1f} s for 3000 prompts × 4 seeds × 1000 resamples"


# -- effective sample size, tests that can decide, the direction of a verdict, checked input ------------------


def test_proportion_interval_by_hand():
    # one seed per prompt: n_eff = N exactly, and the interval is Clopper–Pearson's
    num = np.array([1, 1, 1, 0, 1, 1, 0, 1, 1, 1], float)
    est, lo, hi, n_eff = stats.proportion_interval(num, np.ones(10))
    cp = sps.binomtest(8, 10).proportion_ci(0.95, method="exact")
    assert est == 0.8 and n_eff == 10 and lo == pytest.approx(cp.low) and hi == pytest.approx(cp.high)
    # two seeds per prompt that always agree: the pairs are no more informative than the 5 prompts
    est2, lo2, hi2, n_eff2 = stats.proportion_interval(np.array([2, 2, 2, 0, 2], float), np.full(5, 2.0))
    cp5 = sps.binomtest(4, 5).proportion_ci(0.95, method="exact")
    assert est2 == 0.8 and n_eff2 == 5 and lo2 == pytest.approx(cp5.low) and hi2 == pytest.approx(cp5.high)


def test_sign_test_min_p_and_wilcoxon_method():
    assert stats.sign_test_min_p(4) == 0.125 == stats.sign_test(4, 0)
    assert stats.sign_test_min_p(0) == 1.0
    assert stats.wilcoxon_signed_rank([1.0, -2.0, 3.0, 4.0, 5.5]) == (pytest.approx(sps.wilcoxon([1.0, -2.0, 3.0, 4.0, 5.5], method="exact").pvalue), "exact")
    p, method = stats.wilcoxon_signed_rank([1.0, 1.0, -2.0, 3.0, 4.0, 4.0])  # tied |values|: approximation
    assert method == "normal approx., tie-corrected"
    assert p == pytest.approx(sps.wilcoxon([1.0, 1.0, -2.0, 3.0, 4.0, 4.0], method="approx", correction=False).pvalue)
    assert stats.wilcoxon_signed_rank([0.0, 0.0]) == (1.0, "none")


def test_direction_and_family_come_from_the_tested_comparisons():
    # 3 prompts × 4 seeds: pair-level win rate above ½ (big wins on one prompt), but 2 of 3 prompts lost
    rows = []
    for i, outcome in enumerate([[1, 1, 1, 1], [0, 0, 0.5, 1], [0, 0, 0.5, 1]]):
        for s, o in enumerate(outcome):
            rows += [("base", f"p{i}", s, "q", 0.0), ("v", f"p{i}", s, "q", {1: 1.0, 0: -1.0, 0.5: 0.0}[o])]
    rows += [("w", "p0", 0, "q", np.nan), ("base", "p0", 0, "r", 1.0), ("v", "p0", 0, "r", 2.0)]
    t = stats.compare_to_baseline(_scores(rows), "base", {"q": True, "r": True}, n_boot=50).table.set_index(["variant", "metric"])
    v = t.loc[("v", "q")]
    assert v.win_rate > 0.5 and (v.test_wins, v.test_losses) == (1, 2) and v.direction == "worse"
    assert t.loc[("w", "q"), "status"] == "missing" and np.isnan(t.loc[("w", "q"), "p_sign_adj"])
    assert (t["family_size"] == 2).all()  # v on q and on r; w on q has no pair and w on r no score at all


def test_validation_refuses_conflicting_duplicates_and_drops_infinities():
    from metrics.validation import validate_scores
    from mgt_common.errors import UserError

    s = _scores([("a", "p1", 0, "q", 1.0), ("a", "p1", 0, "q", 2.0)])
    with pytest.raises(UserError, match="one row per unit"):
        validate_scores(s)
    s = _scores([("a", "p1", 0, "q", np.inf), ("a", "p2", 0, "q", 1.0), ("a", "p2", 0, "q", 1.0)])
    out, notes = validate_scores(s)
    assert len(out) == 2 and out["value"].isna().sum() == 1 and len(notes) == 2
