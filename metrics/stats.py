"""Paired statistics of a variant against the baseline: win rates, ties, cluster bootstrap, tests.

Everything here is a pure function of the tidy ``scores`` table (one row per unit × metric, columns
``variant, prompt_id, seed, metric, value``) and plain numpy / pandas; randomness comes only from a
seeded ``numpy.random.Generator`` so that every interval is reproducible.

Definitions (see ``docs/report.md`` for the reader's version):

* **Pairing.** A variant's image and the baseline's image with the same ``(prompt_id, seed)`` start
  from the same random stream, so they form a pair. Only complete pairs enter the statistics.
* **Advantage.** ``diff = value(variant) − value(baseline)`` in the metric's own units; the
  *advantage* is ``diff`` oriented by the metric's ``higher_is_better`` (positive = variant better).
* **Outcome.** win (1) if ``advantage > tol``, loss (0) if ``advantage < −tol``, tie (½) if
  ``|advantage| ≤ tol`` (with ``tol = 0`` only exactly equal scores tie). The win rate is the mean
  outcome, i.e. ties count half, as AlpacaEval counts them; this is the usual reading of the win
  rates of "Bag of Design Choices" (arXiv 2411.10781) and Z-Sampling (arXiv 2412.10891), whose exact
  protocol is not spelled out in their abstracts.
* **Unit of analysis.** The independent unit is the distinct prompt *text* (column ``cluster``;
  ``prompt_id`` where a table has none): seeds of one prompt, and prompt ids that repeat a text, are
  correlated (identical text and seed give identical images), so they form one cluster.
* **Win-rate and tie-share intervals.** A Clopper–Pearson interval at the *effective* sample size
  ``n_eff = N / deff``, where the design effect ``deff`` compares the cluster-robust (linearised
  ratio-estimator) variance with the binomial one (Kish 1965; Korn & Graubard 1998, "Confidence
  intervals for proportions with small expected number of positive counts estimated from survey
  data"). ``n_eff`` is kept within [clusters, pairs], its range for non-negative intra-prompt
  correlation, so all-win or all-tie data never give a zero-width interval. Measured coverage is in
  ``docs/report.md`` and ``tests/test_stats_calibration.py``.
* **Mean-difference interval.** The mean Δ over pairs is a ratio Σ diff / Σ pairs over prompts; its
  interval (`cluster_t_interval`) is Student's t on the prompts' linearised residuals (with equal seeds
  per prompt: the t interval on per-prompt mean differences), widened where the residuals are skewed
  by Hall's (1992) transformation of the t statistic — the hull of both intervals. The percentile
  cluster bootstrap it replaces covered 0.82–0.92 at 12 prompts (all 24 cells below 0.93)
  (`tests/test_stats_calibration.py`). Bradley–Terry scores keep the cluster bootstrap, which
  resamples prompts with replacement and carries all seeds of a drawn prompt along (Davison &
  Hinkley 1997, §3.8 "hierarchical data"; Field & Welsh 2007).
* **Tests.** Sign test = ``scipy.stats.binomtest`` on wins vs losses, ties excluded (Dixon & Mood
  1946); Wilcoxon signed-rank = ``scipy.stats.wilcoxon`` with ``zero_method="wilcox"`` (zeros, i.e.
  ties within tolerance, dropped, consistently with the sign test), exact null distribution for at
  most 50 untied values without tied ranks, else the normal approximation with tie correction (the
  method is recorded). By default both work on one number per *prompt* (its mean outcome / mean
  advantage over seeds), because pairs from the same prompt are not independent. The verdict's
  direction comes from the sign test's own counts (prompts won vs lost), never from the pair-level
  win rate, so a verdict and its p-value always describe the same statistic.
* **Multiplicity.** Holm (1979) step-down family-wise correction within each *family* of the
  comparisons that were actually tested (missing comparisons are listed, not silently dropped):
  the primary metric's comparisons form one family and the other metrics' another
  (`metric_families`), so secondary metrics cost the primary metric no power; a diagnostic metric is
  in no family and gets no verdict. Benjamini–Hochberg (1995) false-discovery-rate control as an
  option, within the same families.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Iterable, Literal, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

PAIR_KEYS = ["prompt_id", "seed"]


# --------------------------------------------------------------------------------------------------
# pairing and outcomes


def outcomes(advantage: np.ndarray | Sequence[float], tolerance: float | np.ndarray = 0.0) -> np.ndarray:
    """Win 1, tie 0.5, loss 0 for oriented differences (positive = better); tie iff ``|a| <= tolerance``.

    ``tolerance``: one number, or one per difference (`paired_differences` passes each pair's metric's).
    """
    a = np.asarray(advantage, dtype=float)
    tol = 0.0 if tolerance is None else np.asarray(tolerance, dtype=float)
    return np.where(a > tol, 1.0, np.where(a < -tol, 0.0, 0.5))


def paired_differences(
    scores: pd.DataFrame,
    baseline: str | Mapping[str, str],
    higher_is_better: Mapping[str, bool],
    tie_tolerance: Mapping[str, float | None] | None = None,
) -> pd.DataFrame:
    """Match every non-baseline variant's score to its baseline's on ``(metric, prompt_id, seed)``.

    ``baseline``: the variant every other one is compared with, or a mapping variant → its own
    baseline (a sweep compares each point with the baseline at the same steps and guidance, so that
    the comparison of a design choice holds every other generation setting fixed; docs/sweeps.md).
    Each baseline's group is then paired on its own and the groups are stacked.

    Returns one row per pair with columns ``variant, metric, prompt_id, seed, value, baseline_value,
    diff`` (variant − baseline), ``advantage`` (diff oriented so that > 0 means the variant is
    better), ``outcome`` (`outcomes`: 1 / 0.5 / 0), and ``win, tie, loss`` indicators. Extra columns of
    ``scores`` that are constant per unit (e.g. ``category``) are carried along from the variant row.
    A metric missing from ``higher_is_better`` raises ``KeyError``: guessing a direction would
    silently flip a result. ``cluster`` (the unit of analysis) is carried from ``scores`` or set to
    ``prompt_id``; ``diff_beyond_tol`` is ``diff`` with ties (``|advantage| ≤ tol``) set to 0.
    """
    if isinstance(baseline, str):
        return _paired_with(scores, baseline, higher_is_better, tie_tolerance)
    parts = []
    for base in dict.fromkeys(baseline.values()):
        group = scores[scores["variant"].isin([v for v, b in baseline.items() if b == base])]
        if base in set(group["variant"]):
            parts.append(_paired_with(group, base, higher_is_better, tie_tolerance))
    if not parts:
        raise KeyError(f"no baseline of {sorted(set(baseline.values()))} has scores")
    return pd.concat(parts, ignore_index=True)


def _paired_with(
    scores: pd.DataFrame,
    baseline: str,
    higher_is_better: Mapping[str, bool],
    tie_tolerance: Mapping[str, float | None] | None = None,
) -> pd.DataFrame:
    """`paired_differences` against one baseline."""
    tie_tolerance = tie_tolerance or {}
    required = {"variant", "metric", "prompt_id", "seed", "value"}
    missing = required - set(scores.columns)
    if missing:
        raise KeyError(f"scores table lacks columns {sorted(missing)}")
    if baseline not in set(scores["variant"]):
        raise KeyError(f"baseline {baseline!r} has no scores (variants: {sorted(set(scores['variant']))})")
    unknown = sorted(set(scores["metric"]) - set(higher_is_better))
    if unknown:
        raise KeyError(f"no direction (higher_is_better) for metrics {unknown}")

    keys = ["metric", *PAIR_KEYS]
    base = scores.loc[scores["variant"] == baseline, [*keys, "value"]]
    if base.duplicated(keys).any():
        raise ValueError("baseline has more than one score for some (metric, prompt_id, seed)")
    base = base.rename(columns={"value": "baseline_value"})
    other = scores.loc[scores["variant"] != baseline]
    paired = other.merge(base, on=keys, how="inner", validate="many_to_one")
    paired = paired.dropna(subset=["value", "baseline_value"]).reset_index(drop=True)
    if "cluster" not in paired.columns:
        paired["cluster"] = paired["prompt_id"].astype(str)

    sign = paired["metric"].map(lambda m: 1.0 if higher_is_better[m] else -1.0).to_numpy(float)
    tol = paired["metric"].map(lambda m: float(tie_tolerance.get(m) or 0.0)).to_numpy(float)
    diff = paired["value"].to_numpy(float) - paired["baseline_value"].to_numpy(float)
    adv = sign * diff
    paired["diff"] = diff
    # the effect size respects the tie tolerance: differences the metric cannot resolve count as 0
    paired["diff_beyond_tol"] = np.where(np.abs(adv) <= tol, 0.0, diff)
    paired["advantage"] = adv
    paired["outcome"] = outcomes(adv, tol)
    paired["win"] = (adv > tol).astype(float)
    paired["tie"] = (np.abs(adv) <= tol).astype(float)
    paired["loss"] = (adv < -tol).astype(float)
    paired["tolerance"] = tol
    return paired


# --------------------------------------------------------------------------------------------------
# cluster bootstrap


def bootstrap_weights(n_clusters: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """How often each cluster is drawn in each of ``n_boot`` resamples: ``(n_boot, n_clusters)``.

    Equivalent to drawing ``n_clusters`` indices with replacement per resample; kept as counts so
    that any per-cluster sum is resampled with one matrix product (fast for thousands of prompts ×
    thousands of resamples, and memory-light: no ``(n_boot, n_clusters, groups)`` array).
    """
    if n_clusters == 0:
        return np.zeros((n_boot, 0))
    idx = rng.integers(0, n_clusters, size=(n_boot, n_clusters))
    flat = idx + (np.arange(n_boot)[:, None] * n_clusters)
    return np.bincount(flat.ravel(), minlength=n_boot * n_clusters).reshape(n_boot, n_clusters).astype(float)


def cluster_bootstrap_ratio(
    numerator: np.ndarray,
    denominator: np.ndarray,
    n_boot: int = 1000,
    rng: np.random.Generator | int | None = 0,
    confidence: float = 0.95,
    weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Percentile interval of ``Σ numerator / Σ denominator`` under resampling of clusters.

    ``numerator`` and ``denominator`` are per-cluster sums, shape ``(n_clusters,)`` or
    ``(n_clusters, k)`` for k statistics resampled with the *same* draws. E.g. per prompt: the sum of
    outcomes over its seeds and the number of its seeds gives the win rate; all seeds of a prompt
    move together. Returns ``(estimate, low, high)``, each of shape ``(k,)`` (or scalars' 0-d arrays).
    """
    num = np.asarray(numerator, dtype=float)
    den = np.asarray(denominator, dtype=float)
    squeeze = num.ndim == 1
    if squeeze:
        num, den = num[:, None], den[:, None]
    if weights is None:
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        weights = bootstrap_weights(num.shape[0], n_boot, rng)
    with np.errstate(invalid="ignore", divide="ignore"):
        est = num.sum(0) / den.sum(0)
        boot = (weights @ num) / (weights @ den)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = _nanquantiles(boot, [alpha, 1.0 - alpha])
    if squeeze:
        return est[0], lo[0], hi[0]
    return est, lo, hi


