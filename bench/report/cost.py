"""The cost table: what each variant's images cost, from samples.csv (docs/rundir.md, "Cost columns").

Per variant (means over its images unless said otherwise):

- ``forward_passes`` (network calls, NFE), ``rows_conditional`` / ``rows_unconditional`` /
  ``rows_perturbed`` (row evaluations by kind: a CFG call is two rows, a critic or PAG pass one), and
  ``flops_per_image`` (transformer FLOPs, torch's ``FlopCounterMode``: bench/flops.py), with
  ``relative_flops`` against the baseline;
- seconds per image: the median over the variant's images with the 10th–90th percentiles, and
  ``relative_seconds``: the median over the run's rounds of the variant's seconds per image divided by
  its baseline's in the *same* round (batches run round robin, bench/generate.py), with the 10th–90th
  percentiles of those ratios (``relative_seconds_p10``/``_p90``) and how many rounds they come from;
  runs recorded without rounds fall back to the ratio of medians (``relative_seconds_method``);
- memory: ``peak_mib_per_batch`` (the highest peak of any of its batches, weights and everything else
  resident included) with ``batch_images`` (the size of those batches), ``working_mib_per_image`` (the
  median over batches of (peak − resident at the batch's start) / its images: what one more image in a
  batch costs above what is held anyway), ``weight_mib`` (the network's weights as the variant ran them);
  runs recorded before these columns keep their ``memory_mib`` (the batch's peak divided by its images)
  as ``legacy_memory_mib_per_image``;
- ``cost_note``: why the seconds and memory are not representative (a simulated quantization layout),
  else empty; ``representative`` is False then.

The Pareto front (``pareto_<metric>``) is taken on FLOPs when every variant's FLOPs were measured, else on
forward passes; ``pareto_axis`` says which.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import pairing
from .rundir import Run

#: Cost axes of the quality-vs-cost views: samples.csv-derived column, axis label.
COST_AXES = {"flops_per_image": "transformer FLOPs per image (measured)",
             "forward_passes": "forward passes per image",
             "seconds_per_image": "seconds per image (median, measured)"}
ROW_COLUMNS = ("rows_conditional", "rows_unconditional", "rows_perturbed")


def _numeric(samples: pd.DataFrame, column: str) -> pd.Series:
    """A numeric column of samples.csv, NaN where absent (a run recorded before it existed)."""
    if column not in samples.columns:
        return pd.Series(np.nan, index=samples.index, dtype=float)
    return pd.to_numeric(samples[column], errors="coerce")


def pareto(cost: np.ndarray, quality: np.ndarray) -> np.ndarray:
    """True where no other point is at most as costly and at least as good, and strictly better in one."""
    c, q = np.asarray(cost, float), np.asarray(quality, float)
    dominated = ((c[None, :] <= c[:, None]) & (q[None, :] >= q[:, None])
                 & ((c[None, :] < c[:, None]) | (q[None, :] > q[:, None]))).any(axis=1)
    return ~dominated & ~np.isnan(q) & ~np.isnan(c)


def pareto_axis(cost: pd.DataFrame) -> str:
    """FLOPs when measured for every variant, else forward passes."""
    return "flops_per_image" if cost["flops_per_image"].notna().all() and len(cost) else "forward_passes"


def slot_ratios(run: Run) -> pd.DataFrame:
    """One row per (variant, round): its seconds per image over its baseline's in the same round."""
    sm = run.samples
    if "time_slot" not in sm.columns:
        return pd.DataFrame(columns=["variant", "time_slot", "ratio"])
    timed = sm.assign(_slot=sm["time_slot"].fillna("").astype(str), _s=_numeric(sm, "seconds"))
    timed = timed[timed["_slot"] != ""]
    per_slot = timed.groupby(["variant", "_slot"])["_s"].median()
    baseline_of = pairing.baseline_of(run)
    rows = []
    for (variant, slot), seconds in per_slot.items():
        base = baseline_of.get(variant, run.baseline)
        if variant == base or (base, slot) not in per_slot.index:
            continue
        reference = float(per_slot[(base, slot)])
        if reference > 0:
            rows.append({"variant": variant, "time_slot": slot, "ratio": float(seconds) / reference})
    return pd.DataFrame(rows, columns=["variant", "time_slot", "ratio"])


def _quantile(q: float):
    return lambda x: float(np.quantile(x, q)) if len(x) else np.nan


