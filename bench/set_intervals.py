"""Intervals for set metrics (FID, KID, the world's faithfulness and coverage): a delete-one-prompt jackknife, paired with the baseline.

`set_metric_rows` (bench/scoring.py) computes each variant's value and, from the same features, its
leave-one-prompt-out replicates; this stage turns them into columns of the whole-set rows (category "")

* ``value_lo, value_hi``: the interval of the value *at this set's size* over distinct prompts (FID
  at n = 96 is a different quantity from FID at n = 50 000: its small-sample bias is part of it);
* ``diff, diff_lo, diff_hi``: the paired difference ``metric(variant) − metric(baseline)`` with its
  interval, both variants evaluated on the *same* reduced prompt sets; for a metric that is not
  `SetMetric.unbiased` (FID) ``diff`` is the jackknife's **bias-corrected** difference
  (`metrics.set_jackknife.paired_difference_interval`), and ``diff_plain`` the difference of the
  two values shown; ``bias_corrected`` says which;
* ``n_prompts`` (distinct prompt texts of the set) and ``interval`` (how it was made).

The interval is the cluster jackknife (Quenouille 1956, Tukey 1958; Efron & Stein 1981; formulas in
`metrics.set_jackknife`): each of the K distinct prompts is left out in turn, with all its seeds, the
metric is recomputed, and ``se² = (K − 1)/K · Σ_k (θ_(k) − θ̄)²`` gives ``θ̂ ± t_{K−1} · se``; a bound
beyond the metric's range (`SetMetric.lower_bound`: FID cannot go below 0) is moved to it. Why not
the bootstrap: a bootstrap resample repeats prompts, which shrinks the effective set, and FID at
small n is dominated by its sample-size bias, so bootstrap replicates of the default run sat almost
wholly *above* the estimate (percentile and basic intervals that did not contain it). Leaving one
prompt out changes n by one prompt only.

Why the difference is bias-corrected: FID's small-sample bias grows with the generated set's
spread, so a variant that loses diversity (low temperature, greedy, strong guidance) also loses
bias, and the plain difference can show a less diverse variant as *better* when it is worse. Where
two variants' feature covariance traces (``feature_trace``, from the metric) differ by more than
10 % and the bias correction moves their difference by more than half its standard error, the
row carries a warning saying so.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from metrics.base import SetMetric
from scipy import stats as sps

from metrics.set_jackknife import jackknife_interval, paired_difference_interval

from .rundir.store import RunDirectory
from .scoring import JACKKNIFE, recorded_replicates, set_metric_rows

COLUMNS = ["value_lo", "value_hi", "diff", "diff_lo", "diff_hi", "diff_plain", "bias_corrected", "n_prompts", "interval"]
#: traces within this factor of the baseline's are "equal spread": no warning (sampling noise of a trace
#: at n = 96, 64-d features: about 2 %).
TRACE_TOLERANCE = 0.10


def add_set_intervals(rows: pd.DataFrame, samples: pd.DataFrame, metrics: dict, store: RunDirectory, world=None, *,
                      baseline: str, confidence: float = 0.95) -> pd.DataFrame:
    """``rows`` (from `set_metric_rows`) with the interval columns filled for category "" (NaN elsewhere).

    The replicates are those `set_metric_rows` journalled; for rows computed without them (another
    caller), `set_metric_rows` is run once to record them (its values come from its journal).
    """
    out = rows.copy()
    for col in COLUMNS:
        out[col] = "" if col == "interval" else None if col == "bias_corrected" else np.nan
    if "warnings" not in out.columns:
        out["warnings"] = ""
    set_metrics = {label: m for label, m in metrics.items() if isinstance(m, SetMetric)}
    if out.empty or not set_metrics or samples.empty:
        return out
    whole = out["category"] == ""
    for label, metric in set_metrics.items():
        replicates = recorded_replicates(store, label, metric, samples)
        if replicates is None:
            set_metric_rows(samples, {label: metric}, store, world)
            replicates = recorded_replicates(store, label, metric, samples)
        bound = metric.lower_bound
        for i in out.index[whole]:
            variant, name = out.at[i, "variant"], out.at[i, "metric"]
            if (variant, name) not in replicates or pd.isna(out.at[i, "value"]):
                continue
            reps, n_prompts = replicates[(variant, name)]
            estimate = float(out.at[i, "value"])
            lo, hi = jackknife_interval(estimate, reps, confidence)
            out.at[i, "value_lo"] = lo if bound is None else max(lo, bound)
            out.at[i, "value_hi"] = hi if metric.upper_bound is None else min(hi, metric.upper_bound)
            out.at[i, "n_prompts"] = n_prompts
            out.at[i, "interval"] = JACKKNIFE
            base_row = out.index[whole & (out["variant"] == baseline) & (out["metric"] == name)]
            if variant != baseline and (baseline, name) in replicates and len(base_row) \
                    and not pd.isna(out.at[base_row[0], "value"]):
                base_value = float(out.at[base_row[0], "value"])
                corrected = not metric.unbiased
                diff, lo, hi = paired_difference_interval(estimate, reps, base_value, replicates[(baseline, name)][0],
                                                          confidence, bias_corrected=corrected)
                out.at[i, "diff"], out.at[i, "diff_lo"], out.at[i, "diff_hi"] = diff, lo, hi
                out.at[i, "diff_plain"] = estimate - base_value
                out.at[i, "bias_corrected"] = corrected
                note = spread_warning(out.loc[i], out.loc[base_row[0]], baseline, confidence) if corrected else ""
                if note:
                    out.at[i, "warnings"] = " | ".join(w for w in (str(out.at[i, "warnings"] or ""), note) if w.strip())
    return out


def spread_warning(row: pd.Series, base: pd.Series, baseline: str, confidence: float) -> str:
    """A warning when two sets' feature spreads differ enough to bias the plain difference of their values.

    Fires when the covariance traces differ by more than `TRACE_TOLERANCE` *and* the jackknife's
    bias correction moves the difference by more than half its standard error (the interval's
    half-width over t_{K−1}); both conditions, so that neither noise in the traces nor in the bias
    estimate raises it alone.
    """
    trace, base_trace = row.get("feature_trace", np.nan), base.get("feature_trace", np.nan)
    if not (np.isfinite(trace) and np.isfinite(base_trace)) or base_trace <= 0 or not np.isfinite(row["diff_lo"]):
        return ""
    ratio = float(trace) / float(base_trace)
    shift = float(row["diff_plain"]) - float(row["diff"])
    t = float(sps.t.ppf(0.5 + confidence / 2.0, max(int(row["n_prompts"]) - 1, 1)))
    se = (float(row["diff_hi"]) - float(row["diff_lo"])) / (2.0 * t)
    if abs(ratio - 1.0) <= TRACE_TOLERANCE or abs(shift) <= 0.5 * se:
        return ""
    n = int(row["n"]) if np.isfinite(row.get("n", np.nan)) else "?"
    return (f"{row['metric']}: {row['variant']}'s feature spread (covariance trace) is {ratio:.2f}× {baseline}'s, so their "
            f"values at n = {n} carry different small-sample biases: the plain difference of the two values "
            f"({float(row['diff_plain']):+.3g}) is off by {shift:+.3g} (jackknife estimate); read the bias-corrected "
            f"difference ({float(row['diff']):+.3g})")
