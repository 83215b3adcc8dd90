"""Intervals for set metrics (FID, KID): a delete-one-prompt jackknife, paired with the baseline.

`set_metric_rows` computes each variant's FID/KID once; this stage adds, for the whole-set rows
(category ""), columns

* ``value_lo, value_hi``: the interval of the metric over distinct prompts;
* ``diff, diff_lo, diff_hi``: the paired difference ``metric(variant) − metric(baseline)`` with its
  interval, both variants evaluated on the *same* reduced prompt sets;
* ``n_prompts`` (distinct prompt texts of the set) and ``interval`` (how it was made).

Features are extracted once per variant (the metric's own feature network and reference set, so the
numbers match `set_metric_rows`) and re-weighted (`metrics.set_bootstrap`). The interval is the
cluster jackknife (Quenouille 1956, Tukey 1958; Efron & Stein 1981): each of the K distinct prompts
is left out in turn, with all its seeds, the metric is recomputed, and
``se² = (K − 1)/K · Σ_k (θ_(k) − θ̄)²`` gives ``θ̂ ± t_{K−1} · se``; FID's lower end is cut at 0,
which FID cannot go below. Why not the bootstrap: a bootstrap resample repeats prompts, which
shrinks the effective set, and FID at small n is dominated by its sample-size bias, so bootstrap
replicates of the default run sat almost wholly *above* the estimate (percentile and basic intervals
that did not contain it). Leaving one prompt out changes n by one prompt only. Results are
journalled (key: metric, its parameters, every variant's units, the method), so a resumed run does
not extract features again.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from metrics.base import SetMetric
from metrics.set_bootstrap import fid_resampled, jackknife_interval, kid_resampled

from .config import stable_hash
from .rundir.store import RunDirectory

INTERVAL = "jackknife over distinct prompts (leave one out), t interval, paired across variants"
COLUMNS = ["value_lo", "value_hi", "diff", "diff_lo", "diff_hi", "n_prompts", "interval"]


def _replicates(metric: SetMetric, name: str, images, prompts: list[str], world, weights: np.ndarray) -> np.ndarray | None:
    """The metric on every resample (rows of ``weights``), or None for a metric this module cannot resample."""
    if not hasattr(metric, "extractor") or name not in ("fid", "kid"):
        return None
    extractor = metric.extractor(world)
    fake = metric.features(images, extractor).double().numpy()
    reference = metric.reference_stats(prompts, world, extractor)
    if name == "fid":
        return fid_resampled(fake, reference.mean.double().numpy(), reference.cov.double().numpy(), weights)
    if reference.features is None:
        return None
    return kid_resampled(fake, reference.features.double().numpy(), weights)


def add_set_intervals(rows: pd.DataFrame, samples: pd.DataFrame, metrics: dict, store: RunDirectory, world=None, *,
                      baseline: str, confidence: float = 0.95) -> pd.DataFrame:
    """``rows`` (from `set_metric_rows`) with the interval columns filled for category "" (NaN elsewhere)."""
    from .generate import load_image

    out = rows.copy()
    for col in COLUMNS:
        out[col] = "" if col == "interval" else np.nan
    set_metrics = {label: m for label, m in metrics.items() if isinstance(m, SetMetric)}
    if out.empty or not set_metrics or samples.empty:
        return out
    texts = sorted(set(samples["prompt"].astype(str)))
    position = {t: i for i, t in enumerate(texts)}
    known = {r["key"]: r["rows"] for r in store.read_journal("set_intervals", required=("key", "rows"))}
    for label, metric in set_metrics.items():
        key = stable_hash({"metric": label, "describe": metric.describe(), "baseline": baseline, "interval": INTERVAL,
                           "units": {v: sorted(g["unit_key"]) for v, g in samples.groupby("variant")}}, 32)
        if key not in known:
            # row k leaves prompt k out (weight 0 for all its images), every other image counts once
            cluster_weights = 1.0 - np.eye(len(texts))
            replicates: dict[tuple[str, str], np.ndarray] = {}
            for variant, subset in samples.groupby("variant", sort=False):
                idx = subset["prompt"].astype(str).map(position).to_numpy()
                paths = [store.root / p for p in subset["image_path"]]

                def batches(paths=paths):  # batches, not one stacked tensor (see set_metric_rows)
                    return (torch.stack([load_image(p) for p in paths[i:i + 64]]) for i in range(0, len(paths), 64))

                names = out.loc[(out["variant"] == variant) & (out["category"] == ""), "metric"].unique()
                for name in names:
                    boot = _replicates(metric, str(name), batches(), subset["prompt"].tolist(), world,
                                       cluster_weights[:, idx])
                    if boot is not None:
                        replicates[(variant, str(name))] = boot
            known[key] = [{"variant": v, "metric": n, "boot": b.tolist(), "n_prompts": int(samples.loc[samples["variant"] == v, "prompt"].nunique())}
                          for (v, n), b in replicates.items()]
            store.append("set_intervals", [{"key": key, "rows": known[key]}])
            unload = getattr(metric, "unload", None)  # free e.g. Inception before the next metric
            if unload is not None:
                unload()
        boots = {(r["variant"], r["metric"]): (np.asarray(r["boot"], dtype=float), r["n_prompts"]) for r in known[key]}
        for i in out.index[out["category"] == ""]:
            variant, name = out.at[i, "variant"], out.at[i, "metric"]
            if (variant, name) not in boots or pd.isna(out.at[i, "value"]):
                continue
            boot, n_prompts = boots[(variant, name)]
            est = float(out.at[i, "value"])
            lo, hi = jackknife_interval(est, boot, confidence)
            out.at[i, "value_lo"], out.at[i, "value_hi"] = (max(lo, 0.0) if name == "fid" else lo), hi
            out.at[i, "n_prompts"] = n_prompts
            out.at[i, "interval"] = INTERVAL
            base_rows = out[(out["variant"] == baseline) & (out["metric"] == name) & (out["category"] == "")]
            if variant != baseline and (baseline, name) in boots and len(base_rows) and not pd.isna(base_rows["value"].iloc[0]):
                base_boot = boots[(baseline, name)][0]
                diff = est - float(base_rows["value"].iloc[0])
                out.at[i, "diff"] = diff
                out.at[i, "diff_lo"], out.at[i, "diff_hi"] = jackknife_interval(diff, boot - base_boot, confidence)
    return out