def cost_table(run: Run, win_rates: pd.DataFrame, summary: pd.DataFrame, hib: dict) -> pd.DataFrame:
    """The cost table (columns described in the module docstring) with each metric's mean, win rate,
    Pareto membership and gain per extra pass."""
    sm = run.samples.copy()
    for column in ("flops", "peak_mib", "resident_mib", "batch_images", "weight_mib", "memory_mib", *ROW_COLUMNS):
        sm[column] = _numeric(sm, column)
    sm["_working"] = (sm["peak_mib"] - sm["resident_mib"]) / sm["batch_images"]
    sm["_note"] = sm["cost_note"].fillna("").astype(str) if "cost_note" in sm.columns else ""
    by = sm.groupby("variant")
    # Seconds per image: the median over the variant's images (each carries its batch's time per image),
    # with the 10th–90th percentile as spread; warm-up batches are never recorded (bench.generate).
    cost = (by.agg(images=("unit_key", "size"), forward_passes=("forward_passes", "mean"),
                   rows_conditional=("rows_conditional", "mean"), rows_unconditional=("rows_unconditional", "mean"),
                   rows_perturbed=("rows_perturbed", "mean"),
                   flops_per_image=("flops", lambda x: x.mean() if x.notna().all() else np.nan),
                   seconds_per_image=("seconds", "median"), seconds_p10=("seconds", _quantile(0.1)),
                   seconds_p90=("seconds", _quantile(0.9)), seconds_mean=("seconds", "mean"),
                   seconds_total=("seconds", "sum"), peak_mib_per_batch=("peak_mib", "max"),
                   working_mib_per_image=("_working", "median"), weight_mib=("weight_mib", "mean"),
                   legacy_memory_mib_per_image=("memory_mib", "mean"),
                   cost_note=("_note", lambda x: next((n for n in x if n), "")))
            .reindex(run.variants).reset_index())
    # the size of the batches the peak comes from
    peak_rows = sm.loc[sm["peak_mib"].notna()].sort_values("peak_mib", ascending=False).drop_duplicates("variant")
    cost["batch_images"] = cost["variant"].map(peak_rows.set_index("variant")["batch_images"])
    cost["cost_note"] = cost["cost_note"].fillna("")
    cost["representative"] = cost["cost_note"] == ""
    baseline_of = pairing.baseline_of(run)

    def baseline_value(column: str) -> pd.Series:
        values = cost.set_index("variant")[column]
        return cost["variant"].map(lambda v: values.get(baseline_of.get(v, run.baseline), np.nan))

    cost["relative_flops"] = cost["flops_per_image"] / baseline_value("flops_per_image")
    cost["seconds_per_pass"] = cost["seconds_per_image"] / cost["forward_passes"]
    ratios = slot_ratios(run).groupby("variant")["ratio"]
    if len(ratios.size()):
        cost["relative_seconds"] = cost["variant"].map(ratios.median())
        cost["relative_seconds_p10"] = cost["variant"].map(ratios.quantile(0.1))
        cost["relative_seconds_p90"] = cost["variant"].map(ratios.quantile(0.9))
        cost["relative_seconds_rounds"] = cost["variant"].map(ratios.size()).fillna(0).astype(int)
        cost["relative_seconds_method"] = np.where(cost["relative_seconds_rounds"] > 0, "same rounds", "")
    else:  # a run recorded before rounds existed: the ratio of medians
        cost["relative_seconds"] = cost["seconds_per_image"] / baseline_value("seconds_per_image")
        cost["relative_seconds_p10"] = cost["relative_seconds_p90"] = np.nan
        cost["relative_seconds_rounds"] = 0
        cost["relative_seconds_method"] = np.where(cost["relative_seconds"].notna(), "ratio of medians", "")
    for v in set(baseline_of.values()) & set(cost["variant"]):
        cost.loc[cost["variant"] == v, ["relative_seconds", "relative_seconds_method"]] = [1.0, "baseline"]
    # Reward evaluations of search loops (samplers/search.py); runs written before they were recorded have none.
    scorer_calls = sm["scorer_calls"] if "scorer_calls" in sm.columns else pd.Series(0, index=sm.index)
    cost["scorer_calls"] = cost["variant"].map(scorer_calls.groupby(sm["variant"]).mean())
    declared = {v: (run.manifest.get("variants", {}).get(v) or {}).get("forward_passes_per_image") for v in run.variants}
    cost["forward_passes_declared"] = cost["variant"].map(declared)
    cost["extra_forward_passes"] = cost["forward_passes"] - baseline_value("forward_passes")
    axis = pareto_axis(cost)
    cost["pareto_axis"] = axis
    for m in run.per_image_metrics:
        means = summary[summary["metric"] == m].set_index("variant")["mean"]
        cost[f"mean_{m}"] = cost["variant"].map(means)
        wr = win_rates[win_rates["metric"] == m].set_index("variant")["win_rate"]
        cost[f"win_rate_{m}"] = cost["variant"].map(wr).where(cost["variant"] != run.baseline, 0.5)
        oriented = cost[f"mean_{m}"] * (1 if hib[m] else -1)
        cost[f"pareto_{m}"] = pareto(cost[axis].to_numpy(float), oriented.to_numpy())
        # quality per cost: change of the mean score per extra forward pass (only for variants that pay extra)
        base_mean = cost["variant"].map(lambda v: means.get(baseline_of.get(v, run.baseline), np.nan))
        extra = cost["extra_forward_passes"].to_numpy(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            cost[f"gain_{m}_per_extra_pass"] = np.where(extra > 0, (cost[f"mean_{m}"] - base_mean) / extra, np.nan)
    return cost
