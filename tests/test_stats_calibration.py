"""Seeded simulations that check the promises of metrics.stats, in a few seconds.

* the win-rate interval keeps ≥ 0.93 coverage for true win rates 0.5–0.99, 12–200 prompts, one or three
  seeds per prompt (correlated within a prompt), and heavy ties — and is never of zero width;
* the prompt-level sign test with Holm keeps the family-wise false-positive rate at ≤ α under the null,
  in each family (primary metric; secondary metrics) when corrected family by family;
* the mean-difference interval keeps ≥ 0.93 coverage at 12 prompts for symmetric, heavy-tailed, skewed
  and tie-heavy differences (the percentile bootstrap it replaced did not).
"""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from metrics import stats


def _simulate(rng, reps, prompts, seeds, win_rate, tie_share, rho):
    """Outcomes (reps, prompts, seeds) in {0, ½, 1}: each prompt's seeds share one draw with probability rho."""
    win = win_rate - tie_share / 2
    probs = np.array([max(1.0 - win - tie_share, 0.0), tie_share, win])
    probs /= probs.sum()
    u = rng.random((reps, prompts, seeds))
    u = np.where(rng.random((reps, prompts, 1)) < rho, u[:, :, :1], u)
    return np.where(u < probs[0], 0.0, np.where(u < probs[0] + probs[1], 0.5, 1.0))


def test_win_rate_interval_coverage_and_width():
    rng = np.random.default_rng(2024)
    reps, worst = 600, (1.0, None)
    for prompts, seeds, p, ties, rho in itertools.product([12, 50, 200], [1, 3], [0.5, 0.8, 0.95, 0.99],
                                                          [0.0, 0.6, 0.95], [0.0, 0.5]):
        if p - ties / 2 < 0 or p - ties / 2 + ties > 1:
            continue  # no such mixture (e.g. 95 % ties cannot give a 99 % win rate)
        out = _simulate(rng, reps, prompts, seeds, p, ties, rho)
        num, den = out.sum(2).T, np.full((prompts, reps), float(seeds))
        est, lo, hi, n_eff = stats.proportion_interval(num, den, 0.95)
        assert np.all(hi - lo > 0.01), (prompts, seeds, p, ties, rho)  # never zero width
        assert np.all((n_eff >= prompts - 1e-9) & (n_eff <= prompts * seeds + 1e-9))
        coverage = float(np.mean((lo <= p) & (p <= hi)))
        if coverage < worst[0]:
            worst = (coverage, (prompts, seeds, p, ties, rho))
    # measured minimum 0.95 with 2000 replications (docs/report.md); 0.93 leaves room for Monte Carlo error
    assert worst[0] >= 0.93, worst


def test_percentile_bootstrap_was_the_defect():
    """The old interval: all-win data gave "100 % [100, 100]"; the new one cannot say that."""
    num = np.full(12, 2.0)
    den = np.full(12, 2.0)
    w = stats.bootstrap_weights(12, 200, np.random.default_rng(0))
    _, lo_old, hi_old = stats.cluster_bootstrap_ratio(num, den, weights=w)
    _, lo, hi, _ = stats.proportion_interval(num, den)
    assert lo_old == hi_old == 1.0
    assert hi == 1.0 and 0.7 < lo < 0.8  # Clopper–Pearson at n_eff = 12 prompts: [0.735, 1]


