"""Every number of the report, as tables computed from a loaded run (and written to ``tables/*.csv``).

The statistics themselves live in `metrics.stats` and `metrics.ranking`; this module decides which
comparisons a report makes and in what order, and writes the one-line readings.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from metrics import ranking, stats

from ..rundir.store import atomic_write_csv
from . import pairing
from .cost import cost_table
from .rundir import Run


@dataclass
class ReportTables:
    win_rates: pd.DataFrame            # variant × per-image metric vs baseline, adjusted p-values
    headline: pd.DataFrame             # one row per variant, sorted by win rate on the primary metric
    metric_summary: pd.DataFrame       # mean / std / n per variant × metric (baseline included)
    breakdown_by_category: pd.DataFrame
    breakdown_by_seed: pd.DataFrame
    pairwise: pd.DataFrame
    bradley_terry: pd.DataFrame
    cost: pd.DataFrame
    set_metrics: pd.DataFrame          # category "" rows; value, std, n
    set_metrics_by_category: pd.DataFrame
    paired: pd.DataFrame = field(repr=False, default=None)  # pair-level differences (for plots and the grid)

    def csv_tables(self) -> dict[str, pd.DataFrame]:
        return {
            "win_rates": self.win_rates, "headline": self.headline, "metric_summary": self.metric_summary,
            "breakdown_by_category": self.breakdown_by_category, "breakdown_by_seed": self.breakdown_by_seed,
            "pairwise": self.pairwise, "bradley_terry": self.bradley_terry, "cost": self.cost,
            "set_metrics": self.set_metrics, "set_metrics_by_category": self.set_metrics_by_category,
            "paired_differences": self.paired,
        }

    def write(self, out_dir: Path) -> dict[str, Path]:
        paths = {}
        for name, df in self.csv_tables().items():
            # atomic replace: a link planted at the path is replaced, never written through
            paths[f"tables/{name}"] = atomic_write_csv(out_dir / f"{name}.csv", df, float_format="%.6g")
        return paths


CORRECTION_NAMES = {"holm": "Holm", "bh": "Benjamini–Hochberg", "none": "no"}


def _fmt_pct(x: float) -> str:
    return "n/a" if x is None or np.isnan(x) else f"{100 * x:.0f}"


def reading(row: pd.Series, baseline: str, metric_name: str, unit: str, correction: str, alpha: float) -> str:
    """One sentence per comparison whose verdict and p-value describe the same statistic.

    The direction comes from the sign test's own counts (prompts won vs lost, ``direction``), never
    from the pair-level win rate, which is reported beside it, e.g. "better than vanilla on HPS v2.1:
    won 30, lost 12 of 48 prompts (6 tied), p = 0.02 after Holm; win rate 64 % [55, 72] of pairs".
    A comparison that cannot reach significance with its number of untied units says so; a missing
    one (no complete pair) says that it was not tested.
    """
    if getattr(row, "status", "tested") == "missing":
        return f"not tested on {metric_name}: no complete pair with {baseline} (all its scores are missing)"
    if getattr(row, "family", "") == stats.DIAGNOSTIC:
        word = "prompts" if row.test_unit == "prompt" else "pairs"
        return (f"on {metric_name} (a diagnostic: no verdict) won {int(row.test_wins)}, lost {int(row.test_losses)} {word} "
                f"against {baseline}; mean Δ {row.mean_diff:+.3g}")
    corr = CORRECTION_NAMES.get(correction, correction)
    p = stats.format_p(row.p_sign_adj)
    p_text = f"p {p}" if p.startswith("<") else f"p = {p}"
    p_text = f"{p_text} after {corr}" if correction != "none" else f"{p_text} (uncorrected)"
    word = "prompts" if row.test_unit == "prompt" else "pairs"
    n_units = int(row.n_prompts) if row.test_unit == "prompt" else int(row.n_pairs)
    untied = int(row.test_wins) + int(row.test_losses)
    counts = f"won {int(row.test_wins)}, lost {int(row.test_losses)} of {n_units} {word}"
    if n_units > untied:
        counts += f" ({n_units - untied} tied)"
    interval = f"{_fmt_pct(row.win_rate)} % [{_fmt_pct(row.win_rate_lo)}, {_fmt_pct(row.win_rate_hi)}] of {unit}"
    ties = f", {_fmt_pct(row.tie_share)} % ties" if row.tie_share >= 0.005 else ""
    if row.p_sign_min > alpha:
        verdict = (f"cannot be decided on {metric_name} with this many untied {word}: {counts}; with {untied} untied {word} "
                   f"the sign test's smallest possible p is {stats.format_p(row.p_sign_min)} > α = {alpha}")
        return f"{verdict}; win rate {interval}{ties}"
    if row.p_sign_adj <= alpha and row.direction == "better":
        verdict = f"better than {baseline} on {metric_name}: {counts}"
    elif row.p_sign_adj <= alpha and row.direction == "worse":
        verdict = f"worse than {baseline} on {metric_name}: {counts}"
    else:
        verdict = f"no detectable difference from {baseline} on {metric_name}: {counts}"
    return f"{verdict}, {p_text}; win rate {interval}{ties}"


def diagnostic_metrics(run: Run) -> list[str]:
    """Per-image metrics the manifest marks as diagnostics (`PerImageMetric.diagnostic`): reported, never a verdict."""
    return [m for m in run.per_image_metrics if run.metric_info(m).get("role") == "diagnostic"]


def family_sizes(t_win_rates: pd.DataFrame) -> dict[str, int]:
    """Family → number of tested comparisons in it (the Holm family sizes the report states)."""
    if not len(t_win_rates) or "family" not in t_win_rates.columns:
        return {}
    tested = t_win_rates[(t_win_rates["status"] == "tested") & (t_win_rates["family"] != stats.DIAGNOSTIC)]
    return {f: int(n) for f, n in tested.groupby("family", sort=False).size().items()}


def minimum_detectable_effect(run: Run, t_win_rates: pd.DataFrame) -> dict:
    """The least pair-level win rate the primary family's sign test finds with 80 % power at this run's size.

    `metrics.power` at α / m (Holm's first step, m = the primary family's size), for seeds that agree
    (ρ = 1: a prompt is worth one pair) and for independent seeds (ρ = 0); the truth lies between.
    """
    from metrics import power

    s = run.settings
    n_prompts = int(run.samples["prompt"].nunique()) if len(run.samples) else 0
    seeds = max(run.seeds_per_prompt(), 1)
    family = family_sizes(t_win_rates).get(stats.PRIMARY) or max(sum(family_sizes(t_win_rates).values()), 1)
    return {"n_prompts": n_prompts, "seeds": seeds, "family": family, "alpha": s.alpha, "power": power.DEFAULT_POWER,
            "win_rate_if_seeds_agree": power.minimum_detectable_win_rate(n_prompts, seeds, 1.0, s.alpha, family),
            "win_rate_if_seeds_independent": power.minimum_detectable_win_rate(n_prompts, seeds, 0.0, s.alpha, family)}


def compute_tables(run: Run) -> ReportTables:
    s = run.settings
    metrics = run.per_image_metrics
    hib = {m: run.higher_is_better(m) for m in metrics}
    tol = {m: run.tie_tolerance(m) for m in metrics}
    variants = run.variants
    baseline = run.baseline

    # the checked scores (one row per unit × metric, finite values), distinct prompt texts as the unit of
    # analysis, and each variant paired with its baseline (in a sweep, its own: bench/report/pairing.py)
    comparison = stats.compare_to_baseline(
        run.scores, pairing.baselines(run), hib, tol,
        prompt_text=dict(zip(run.samples["prompt_id"].astype(str), run.samples["prompt"].astype(str))),
        variants=variants, metrics=metrics, n_boot=s.n_boot, seed=s.bootstrap_seed, confidence=s.confidence,
        correction=s.correction, alpha=s.alpha, test_unit=s.test_unit,
        primary_metric=run.primary_metric, diagnostic_metrics=diagnostic_metrics(run))
    scores, paired, win_rates = comparison.scores, comparison.paired, comparison.table
    run.warnings.extend(n for n in comparison.notes if n not in run.warnings)
    baseline_of = pairing.baseline_of(run)
    win_rates["higher_is_better"] = win_rates["metric"].map(hib)
    for r in win_rates[win_rates["status"] == "missing"].itertuples():
        run.warnings.append(f"{r.variant} vs {baseline} on {r.metric}: no complete pair (all scores missing); "
                            f"shown as missing and left out of the {CORRECTION_NAMES.get(s.correction, s.correction)} family")
    unit = "prompts" if run.seeds_per_prompt() <= 1 else "prompt–seed pairs"
    win_rates["reading"] = [
        f"{r.variant}: " + reading(r, baseline_of.get(r.variant, baseline), run.display_name(r.metric), unit,
                                   s.correction, s.alpha)
        for r in win_rates.itertuples()]
    metric_rank = {m: i for i, m in enumerate(metrics)}
    win_rates = (win_rates.assign(_m=win_rates["metric"].map(metric_rank))
                 .sort_values(["_m", "win_rate"], ascending=[True, False], na_position="last")
                 .drop(columns="_m").reset_index(drop=True))

    by_cat = stats.win_rate_table(paired, by=["category"], n_boot=s.n_boot, seed=s.bootstrap_seed,
                                  confidence=s.confidence, test_unit=s.test_unit)
    by_seed = stats.win_rate_table(paired, by=["seed"], n_boot=s.n_boot, seed=s.bootstrap_seed,
                                   confidence=s.confidence, test_unit="pair")
    # Breakdowns are descriptive: their p-values are unadjusted, which the report says.
    summary = (scores.groupby(["variant", "metric"])["value"].agg(["mean", "std", "median", "count"])
               .reset_index().rename(columns={"count": "n"}))
    pairwise, bt = ranking.rank_all(scores, variants, hib, tol, baseline, n_boot=s.n_boot,
                                    seed=s.bootstrap_seed, confidence=s.confidence)
    set_all, set_cat = _set_tables(run)
    cost = _cost_table(run, win_rates, summary, hib)
    headline = _headline(run, win_rates, set_all, cost)
    return ReportTables(win_rates, headline, summary, by_cat, by_seed, pairwise, bt, cost, set_all, set_cat, paired)


def _set_tables(run: Run) -> tuple[pd.DataFrame, pd.DataFrame]:
    sm = run.set_metrics.copy()
    if len(sm):
        sm["higher_is_better"] = sm["metric"].map(run.higher_is_better)
    overall = sm[sm["category"] == ""].reset_index(drop=True)
    by_cat = sm[sm["category"] != ""].reset_index(drop=True)
    return overall, by_cat


def _cost_table(run: Run, win_rates: pd.DataFrame, summary: pd.DataFrame, hib: dict) -> pd.DataFrame:
    return cost_table(run, win_rates, summary, hib)  # bench/report/cost.py


def _headline(run: Run, win_rates: pd.DataFrame, set_all: pd.DataFrame, cost: pd.DataFrame) -> pd.DataFrame:
    """One row per variant: win rate [CI] per metric, the primary metric's reading, set metrics, cost."""
    primary = run.primary_metric
    rows = []
    for v in run.variants:
        row: dict = {"variant": v}
        for m in run.per_image_metrics:
            r = win_rates[(win_rates["variant"] == v) & (win_rates["metric"] == m)]
            if len(r):
                r = r.iloc[0]
                row[f"win_rate_{m}"] = r.win_rate
                row[f"win_rate_{m}_lo"] = r.win_rate_lo
                row[f"win_rate_{m}_hi"] = r.win_rate_hi
                row[f"p_adj_{m}"] = r.p_sign_adj
                row[f"significant_{m}"] = bool(r.significant)
                row[f"direction_{m}"] = r.direction
                row[f"status_{m}"] = r.status
        for m in run.set_metric_names:
            r = set_all[(set_all["variant"] == v) & (set_all["metric"] == m)]
            if len(r):
                r = r.iloc[0]
                row[m] = r["value"]
                row[f"{m}_std"] = r["std"]
                for col in ("value_lo", "value_hi", "diff", "diff_lo", "diff_hi"):
                    row[f"{m}_{col.replace('value_', '')}"] = r.get(col, np.nan)
        c = cost[cost["variant"] == v]
        if len(c):
            for column in ("forward_passes", "flops_per_image", "seconds_per_image", "relative_seconds",
                           "peak_mib_per_batch", "batch_images", "working_mib_per_image",
                           "legacy_memory_mib_per_image", "representative"):
                row[column] = c.iloc[0][column]
        r = win_rates[(win_rates["variant"] == v) & (win_rates["metric"] == primary)]
        row["reading"] = r.iloc[0]["reading"] if len(r) else f"{v}: the baseline"
        rows.append(row)
    head = pd.DataFrame(rows)
    key = f"win_rate_{primary}"
    if key in head.columns:
        head = head.assign(_k=head[key].fillna(-1)).sort_values("_k", ascending=False, kind="mergesort").drop(columns="_k")
    return head.reset_index(drop=True)