def _nanquantiles(boot: np.ndarray, qs: Sequence[float]) -> list[np.ndarray]:
    """Quantiles over axis 0, ignoring resamples where a statistic is undefined (0/0)."""
    out = []
    for q in qs:
        col = np.full(boot.shape[1], np.nan)
        ok = ~np.all(np.isnan(boot), axis=0)
        if ok.any():
            col[ok] = np.nanquantile(boot[:, ok], q, axis=0)
        out.append(col)
    return out


def cluster_t_interval(
    numerator: np.ndarray,
    denominator: np.ndarray,
    confidence: float = 0.95,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Interval of the ratio ``Σ numerator / Σ denominator`` over clusters: Student's t and Hall's skew-corrected t.

    ``numerator`` / ``denominator``: per-cluster sums (e.g. a prompt's summed differences and its
    number of pairs), shape ``(clusters,)`` or ``(clusters, k)``; clusters with denominator 0 take no
    part. With ``r̂`` the ratio, ``n̄ = N / K`` the mean cluster size and ``e_k = (y_k − r̂ n_k) / n̄``
    the linearised residuals (Cochran 1977, §6.9; with equal cluster sizes ``e_k`` is the cluster's
    mean minus ``r̂``), ``s² = Σ e_k² / (K − 1)`` and ``se = s / √K``:

    * Student: ``r̂ ± t_{K−1} · se`` — the t interval on per-prompt means when every prompt has as many
      seeds;
    * Hall (1992, "On the removal of skewness by transformation", JRSS B 54): with the skewness
      ``γ̂ = (Σ e_k³ / K) / s³``, the statistic ``T = (r̂ − r) / se`` transformed to
      ``H(T) = T + γ̂ T² / (3√K) + γ̂² T³ / (27 K) + γ̂ / (6√K)`` is free of the first-order effect of
      skewness and monotone; with ``a = γ̂ / (6√K)`` it is ``((1 + 2aT)³ − 1) / (6a) + a``, so
      inverting ``|H(T)| ≤ t_{K−1}`` gives ``[r̂ − H⁻¹(t) se, r̂ − H⁻¹(−t) se]`` with
      ``H⁻¹(y) = ((1 + 6a(y − a))^{1/3} − 1) / (2a)`` (the form Zhou & Dinh 2005 use for skewed means).

    The interval is the hull of the two: Hall's repairs the t interval's under-coverage when the
    per-prompt differences are skewed (ties and one-sided effects make them so), the t interval
    guards against Hall's when the skewness estimate is noise (symmetric heavy tails). Measured
    coverage at 12 prompts: ≥ 0.93 in every cell of ``tests/test_stats_calibration.py``.
    Returns ``(estimate, low, high)`` like `cluster_bootstrap_ratio`; NaN bounds with fewer than 2
    clusters, a zero-width interval when every residual is 0.
    """
    num = np.asarray(numerator, dtype=float)
    den = np.asarray(denominator, dtype=float)
    squeeze = num.ndim == 1
    if squeeze:
        num, den = num[:, None], den[:, None]
    used = den > 0
    k = used.sum(0).astype(float)
    total = den.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        est = num.sum(0) / total
        resid = np.where(used, (num - est[None, :] * den) / (total / k)[None, :], 0.0)
        s2 = (resid ** 2).sum(0) / (k - 1.0)
        se = np.sqrt(s2 / k)
        skew = np.where(s2 > 0, (resid ** 3).sum(0) / k / s2 ** 1.5, 0.0)
        a = skew / (6.0 * np.sqrt(k))
        t = sps.t.ppf(0.5 + confidence / 2.0, np.maximum(k - 1.0, 1.0))

        def h_inverse(y):
            safe = np.where(np.abs(a) > 1e-12, a, 1.0)
            return np.where(np.abs(a) > 1e-12, (np.cbrt(1.0 + 6.0 * safe * (y - a)) - 1.0) / (2.0 * safe), y - a)

        lo = np.minimum(est - t * se, est - h_inverse(t) * se)
        hi = np.maximum(est + t * se, est - h_inverse(-t) * se)
    few = ~(k >= 2)
    lo, hi = np.where(few, np.nan, lo), np.where(few, np.nan, hi)
    if squeeze:
        return est[0], lo[0], hi[0]
    return est, lo, hi


def proportion_interval(
    numerator: np.ndarray,
    denominator: np.ndarray,
    confidence: float = 0.95,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Clopper–Pearson interval of ``Σ numerator / Σ denominator`` at the clustered effective size.

    ``numerator`` / ``denominator``: per-cluster sums (e.g. outcomes with ties as ½, and pairs, per
    prompt), shape ``(clusters,)`` or ``(clusters, k)``. The ratio estimator's cluster-robust
    variance ``v = K/(K−1) · Σ_k (y_k − p̂ n_k)² / N²`` gives the design effect
    ``deff = v / (p̂(1−p̂)/N)`` and ``n_eff = N / deff`` (Kish 1965; Korn & Graubard 1998), here
    computed with two pseudo-prompts added (one all-win, one all-loss, of average size) so that
    it stays stable near 0 and 1, and scaled by Korn & Graubard's ``(z / t_{K−1})²``. ``n_eff``
    is then clipped to ``[K, N]`` — the range a proportion of N pairs in K prompts has when intra-prompt
    correlation is between 0 and 1 — which also covers the degenerate cases (all wins, all ties,
    one prompt) where ``v`` is 0. The exact binomial (Clopper–Pearson 1934) interval is then taken
    for ``p̂·n_eff`` successes out of ``n_eff`` (beta quantiles accept non-integer counts), so that
    it never has zero width and keeps its coverage near 0 and 1, where the Wald and percentile
    bootstrap intervals collapse. Returns ``(estimate, low, high, n_eff)``; NaN where ``N = 0``.
    """
    num = np.asarray(numerator, dtype=float)
    den = np.asarray(denominator, dtype=float)
    squeeze = num.ndim == 1
    if squeeze:
        num, den = num[:, None], den[:, None]
    clusters = (den > 0).sum(0).astype(float)
    total = den.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        est = num.sum(0) / total
        # The design effect is a ratio of two small numbers near p̂ = 0 or 1, and a few losing prompts
        # say little about how losses cluster. It is estimated with one pseudo-prompt of average size
        # that wins every seed and one that loses every seed added (Agresti & Coull's "add two" at the
        # prompt level), which pulls it towards the all-correlated case exactly where data are scarce.
        size = total / np.maximum(clusters, 1.0)
        num2 = np.concatenate([num, size[None, :], np.zeros_like(size)[None, :]])
        den2 = np.concatenate([den, size[None, :], size[None, :]])
        k2, n2 = clusters + 2.0, total + 2.0 * size
        p2 = num2.sum(0) / n2
        resid = num2 - p2[None, :] * den2
        v = k2 / (k2 - 1.0) * (resid ** 2).sum(0) / n2 ** 2
        deff = v / (p2 * (1.0 - p2) / n2)
        n_eff = np.where(deff > 0, total / deff, total)  # N when every pair ties (v = 0)
        alpha = 1.0 - confidence
        # Korn & Graubard's degrees-of-freedom factor: the variance comes from K prompts, not N pairs
        z, t = sps.norm.ppf(1.0 - alpha / 2.0), sps.t.ppf(1.0 - alpha / 2.0, np.maximum(clusters - 1.0, 1.0))
        n_eff = np.clip(n_eff * (z / t) ** 2, clusters, total)  # one seed per prompt: exactly N
        x = est * n_eff
        lo = np.where(x > 0, sps.beta.ppf(alpha / 2.0, x, n_eff - x + 1.0), 0.0)
        hi = np.where(x < n_eff, sps.beta.ppf(1.0 - alpha / 2.0, x + 1.0, n_eff - x), 1.0)
    bad = ~(total > 0)
    lo, hi, n_eff = np.where(bad, np.nan, lo), np.where(bad, np.nan, hi), np.where(bad, np.nan, n_eff)
    if squeeze:
        return est[0], lo[0], hi[0], n_eff[0]
    return est, lo, hi, n_eff


def stratum_rng(seed: int, key: object) -> np.random.Generator:
    """A generator for one stratum (e.g. a category) that does not depend on the order of strata."""
    return np.random.default_rng([int(seed), zlib.crc32(repr(key).encode())])


# --------------------------------------------------------------------------------------------------
# tests


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test: ``binomtest(wins, wins + losses, 0.5)``; ties are excluded beforehand.

    Returns 1.0 when there is no untied pair (no evidence either way).
    """
    n = int(wins) + int(losses)
    if n == 0:
        return 1.0
    return float(sps.binomtest(int(wins), n, 0.5, alternative="two-sided").pvalue)


def sign_test_min_p(n_untied: int) -> float:
    """The smallest two-sided p the exact sign test can give with ``n_untied`` untied units: ``2 · 2^-n``.

    With 4 untied prompts it is 0.125: no outcome can be significant at 0.05, and a report must say
    "cannot be detected with this many prompts" rather than "no detectable difference".
    """
    n = int(n_untied)
    return 1.0 if n <= 0 else float(min(1.0, 2.0 * 0.5 ** n))


WILCOXON_EXACT_MAX_N = 50


def wilcoxon_signed_rank(advantage: np.ndarray | Sequence[float], tolerance: float = 0.0) -> tuple[float, str]:
    """Two-sided Wilcoxon signed-rank test of oriented differences; ``|a| <= tolerance`` counts as 0.

    Zeros are dropped (Wilcoxon's own convention, SciPy's ``zero_method="wilcox"``) so that the test
    uses the same untied units as the sign test. The null distribution is exact for at most
    ``WILCOXON_EXACT_MAX_N`` values without tied absolute values (SciPy's own "auto" rule), otherwise
    the normal approximation with the tie correction of the variance (Lehmann 1975, §4.1) is used.
    Returns ``(p, method)`` with method ``"exact"``, ``"normal approx., tie-corrected"`` or
    ``"none"`` (no untied value: p = 1).
    """
    a = np.asarray(advantage, dtype=float)
    a = a[~np.isnan(a)]
    a = a[np.abs(a) > float(tolerance or 0.0)]
    if a.size == 0:
        return 1.0, "none"
    tied_ranks = np.unique(np.abs(a)).size < a.size
    if a.size <= WILCOXON_EXACT_MAX_N and not tied_ranks:
        res = sps.wilcoxon(a, zero_method="wilcox", alternative="two-sided", method="exact")
        return float(res.pvalue), "exact"
    res = sps.wilcoxon(a, zero_method="wilcox", alternative="two-sided", method="approx", correction=False)
    return float(res.pvalue), "normal approx., tie-corrected"


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values; NaNs stay NaN and do not count in the family.

    Sorted ascending, ``p̃_(i) = max_{j ≤ i} min(1, (m − j + 1) p_(j))``; reject where ``p̃ ≤ α``
    controls the family-wise error rate at α under any dependence.
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    m = int(ok.sum())
    if m == 0:
        return out
    pv = p[ok]
    order = np.argsort(pv, kind="mergesort")
    factors = m - np.arange(m)
    adj = np.minimum(1.0, np.maximum.accumulate(factors * pv[order]))
    res = np.empty(m)
    res[order] = adj
    out[ok] = res
    return out


def benjamini_hochberg(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg (1995) adjusted p-values (FDR); NaNs stay NaN and do not count.

    Sorted ascending, ``p̃_(i) = min_{j ≥ i} min(1, m p_(j) / j)``; equals
    ``scipy.stats.false_discovery_control(p, method="bh")``.
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    m = int(ok.sum())
    if m == 0:
        return out
    pv = p[ok]
    order = np.argsort(pv, kind="mergesort")
    ranks = np.arange(1, m + 1)
    adj = np.minimum.accumulate((m * pv[order] / ranks)[::-1])[::-1]
    res = np.empty(m)
    res[order] = np.minimum(1.0, adj)
    out[ok] = res
    return out


def adjust_pvalues(pvalues: Sequence[float] | np.ndarray, method: Literal["holm", "bh", "none"] = "holm") -> np.ndarray:
    """Dispatch to `holm`, `benjamini_hochberg`, or no correction."""
    if method == "holm":
        return holm(pvalues)
    if method in ("bh", "fdr_bh", "benjamini-hochberg"):
        return benjamini_hochberg(pvalues)
    if method == "none":
        return np.asarray(pvalues, dtype=float).copy()
    raise ValueError(f"unknown correction {method!r}; known: holm, bh, none")


# --------------------------------------------------------------------------------------------------
# the table


_SUMS = ["n", "win", "tie", "loss", "outcome", "diff", "diff_beyond_tol", "advantage", "value", "baseline_value"]

TABLE_COLUMNS = ["n_prompts", "n_pairs", "wins", "ties", "losses", "win_rate", "win_rate_lo", "win_rate_hi",
                 "win_rate_n_eff", "tie_share", "tie_share_lo", "tie_share_hi", "mean_value", "mean_baseline",
                 "mean_diff", "mean_diff_lo", "mean_diff_hi", "mean_diff_raw", "tie_tolerance", "test_unit",
                 "test_wins", "test_losses", "direction", "p_sign", "p_sign_min", "p_wilcoxon", "wilcoxon_method",
                 "status"]


def win_rate_table(
    paired: pd.DataFrame,
    by: Iterable[str] = (),
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    test_unit: Literal["prompt", "pair"] = "prompt",
    expected: Iterable[tuple[str, str]] = (),
) -> pd.DataFrame:
    """Win rate, tie share, effect size, intervals and tests per ``(variant, metric, *by)``.

    ``paired`` comes from `paired_differences`; its ``cluster`` column (distinct prompt text) is the
    unit of analysis. Columns of the result:

    * ``n_prompts`` (clusters), ``n_pairs, wins, ties, losses`` (pair counts), ``win_rate`` (ties
      half) with ``win_rate_lo/hi`` and ``win_rate_n_eff`` (see `proportion_interval`), ``tie_share``
      with ``tie_share_lo/hi``;
    * ``mean_value, mean_baseline``, ``mean_diff`` (variant − baseline in metric units, differences
      within the tie tolerance counted as 0) with ``mean_diff_lo/hi`` (`cluster_t_interval` over
      prompts), and ``mean_diff_raw`` (no tolerance);
    * ``test_wins, test_losses`` (units the tests see), ``direction`` ("better" / "worse" / "even",
      from those counts), ``p_sign`` with ``p_sign_min`` (the smallest p reachable with that many
      untied units), ``p_wilcoxon`` with ``wilcoxon_method``; unadjusted (see `add_adjusted_pvalues`);
    * ``status``: "tested", or "missing" for a pair ``(variant, metric)`` of ``expected`` without a
      single complete pair (all its scores NaN, say) — such rows have NaN statistics.

    Strata are the values of ``by`` (prompts within a category or seed); ``n_boot`` and ``seed`` are
    kept for callers and no longer used here (no interval of this table resamples).
    ``test_unit="prompt"`` tests one number per prompt (mean over its seeds), ``"pair"`` every pair.
    """
    if test_unit not in ("prompt", "pair"):
        raise ValueError(f"test_unit must be 'prompt' or 'pair', not {test_unit!r}")
    by = list(by)
    keys = ["variant", "metric", *by]
    frame = paired.assign(n=1.0)
    if "cluster" not in frame.columns:
        frame["cluster"] = frame["prompt_id"].astype(str)
    if "diff_beyond_tol" not in frame.columns:
        frame["diff_beyond_tol"] = frame["diff"]
    rows: list[dict] = []
    for stratum, sub in (frame.groupby(by, sort=True, dropna=False) if by else [((), frame)]):
        rows += _stratum_rows(sub, keys, confidence, test_unit)
    present = {(r["variant"], r["metric"]) for r in rows}
    rows += [{"variant": variant, "metric": metric, "n_prompts": 0, "n_pairs": 0, "wins": 0, "ties": 0, "losses": 0,
              "test_unit": test_unit, "test_wins": 0, "test_losses": 0, "direction": "", "wilcoxon_method": "none",
              "status": "missing"}
             for variant, metric in expected if (variant, metric) not in present]
    return pd.DataFrame(rows, columns=[*keys, *TABLE_COLUMNS])


def _stratum_rows(sub: pd.DataFrame, keys: list[str], confidence: float, test_unit: str) -> list[dict]:
    """`win_rate_table`'s rows for one stratum: every group of ``keys`` over the stratum's prompts."""
    per_prompt = sub.groupby([*keys, "cluster"], sort=True, dropna=False)[_SUMS].sum()
    groups = per_prompt.index.droplevel("cluster").unique()
    wide = {c: per_prompt[c].unstack(keys).reindex(columns=groups).fillna(0.0) for c in _SUMS}
    den = wide["n"].to_numpy()
    win, win_lo, win_hi, win_neff = proportion_interval(wide["outcome"].to_numpy(), den, confidence)
    tie, tie_lo, tie_hi, _ = proportion_interval(wide["tie"].to_numpy(), den, confidence)
    dif, dif_lo, dif_hi = cluster_t_interval(wide["diff_beyond_tol"].to_numpy(), den, confidence)
    pair_rows = dict(list(sub.groupby(keys, sort=False, dropna=False)))
    # one pass over the groups (xs per group is quadratic in the number of variants)
    prompt_rows = {g: f for g, f in per_prompt.groupby(level=keys, sort=False, dropna=False)}
    rows = []
    for gi, g in enumerate(groups):
        # keys has at least (variant, metric), so group labels are tuples
        pp = prompt_rows[g]
        pp = pp[pp["n"] > 0]
        n_pairs = float(pp["n"].sum())
        rows.append({
            **dict(zip(keys, g)),
            "n_prompts": int(len(pp)),
            "n_pairs": int(n_pairs),
            "wins": int(pp["win"].sum()),
            "ties": int(pp["tie"].sum()),
            "losses": int(pp["loss"].sum()),
            "win_rate": win[gi], "win_rate_lo": win_lo[gi], "win_rate_hi": win_hi[gi], "win_rate_n_eff": win_neff[gi],
            "tie_share": tie[gi], "tie_share_lo": tie_lo[gi], "tie_share_hi": tie_hi[gi],
            "mean_value": float(pp["value"].sum() / n_pairs),
            "mean_baseline": float(pp["baseline_value"].sum() / n_pairs),
            "mean_diff": dif[gi], "mean_diff_lo": dif_lo[gi], "mean_diff_hi": dif_hi[gi],
            "mean_diff_raw": float(pp["diff"].sum() / n_pairs),
            **_paired_tests(pp, pair_rows[g], test_unit),
            "status": "tested",
        })
    return rows


def _paired_tests(per_prompt: pd.DataFrame, pairs: pd.DataFrame, test_unit: str) -> dict:
    """Sign test and Wilcoxon signed-rank on one number per prompt (its mean outcome and mean advantage), or per pair.

    The verdict's direction comes from the sign test's own counts, so it and its p-value describe one statistic.
    """
    tol = float(pairs["tolerance"].iloc[0]) if len(pairs) else 0.0
    if test_unit == "prompt":
        share = per_prompt["outcome"].to_numpy() / per_prompt["n"].to_numpy()
        wins, losses = int((share > 0.5).sum()), int((share < 0.5).sum())
        advantage = per_prompt["advantage"].to_numpy() / per_prompt["n"].to_numpy()
    else:
        wins, losses = int(pairs["win"].sum()), int(pairs["loss"].sum())
        advantage = pairs["advantage"].to_numpy()
    p_wilcoxon, method = wilcoxon_signed_rank(advantage, tol)
    return {"tie_tolerance": tol, "test_unit": test_unit, "test_wins": wins, "test_losses": losses,
            "direction": "better" if wins > losses else "worse" if losses > wins else "even",
            "p_sign": sign_test(wins, losses), "p_sign_min": sign_test_min_p(wins + losses),
            "p_wilcoxon": p_wilcoxon, "wilcoxon_method": method}


PRIMARY, SECONDARY, DIAGNOSTIC, ALL = "primary", "secondary", "diagnostic", "all"


def metric_families(metrics: Iterable[str], primary: str | None = None,
                    diagnostic: Iterable[str] = ()) -> dict[str, str]:
    """The multiple-testing family of each metric: ``primary``, ``secondary`` or ``diagnostic``.

    The primary metric (the one the report's headline is about) is a family of its own, so that the
    verdicts the headline states are corrected only for the comparisons it makes (one per variant)
    and secondary metrics cost it no power; every other metric is in the secondary family; a
    diagnostic (a metric whose direction is not a verdict on quality, e.g. the world's raw
    log-likelihood) is in none — unless it is the primary metric itself, which a user chose to be
    tested. Without a primary metric every non-diagnostic metric is in one family, ``all``.
    """
    diagnostic = set(diagnostic)
    rest = SECONDARY if primary is not None else ALL
    return {m: PRIMARY if m == primary else DIAGNOSTIC if m in diagnostic else rest for m in metrics}


def add_adjusted_pvalues(
    table: pd.DataFrame,
    method: Literal["holm", "bh", "none"] = "holm",
    alpha: float = 0.05,
    families: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Add ``family``, ``p_sign_adj``, ``p_wilcoxon_adj``, ``family_size`` and ``significant``.

    ``families`` maps each metric to its family (`metric_families`); without it every comparison is
    in one family. Each family is every comparison of it that was tested (``status == "tested"``;
    missing comparisons have no p-value and are not part of it), corrected on its own; ``family_size``
    states its size. Comparisons on a ``diagnostic`` metric get no adjusted p-value and are never
    significant. Each test is corrected within its own family. ``significant`` is decided by the
    adjusted sign test, the test whose counts give the verdict's direction.
    """
    out = table.copy()
    tested = out["status"].eq("tested") if "status" in out.columns else pd.Series(True, index=out.index)
    families = dict(families or {})
    # a metric the mapping does not name joins the other non-primary metrics
    rest = SECONDARY if PRIMARY in families.values() else ALL
    family = out["metric"].map(lambda m: families.get(m, rest)).astype(str) if "metric" in out.columns \
        else pd.Series(rest, index=out.index)
    out["family"] = family
    out["p_sign_adj"] = np.nan
    out["p_wilcoxon_adj"] = np.nan
    out["family_size"] = 0
    for name in family.unique():
        rows = family == name
        if name == DIAGNOSTIC:
            continue
        p_sign = np.where(tested[rows], out.loc[rows, "p_sign"].to_numpy(float), np.nan)
        p_wil = np.where(tested[rows], out.loc[rows, "p_wilcoxon"].to_numpy(float), np.nan)
        out.loc[rows, "p_sign_adj"] = adjust_pvalues(p_sign, method)
        out.loc[rows, "p_wilcoxon_adj"] = adjust_pvalues(p_wil, method)
        out.loc[rows, "family_size"] = int(np.isfinite(p_sign).sum())
    out["correction"] = method
    out["alpha"] = alpha
    out["significant"] = (out["p_sign_adj"] <= alpha).fillna(False).astype(bool) & tested & (family != DIAGNOSTIC)
    return out


@dataclass
class BaselineComparison:
    """Every variant against its baseline: what `compare_to_baseline` computed, step by step."""

    scores: pd.DataFrame   # the checked score table (`metrics.validation`), with its ``cluster`` column
    notes: list[str]       # what the checks dropped or merged, for the reader
    paired: pd.DataFrame   # one row per pair (`paired_differences`)
    table: pd.DataFrame    # one row per variant × metric (`win_rate_table`, then `add_adjusted_pvalues`)


def compare_to_baseline(
    scores: pd.DataFrame,
    baseline: str | Mapping[str, str],
    higher_is_better: Mapping[str, bool],
    tie_tolerance: Mapping[str, float | None] | None = None,
    *,
    prompt_text: Mapping[str, str] | None = None,
    variants: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    correction: Literal["holm", "bh", "none"] = "holm",
    alpha: float = 0.05,
    test_unit: Literal["prompt", "pair"] = "prompt",
    primary_metric: str | None = None,
    diagnostic_metrics: Iterable[str] = (),
) -> BaselineComparison:
    """The headline statistics: `validate_scores` → `paired_differences` → `win_rate_table` → `add_adjusted_pvalues`.

    The report's win-rate table is exactly this (bench/report/tables.py). ``baseline`` as in
    `paired_differences`; ``prompt_text`` (prompt id → text) makes distinct texts the unit of
    analysis. Every variant of ``variants`` that is not a baseline is expected on every metric of
    ``metrics`` (both default to their order of appearance in ``scores``); one without any complete
    pair appears with ``status == "missing"`` and is left out of the correction's family.
    ``primary_metric`` and ``diagnostic_metrics`` set the families of the correction
    (`metric_families`). Validation errors raise `UserError`.
    """
    from .validation import validate_scores

    scores, notes = validate_scores(scores, prompt_text)
    paired = paired_differences(scores, baseline, higher_is_better, tie_tolerance)
    baselines = {baseline} if isinstance(baseline, str) else set(baseline.values())
    variants = list(dict.fromkeys(scores["variant"])) if variants is None else list(variants)
    metrics = list(dict.fromkeys(scores["metric"])) if metrics is None else list(metrics)
    expected = [(v, m) for v in variants if v not in baselines for m in metrics]
    table = win_rate_table(paired, n_boot=n_boot, seed=seed, confidence=confidence, test_unit=test_unit,
                           expected=expected)
    families = metric_families(metrics, primary_metric, diagnostic_metrics)
    return BaselineComparison(scores, notes, paired, add_adjusted_pvalues(table, correction, alpha, families))


def format_p(p: float) -> str:
    """p-values as a reviewer expects them: 3 significant digits, ``< 0.001`` below that."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "n/a"
    if p < 0.001:
        return "< 0.001"
    return f"{p:.3f}" if p < 0.1 else f"{p:.2f}"