def test_family_wise_error_after_holm_under_the_null():
    """10 comparisons × 48 prompts × 2 correlated seeds, ties, no true difference: FWER ≤ 0.05 (+ MC error)."""
    from scipy import stats as sps

    rng = np.random.default_rng(7)
    reps, comparisons, prompts = 2000, 10, 48
    out = _simulate(rng, reps * comparisons, prompts, 2, 0.5, 0.3, 0.5)  # (reps·comparisons, prompts, seeds)
    share = out.mean(2)
    wins, losses = (share > 0.5).sum(1), (share < 0.5).sum(1)
    # the exact two-sided sign test, vectorised (symmetric null: 2 · P(X ≤ min)); checked against stats.sign_test
    p = np.minimum(1.0, 2.0 * sps.binom.cdf(np.minimum(wins, losses), wins + losses, 0.5)).reshape(reps, comparisons)
    for i in range(5):
        assert p.flat[i] == np.float64(stats.sign_test(wins[i], losses[i])) or abs(p.flat[i] - stats.sign_test(wins[i], losses[i])) < 1e-12
    adjusted = np.array([stats.holm(row) for row in p])
    fwer = float(np.mean((adjusted <= 0.05).any(axis=1)))
    assert fwer <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / reps), fwer


def test_repeated_prompts_do_not_add_evidence():
    """Copies of a prompt (same text) form one cluster: the tests and intervals equal those without the copies."""
    rng = np.random.default_rng(3)
    rows = []
    for i in range(20):
        base = rng.normal()
        for seed in (0, 1):
            rows += [("base", f"p{i}", seed, "q", base + seed), ("v", f"p{i}", seed, "q", base + seed + rng.normal(0.3))]
    scores = pd.DataFrame(rows, columns=["variant", "prompt_id", "seed", "metric", "value"])
    scores["cluster"] = scores["prompt_id"]
    copies = scores[scores.prompt_id.isin(["p0", "p1", "p2", "p3", "p4", "p5", "p6", "p7"])].copy()
    copies["prompt_id"] = copies["prompt_id"] + "-copy"  # another id, the same text
    with_copies = pd.concat([scores, copies])
    a = stats.compare_to_baseline(scores, "base", {"q": True}, n_boot=100).table.iloc[0]
    b = stats.compare_to_baseline(with_copies, "base", {"q": True}, n_boot=100).table.iloc[0]
    assert b["n_prompts"] == a["n_prompts"] == 20
    assert b["p_sign"] == a["p_sign"] and b["p_wilcoxon"] == a["p_wilcoxon"]
    assert b["win_rate"] == a["win_rate"] and b["win_rate_lo"] == a["win_rate_lo"]


# -- the mean-difference interval ---------------------------------------------------------------------
def _per_prompt_differences(rng, kind, reps, prompts, seeds, rho):
    """Per-prompt mean differences ``(reps, prompts)`` and their true mean: seeds share one draw with probability rho."""
    draws = {
        "normal": (lambda size: rng.normal(size=size), 0.0),
        "t3": (lambda size: rng.standard_t(3, size=size), 0.0),
        "difference of lognormals": (lambda size: rng.lognormal(0, 1, size) - rng.lognormal(0, 1, size) + 0.3, 0.3),
        "lognormal σ 0.5": (lambda size: rng.lognormal(0, 0.5, size), float(np.exp(0.125))),
        "exponential": (lambda size: rng.exponential(size=size), 1.0),
        "60 % ties, exponential": (lambda size: np.where(rng.random(size) < 0.6, 0.0, rng.exponential(size=size)), 0.4),
        "Bernoulli 0.3": (lambda size: (rng.random(size) < 0.3).astype(float), 0.3),
        "−1 / 0 / +1": (lambda size: rng.choice([-1.0, 0.0, 1.0], p=[0.15, 0.5, 0.35], size=size), 0.2),
    }
    draw, truth = draws[kind]
    x = draw((reps, prompts, seeds))
    x = np.where(rng.random((reps, prompts, 1)) < rho, draw((reps, prompts, 1)), x)
    return x.sum(2), truth  # per-prompt sums over seeds (the table's numerators)


KINDS = ["normal", "t3", "difference of lognormals", "lognormal σ 0.5", "exponential", "60 % ties, exponential",
         "Bernoulli 0.3", "−1 / 0 / +1"]