def provenance(run: Run) -> dict:
    """What the report states about where its numbers come from."""
    m = run.manifest
    scorers = {name: {k: info.get(k) for k in ("version", "weights", "higher_is_better", "tie_tolerance") if k in info}
               for name, info in (m.get("metrics") or {}).items()}
    return {
        "run_dir": str(run.path),
        "config_hash": m.get("config_hash", ""),
        "created": m.get("created", ""),
        "git_commit": m.get("git_commit", ""),
        "device": m.get("device", ""),
        "model": m.get("model", {}),
        "scorers": scorers,
        "versions": m.get("versions", {}),
        "seeds": m.get("seeds", sorted(set(run.samples["seed"]))),
        "baseline": run.baseline,
        "n_prompts": int(run.samples["prompt"].nunique()),
        "n_images": int(len(run.samples)),
        "timings": m.get("timings", {}),
        "statistics": {"intervals": f"win rates and tie shares: {100 * run.settings.confidence:.0f} % Clopper–Pearson "
                                    "at the effective number of prompts (clustered design effect, Korn–Graubard)",
                       "mean differences": "Student's t over distinct prompts (linearised ratio), widened for "
                                           "skewness by Hall's (1992) transformation: the hull of both",
                       "bootstrap": f"Bradley–Terry: cluster bootstrap over distinct prompts, "
                                    f"{run.settings.n_boot} resamples, seed {run.settings.bootstrap_seed}, "
                                    f"{100 * run.settings.confidence:.0f} % percentile intervals",
                       "tests": f"sign test and Wilcoxon signed-rank per {run.settings.test_unit}, "
                                f"{CORRECTION_NAMES.get(run.settings.correction, run.settings.correction)} correction "
                                f"at alpha = {run.settings.alpha} within each family (primary metric; secondary "
                                f"metrics); diagnostics untested"},
    }


def provenance_json(run: Run) -> str:
    return json.dumps(provenance(run), indent=2, sort_keys=False, default=str)
