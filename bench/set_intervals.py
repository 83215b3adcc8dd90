"""Intervals for set metrics (FID, KID): a delete-one-prompt jackknife, paired with the baseline.

`set_metric_rows` (bench/scoring.py) computes each variant's FID/KID and, from the same features, its
leave-one-prompt-out replicates; this stage turns them into columns of the whole-set rows (category "")

* ``value_lo, value_hi``: the interval of the metric over distinct prompts;
* ``diff, diff_lo, diff_hi``: the paired difference ``metric(variant) − metric(baseline)`` with its
  interval, both variants evaluated on the *same* reduced prompt sets;
* ``n_prompts`` (distinct prompt texts of the set) and ``interval`` (how it was made).

The interval is the cluster jackknife (Quenouille 1956, Tukey 1958; Efron & Stein 1981; formulas in
`metrics.set_jackknife`): each of the K distinct prompts is left out in turn, with all its seeds, the
metric is recomputed, and ``se² = (K − 1)/K · Σ_k (θ_(k) − θ̄)²`` gives ``θ̂ ± t_{K−1} · se``; a bound
below the metric's least possible value (`SetMetric.lower_bound`: FID cannot go below 0) is moved up
to it. Why not the bootstrap: a bootstrap resample repeats prompts, which shrinks the effective set,
and FID at small n is dominated by its sample-size bias, so bootstrap replicates of the default run
sat almost wholly *above* the estimate (percentile and basic intervals that did not contain it).
Leaving one prompt out changes n by one prompt only.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from metrics.base import SetMetric
from metrics.set_jackknife import jackknife_interval, paired_difference_interval

from .rundir.store import RunDirectory
from .scoring import JACKKNIFE, recorded_replicates, set_metric_rows

COLUMNS = ["value_lo", "value_hi", "diff", "diff_lo", "diff_hi", "n_prompts", "interval"]


def add_set_intervals(rows: pd.DataFrame, samples: pd.DataFrame, metrics: dict, store: RunDirectory, world=None, *,
                      baseline: str, confidence: float = 0.95) -> pd.DataFrame:
    """``rows`` (from `set_metric_rows`) with the interval columns filled for category "" (NaN elsewhere).

    The replicates are those `set_metric_rows` journalled; for rows computed without them (another
    caller), `set_metric_rows` is run once to record them (its values come from its journal).
    """
    out = rows.copy()
    for col in COLUMNS:
        out[col] = "" if col == "interval" else np.nan
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
            out.at[i, "value_lo"], out.at[i, "value_hi"] = (lo if bound is None else max(lo, bound)), hi
            out.at[i, "n_prompts"] = n_prompts
            out.at[i, "interval"] = JACKKNIFE
            base_value = out.loc[whole & (out["variant"] == baseline) & (out["metric"] == name), "value"]
            if variant != baseline and (baseline, name) in replicates and len(base_value) and not pd.isna(base_value.iloc[0]):
                out.at[i, "diff"], out.at[i, "diff_lo"], out.at[i, "diff_hi"] = paired_difference_interval(
                    estimate, reps, float(base_value.iloc[0]), replicates[(baseline, name)][0], confidence)
    return out