def test_mean_difference_interval_covers_at_12_prompts():
    """Symmetric, heavy-tailed, skewed and tie-heavy per-prompt differences, 12 and 30 prompts, 1 or 3 seeds
    (correlated or not): coverage ≥ 0.93 in every cell (measured minimum 0.934 with 3 000 replications)."""
    rng = np.random.default_rng(11)
    reps, worst = 2000, (1.0, None)
    for prompts, (seeds, rho), kind in itertools.product([12, 30], [(1, 0.0), (3, 0.0), (3, 0.5)], KINDS):
        sums, truth = _per_prompt_differences(rng, kind, reps, prompts, seeds, rho)
        _, lo, hi = stats.cluster_t_interval(sums.T, np.full((prompts, reps), float(seeds)))
        coverage = float(np.mean((lo <= truth) & (truth <= hi)))
        if coverage < worst[0]:
            worst = (coverage, (prompts, seeds, rho, kind))
    assert worst[0] >= 0.93, worst


def test_percentile_bootstrap_of_the_mean_difference_was_the_defect():
    """The interval it replaces: the cluster percentile bootstrap under-covers skewed differences at 12 prompts."""
    rng = np.random.default_rng(12)
    reps = 1000
    sums, truth = _per_prompt_differences(rng, "60 % ties, exponential", reps, 12, 1, 0.0)
    weights = stats.bootstrap_weights(12, 400, np.random.default_rng(0))
    _, lo_old, hi_old = stats.cluster_bootstrap_ratio(sums.T, np.ones((12, reps)), weights=weights)
    _, lo, hi = stats.cluster_t_interval(sums.T, np.ones((12, reps)))
    old, new = np.mean((lo_old <= truth) & (truth <= hi_old)), np.mean((lo <= truth) & (truth <= hi))
    assert old < 0.86 and new >= 0.93, (old, new)


def test_cluster_t_interval_is_the_t_interval_on_prompt_means_for_symmetric_data():
    """Equal seeds per prompt and zero skewness: exactly Student's t on the per-prompt means (scipy)."""
    from scipy import stats as sps

    means = np.array([-1.5, -0.5, 0.5, 1.5, -1.0, 1.0, 0.0, -2.0, 2.0])  # symmetric: skewness 0
    est, lo, hi = stats.cluster_t_interval(means * 3, np.full(9, 3.0))
    ref = sps.t.interval(0.95, 8, loc=means.mean(), scale=sps.sem(means))
    assert est == pytest.approx(means.mean(), abs=1e-12)
    assert (lo, hi) == pytest.approx(ref, rel=1e-12)


def test_cluster_t_interval_leans_with_the_skewness_and_handles_unequal_clusters():
    from scipy import stats as sps

    means = np.array([0.0] * 9 + [3.0, 4.0, 5.0])  # right-skewed: the upper side must be the longer
    est, lo, hi = stats.cluster_t_interval(means, np.ones(12))
    assert hi - est > est - lo > 0
    # the long side is Hall's: his transformation H(T) = T + γ T²/(3√K) + γ² T³/(27K) + γ/(6√K) of
    # T = (r̂ − r)/se, written out directly, equals −t_{11} at the upper end
    k, se = 12, sps.sem(means)
    gamma = np.mean((means - means.mean()) ** 3) / np.std(means, ddof=1) ** 3
    t_up = (est - hi) / se
    h = t_up + gamma * t_up ** 2 / (3 * np.sqrt(k)) + gamma ** 2 * t_up ** 3 / (27 * k) + gamma / (6 * np.sqrt(k))
    assert h == pytest.approx(-sps.t.ppf(0.975, k - 1))
    assert est - lo == pytest.approx(sps.t.ppf(0.975, k - 1) * se)  # the short side is Student's (the hull)
    # prompts with different numbers of pairs: the ratio estimator Σ y / Σ n, a prompt without pairs takes no part
    num, den = np.array([2.0, 0.0, 3.0, 1.0, 0.0]), np.array([2.0, 1.0, 3.0, 1.0, 0.0])
    est, lo, hi = stats.cluster_t_interval(num, den)
    assert est == pytest.approx(6 / 7) and lo < est < hi
    assert np.isnan(stats.cluster_t_interval(np.array([1.0]), np.array([2.0]))[1])  # one prompt: no interval
    assert stats.cluster_t_interval(np.zeros(5), np.ones(5))[1:] == (0.0, 0.0)  # all tied: zero width


