"""All variants at once: pairwise win-rate matrix and a Bradley–Terry ranking with bootstrap intervals.

Every ``(prompt_id, seed)`` unit scored for two variants is one *battle* between them on a metric:
the better-scoring variant wins, ``|Δ| ≤ tol`` is a tie that counts half for each side (as Chatbot
Arena counts ties, arXiv 2403.04132 §5 and its notebook). From the battle counts:

* the **pairwise matrix** ``M[i, j]`` = share of battles variant i wins against j (ties half);
* the **Bradley–Terry** model ``P(i beats j) = γ_i / (γ_i + γ_j)`` (Bradley & Terry 1952), fitted by
  maximum likelihood with Hunter's (2004) MM algorithm, which increases the likelihood monotonically
  and needs no step size; reported on Arena's Elo-like scale ``1000 + 400·log10(γ_i / γ_baseline)``;
* **intervals** from a cluster bootstrap over prompts (all seeds and all battles of a prompt move
  together), percentile 2.5–97.5 % (Arena uses 100 rounds; the default here is more, as the fit is
  cheap);
* the **Arena rank** = 1 + the number of variants whose lower bound is above this variant's upper
  bound, so variants whose intervals overlap share a rank.

Battles are grouped by distinct prompt text (the ``cluster`` column of a validated table, see
`metrics.validation`), so the bootstrap resamples independent prompts, not copies of one.

Pooled over metrics, each metric's battles count once; a metric with more ties contributes the same
number of battles, so pooling weighs metrics equally per unit.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .stats import bootstrap_weights, stratum_rng

ELO_SCALE = 400.0 / math.log(10.0)  # Arena: 400 points per factor 10 in odds
ELO_ANCHOR = 1000.0


def battle_tensor(
    scores: pd.DataFrame,
    metric: str,
    variants: Sequence[str],
    higher_is_better: bool = True,
    tie_tolerance: float | None = 0.0,
    prompts: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Per-prompt battle counts for one metric.

    Returns ``(wins, games, prompts)`` with ``wins[p, i, j]`` = Σ over the seeds of prompt p of
    (1 if i beats j, ½ if tied) and ``games[p, i, j]`` = number of units of p scored for both i and j.
    ``prompts`` fixes the row order (e.g. the union over metrics, for pooling). Rows are prompts
    in the sense of the unit of analysis: the ``cluster`` column (distinct prompt text) where
    ``scores`` has one, else ``prompt_id``; a bootstrap resamples these rows.
    """
    tol = float(tie_tolerance or 0.0)
    sub = scores.loc[scores["metric"] == metric]
    wide = sub.pivot_table(index=["prompt_id", "seed"], columns="variant", values="value", aggfunc="first")
    wide = wide.reindex(columns=list(variants))
    sign = 1.0 if higher_is_better else -1.0
    v = sign * wide.to_numpy(float)  # (units, k), NaN where a variant lacks that unit
    d = v[:, :, None] - v[:, None, :]
    valid = ~np.isnan(d)
    outcome = np.where(d > tol, 1.0, np.where(d < -tol, 0.0, 0.5))
    outcome = np.where(valid, outcome, 0.0)
    k = len(variants)
    eye = np.eye(k, dtype=bool)
    outcome[:, eye] = 0.0
    valid[:, eye] = False
    unit_prompts = wide.index.get_level_values("prompt_id").astype(str)
    if "cluster" in sub.columns:  # the unit of analysis: prompt ids that share a text are one prompt
        text = sub.drop_duplicates("prompt_id").set_index(sub.drop_duplicates("prompt_id")["prompt_id"].astype(str))["cluster"]
        unit_prompts = pd.Index(text.reindex(unit_prompts).to_numpy()).astype(str)
    prompt_list = list(prompts) if prompts is not None else sorted(set(unit_prompts))
    pos = pd.Index(prompt_list).get_indexer(unit_prompts)
    if (pos < 0).any():
        raise KeyError("a scored prompt is missing from the given prompt order")
    wins = np.zeros((len(prompt_list), k, k))
    games = np.zeros((len(prompt_list), k, k))
    np.add.at(wins, pos, outcome)
    np.add.at(games, pos, valid.astype(float))
    return wins, games, prompt_list


