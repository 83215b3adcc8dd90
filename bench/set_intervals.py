"""Intervals for set metrics (FID, KID): a cluster bootstrap over prompts, paired with the baseline.

`set_metric_rows` computes each variant's FID/KID once; this stage adds, for the whole-set rows
(category ""), columns

* ``value_lo, value_hi``: the interval of the metric under resampling of distinct prompts;
* ``diff, diff_lo, diff_hi``: the paired difference ``metric(variant) − metric(baseline)`` with its
  interval, both variants evaluated on the *same* resampled prompts in every resample;
* ``n_prompts`` (distinct prompt texts of the set) and ``interval`` (how it was made).

Features are extracted once per variant (the metric's own feature network and reference set, so the
numbers match `set_metric_rows`) and resampled as weights (`metrics.set_bootstrap`). Small sets make
FID biased upward, and a resample with repeated prompts is smaller still, so the percentile
distribution sits above the point estimate; the *basic* bootstrap interval ``[2θ̂ − q_hi, 2θ̂ − q_lo]``
(Davison & Hinkley 1997, eq. 5.6) reflects that shift back and is used for the value and the
difference alike. Results are journalled (key: metric, its parameters, every variant's units, the
resampling settings), so a resumed run does not extract features again.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from metrics.base import SetMetric
from metrics.set_bootstrap import fid_resampled, kid_resampled, percentile_interval
from metrics.stats import bootstrap_weights, stratum_rng

from .config import stable_hash
from .store import RunDirectory

INTERVAL = "basic bootstrap over distinct prompts, paired across variants"
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


def _basic(estimate: float, boot: np.ndarray, confidence: float) -> tuple[float, float]:
    lo, hi = percentile_interval(boot, confidence)
    return 2.0 * estimate - hi, 2.0 * estimate - lo


def add_set_intervals(rows: pd.DataFrame, samples: pd.DataFrame, metrics: dict, store: RunDirectory, world=None, *,
                      baseline: str, n_boot: int = 1000, seed: int = 0, confidence: float = 0.95) -> pd.DataFrame:
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
    known = {r["key"]: r["rows"] for r in store.read_journal("set_intervals")}
    for label, metric in set_metrics.items():
        key = stable_hash({"metric": label, "describe": metric.describe(), "baseline": baseline, "n_boot": n_boot,
                           "seed": seed, "confidence": confidence, "interval": INTERVAL,
                           "units": {v: sorted(g["unit_key"]) for v, g in samples.groupby("variant")}}, 32)
        if key not in known:
            cluster_weights = bootstrap_weights(len(texts), n_boot, stratum_rng(seed, ("set", label)))
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
            out.at[i, "value_lo"], out.at[i, "value_hi"] = _basic(est, boot, confidence)
            out.at[i, "n_prompts"] = n_prompts
            out.at[i, "interval"] = INTERVAL
            base_rows = out[(out["variant"] == baseline) & (out["metric"] == name) & (out["category"] == "")]
            if variant != baseline and (baseline, name) in boots and len(base_rows) and not pd.isna(base_rows["value"].iloc[0]):
                base_boot = boots[(baseline, name)][0]
                diff = est - float(base_rows["value"].iloc[0])
                out.at[i, "diff"] = diff
                out.at[i, "diff_lo"], out.at[i, "diff_hi"] = _basic(diff, boot - base_boot, confidence)
    return out