# -- families -----------------------------------------------------------------------------------------
def _sign_p(rng, reps, comparisons, prompts, win_rate):
    from scipy import stats as sps

    out = _simulate(rng, reps * comparisons, prompts, 2, win_rate, 0.3, 0.5)
    share = out.mean(2)
    wins, losses = (share > 0.5).sum(1), (share < 0.5).sum(1)
    return np.minimum(1.0, 2.0 * sps.binom.cdf(np.minimum(wins, losses), wins + losses, 0.5)).reshape(reps, comparisons)


def test_each_family_keeps_its_family_wise_error_and_the_primary_keeps_its_power():
    """5 variants: the primary family (5 comparisons) and a secondary family (5 × 6), each corrected on its own.

    Under the null each family's FWER stays ≤ α; with a true primary effect the primary verdicts are found
    more often than when all 35 comparisons share one Holm family (what the families are for).
    """
    rng = np.random.default_rng(21)
    reps, alpha = 2000, 0.05
    metrics = ["typ"] + [f"m{i}" for i in range(6)] + ["loglik"]
    families = stats.metric_families(metrics, primary="typ", diagnostic=["loglik"])
    assert families == {"typ": "primary", **{f"m{i}": "secondary" for i in range(6)}, "loglik": "diagnostic"}
    p_primary_null = _sign_p(rng, reps, 5, 48, 0.5)
    p_secondary_null = _sign_p(rng, reps, 30, 48, 0.5)
    mc = 2 * np.sqrt(alpha * (1 - alpha) / reps)
    for p in (p_primary_null, p_secondary_null):
        fwer = float(np.mean((np.array([stats.holm(row) for row in p]) <= alpha).any(axis=1)))
        assert fwer <= alpha + mc, fwer
    p_primary_effect = _sign_p(rng, reps, 5, 48, 0.65)
    own = np.array([stats.holm(row) for row in p_primary_effect])[:, 0] <= alpha
    shared = np.array([stats.holm(row)[0] for row in np.hstack([p_primary_effect, p_secondary_null])]) <= alpha
    assert own.mean() > shared.mean() + 0.05, (own.mean(), shared.mean())


def test_adjusted_pvalues_are_corrected_within_families_and_diagnostics_get_no_verdict():
    table = pd.DataFrame({"variant": ["a", "b", "a", "b", "a", "b"], "metric": ["typ", "typ", "m", "m", "ll", "ll"],
                          "p_sign": [0.01, 0.04, 0.01, 0.2, 0.001, 0.001], "p_wilcoxon": [0.02, 0.03, 0.5, 0.5, 0.001, 0.001],
                          "status": "tested"})
    out = stats.add_adjusted_pvalues(table, "holm", 0.05, stats.metric_families(["typ", "m", "ll"], "typ", ["ll"]))
    by = out.set_index(["variant", "metric"])
    assert by.loc[("a", "typ"), "p_sign_adj"] == pytest.approx(0.02) and by.loc[("b", "typ"), "p_sign_adj"] == pytest.approx(0.04)
    assert by.loc[("a", "m"), "p_sign_adj"] == pytest.approx(0.02) and by.loc[("b", "m"), "p_sign_adj"] == pytest.approx(0.2)
    assert list(by["family_size"]) == [2, 2, 2, 2, 0, 0]
    assert by.loc[("a", "ll"), "significant"] == False and np.isnan(by.loc[("a", "ll"), "p_sign_adj"])  # noqa: E712
    assert list(by["family"]) == ["primary", "primary", "secondary", "secondary", "diagnostic", "diagnostic"]
    one = stats.add_adjusted_pvalues(table, "holm", 0.05)  # no families: one family of all six, as before
    assert (one["family"] == "all").all() and (one["family_size"] == 6).all()