def pairwise_matrix(wins: np.ndarray, games: np.ndarray, variants: Sequence[str]) -> pd.DataFrame:
    """Row variant's win rate against the column variant (ties half); NaN where they never met."""
    w = wins.sum(0) if wins.ndim == 3 else wins
    n = games.sum(0) if games.ndim == 3 else games
    with np.errstate(invalid="ignore", divide="ignore"):
        m = np.where(n > 0, w / n, np.nan)
    np.fill_diagonal(m, np.nan)
    return pd.DataFrame(m, index=list(variants), columns=list(variants))


def fit_bradley_terry(
    wins: np.ndarray,
    prior: float = 0.5,
    max_iter: int = 10_000,
    tol: float = 1e-9,
) -> np.ndarray:
    """Bradley–Terry log-strengths θ (mean zero) from win counts ``wins[..., i, j]`` (ties as ½ each way).

    Hunter's (2004) MM update ``γ_i ← W_i / Σ_j n_ij / (γ_i + γ_j)`` with ``W_i = Σ_j w_ij`` and
    ``n_ij = w_ij + w_ji``, vectorised over any leading batch axes (bootstrap resamples).
    ``prior`` adds that many wins each way to every pair that met (one virtual tie for 0.5): the MLE
    does not exist when a variant never wins (Hunter 2004, Assumption 1), and the prior keeps θ
    finite while moving it by O(prior / n_ij) only. Use ``prior=0`` for the plain MLE.
    """
    w = np.asarray(wins, dtype=float)
    k = w.shape[-1]
    met = (w + np.swapaxes(w, -1, -2)) > 0
    w = w + prior * met
    eye = np.eye(k, dtype=bool)
    w = np.where(eye, 0.0, w)
    n = w + np.swapaxes(w, -1, -2)
    total_wins = w.sum(-1)
    gamma = np.ones(w.shape[:-1])
    for _ in range(max_iter):
        denom = (n / (gamma[..., :, None] + gamma[..., None, :])).sum(-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            new = np.where(denom > 0, total_wins / denom, gamma)
        # normalise to geometric mean 1 (the model is invariant to a common factor)
        new = new / np.exp(np.mean(np.log(np.maximum(new, 1e-300)), axis=-1, keepdims=True))
        change = np.max(np.abs(np.log(np.maximum(new, 1e-300)) - np.log(np.maximum(gamma, 1e-300))))
        gamma = new
        if change < tol:
            break
    theta = np.log(np.maximum(gamma, 1e-300))
    return theta - theta.mean(-1, keepdims=True)


def bradley_terry_table(
    wins: np.ndarray,
    games: np.ndarray,
    variants: Sequence[str],
    baseline: str | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    prior: float = 0.5,
    stratum: object = "bt",
) -> pd.DataFrame:
    """Bradley–Terry scores, percentile bootstrap intervals over prompts, and the Arena rank.

    ``wins, games`` are per-prompt tensors from `battle_tensor` (summed over metrics for a pooled
    ranking). Columns: ``variant, theta`` (natural-log strength, mean zero), ``score`` (Elo-like:
    ``1000 + 400·log10`` odds, shifted so the baseline's point estimate is 1000), ``score_lo/hi``,
    ``win_prob_vs_baseline`` (model-implied), ``battles``, ``rank``; sorted by score.
    Each resample is centred (mean θ = 0) before the shift, so the baseline keeps its own interval.
    """
    variants = list(variants)
    theta = fit_bradley_terry(wins.sum(0), prior=prior)
    rng = stratum_rng(seed, stratum)
    weights = bootstrap_weights(wins.shape[0], n_boot, rng)
    boot_wins = np.einsum("bp,pij->bij", weights, wins, optimize=True)
    boot_theta = fit_bradley_terry(boot_wins, prior=prior)
    ref = theta[variants.index(baseline)] if baseline in variants else 0.0
    score = ELO_ANCHOR + ELO_SCALE * (theta - ref)
    boot_score = ELO_ANCHOR + ELO_SCALE * (boot_theta - ref)
    alpha = (1.0 - confidence) / 2.0
    lo = np.quantile(boot_score, alpha, axis=0)
    hi = np.quantile(boot_score, 1.0 - alpha, axis=0)
    table = pd.DataFrame({
        "variant": variants,
        "theta": theta,
        "score": score,
        "score_lo": lo,
        "score_hi": hi,
        "win_prob_vs_baseline": 1.0 / (1.0 + np.exp(-(theta - ref))),
        "battles": games.sum(0).sum(1) if games.ndim == 3 else games.sum(1),
    })
    # a variant without a single battle (e.g. never scored on this metric) has no strength: say so
    absent = table["battles"].to_numpy() == 0
    table.loc[absent, ["theta", "score", "score_lo", "score_hi", "win_prob_vs_baseline"]] = np.nan
    ranks = arena_rank(table["score_lo"].to_numpy(), table["score_hi"].to_numpy()).astype(float)
    ranks[absent] = np.nan
    table["rank"] = pd.array(np.where(absent, pd.NA, ranks), dtype="Int64") if absent.any() else ranks.astype(int)
    return table.sort_values(["rank", "score"], ascending=[True, False], na_position="last").reset_index(drop=True)


def arena_rank(lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Chatbot Arena's rank: 1 + number of others whose lower bound exceeds this one's upper bound."""
    lower = np.asarray(lower, dtype=float)
    upper = np.asarray(upper, dtype=float)
    return 1 + (lower[None, :] > upper[:, None]).sum(axis=1)


def rank_all(
    scores: pd.DataFrame,
    variants: Sequence[str],
    higher_is_better: Mapping[str, bool],
    tie_tolerance: Mapping[str, float | None] | None = None,
    baseline: str | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    prior: float = 0.5,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pairwise matrices and Bradley–Terry tables for every per-image metric and pooled ("all").

    Returns ``(pairwise, bradley_terry)``, both long: ``pairwise`` has ``metric, variant, opponent,
    win_rate, wins, games``; ``bradley_terry`` has ``metric`` plus the columns of
    `bradley_terry_table`. The pooled rows have ``metric == "all"``.
    """
    tie_tolerance = tie_tolerance or {}
    variants = list(variants)
    metrics = [m for m in higher_is_better if m in set(scores["metric"])]
    prompts = sorted(set((scores["cluster"] if "cluster" in scores.columns else scores["prompt_id"]).astype(str)))
    pw_rows, bt_tables = [], []
    pooled_w = np.zeros((len(prompts), len(variants), len(variants)))
    pooled_n = np.zeros_like(pooled_w)
    for metric in metrics:
        w, n, _ = battle_tensor(scores, metric, variants, higher_is_better[metric],
                                tie_tolerance.get(metric), prompts)
        pooled_w += w
        pooled_n += n
        pw_rows.append(_long_pairwise(metric, w, n, variants))
        bt = bradley_terry_table(w, n, variants, baseline, n_boot, seed, confidence, prior, stratum=("bt", metric))
        bt.insert(0, "metric", metric)
        bt_tables.append(bt)
    if len(metrics) > 1:
        pw_rows.append(_long_pairwise("all", pooled_w, pooled_n, variants))
        bt = bradley_terry_table(pooled_w, pooled_n, variants, baseline, n_boot, seed, confidence, prior,
                                 stratum=("bt", "all"))
        bt.insert(0, "metric", "all")
        bt_tables.append(bt)
    return pd.concat(pw_rows, ignore_index=True), pd.concat(bt_tables, ignore_index=True)


def _long_pairwise(metric: str, wins: np.ndarray, games: np.ndarray, variants: Sequence[str]) -> pd.DataFrame:
    m = pairwise_matrix(wins, games, variants)
    w, n = wins.sum(0), games.sum(0)
    rows = [{"metric": metric, "variant": a, "opponent": b, "win_rate": m.iloc[i, j], "wins": w[i, j], "games": n[i, j]}
            for i, a in enumerate(variants) for j, b in enumerate(variants) if i != j]
    return pd.DataFrame(rows, columns=["metric", "variant", "opponent", "win_rate", "wins", "games"])
