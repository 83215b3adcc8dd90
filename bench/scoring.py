"""The scoring stage: per-image scores (cached by image content), set metrics (per variant, per category)
and the set metrics' leave-one-prompt-out replicates, from which bench/set_intervals.py makes intervals."""
from __future__ import annotations

import gc
import math
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from metrics.base import METRICS, PerImageMetric, SetMetric, checked_set_results
from metrics.set_jackknife import leave_one_out_weights
from metrics.score_cache import ScoreCache, score_with_cache
from mgt_common.errors import ConfigError

from .config import stable_hash
from .progress import Progress, announce, heartbeat
from .rundir.images import image_batches
from .rundir.store import RunDirectory


def metric_specs(entries: Sequence[str | dict[str, Any]]) -> list[tuple[str, str, dict[str, Any]]]:
    """(label, registered name, params) of each configured metric; a table may set `label`."""
    specs, labels = [], set()
    for entry in entries:
        if isinstance(entry, str):
            name, params = entry, {}
        else:
            params = dict(entry)
            name = params.pop("name", None)
            if not isinstance(name, str):
                raise ConfigError("metrics: a table needs a 'name' key, e.g. {name = \"hpsv2\", version = \"v2.0\"}")
        label = params.pop("label", name)
        if label in labels:
            raise ConfigError(f"metrics: {label!r} appears twice; give one of them a distinct 'label'")
        labels.add(label)
        specs.append((label, name, params))
    return specs


def build_metrics(entries, device: str) -> dict[str, PerImageMetric | SetMetric]:
    """Instantiate every configured metric (weights are loaded later, only if something needs scoring)."""
    metrics = {}
    for label, name, params in metric_specs(entries):
        cls = METRICS.get(name)
        try:
            metrics[label] = cls(**{"device": device, **params})
        except TypeError as exc:
            raise ConfigError(f"metrics: {label!r}: bad parameter ({exc})") from None
    return metrics


def require_per_image_metric(metrics: dict[str, Any]) -> None:
    """Refuse, before anything is generated, a metric list with no per-image metric: the report's comparisons
    (win rates, tests, rankings) pair each image with its baseline image and have nothing to pair without one."""
    if any(isinstance(m, PerImageMetric) for m in metrics.values()):
        return
    what = f"only set metrics: {', '.join(metrics)}" if metrics else "none"
    raise ConfigError(f"metrics: no per-image metric (got {what}); the report compares every variant with the baseline "
                      "image by image, so list at least one, e.g. metrics = [\"hpsv2\"] (\"world-loglik\" on the "
                      "synthetic world); --list shows them all")


def score_images(samples: pd.DataFrame, metrics: dict[str, Any], store: RunDirectory, world=None) -> pd.DataFrame:
    """One row per sample × per-image metric: unit_key, variant, prompt_id, seed, metric, value."""
    per_image = {label: m for label, m in metrics.items() if isinstance(m, PerImageMetric)}
    if samples.empty or not per_image:
        return pd.DataFrame(columns=["unit_key", "variant", "prompt_id", "seed", "metric", "value"])
    units = samples.drop_duplicates("unit_key")
    paths = [store.root / p for p in units["image_path"]]
    prompts = units["prompt"].tolist()
    tokens = None
    if any("tokens" in m.needs for m in per_image.values()):
        tokens = [torch.from_numpy(store.load_tokens(k).reshape(-1)).long() for k in units["unit_key"]]
    values: dict[str, dict[str, float]] = {}
    with ScoreCache(store.root / "cache" / "scores.sqlite") as cache:
        for label, metric in per_image.items():
            with Progress(f"score {label}", len(paths)) as bar:
                scores = score_with_cache(metric, cache, paths, prompts, prompt_ids=units["prompt_id"].tolist(),
                                          tokens=tokens, world=world,
                                          progress=lambda done, total: bar.update_to(len(paths) - total + done))
                bar.update_to(len(paths))
            values[label] = dict(zip(units["unit_key"], scores.tolist()))
            metric.unload()  # free one scorer's weights before the next is loaded
            gc.collect()
    rows = [{"unit_key": r.unit_key, "variant": r.variant, "prompt_id": r.prompt_id, "seed": r.seed,
             "metric": label, "value": values[label][r.unit_key]}
            for label in per_image for r in samples.itertuples()]
    return pd.DataFrame(rows)


def set_metric_rows(samples: pd.DataFrame, metrics: dict[str, Any], store: RunDirectory, world=None) -> pd.DataFrame:
    """Set metrics per variant (category "") and per prompt category when the prompts have several.

    Each metric's features are extracted once per variant (`SetMetric.features`); a category's value
    is computed from the variant's rows of that category, and the leave-one-prompt-out replicates of
    the jackknife (bench/set_intervals.py) from the same rows re-weighted. A value is journalled
    under a key of (metric, its parameters, the set's unit keys) and the replicates under
    `replicates_key`, so a re-run with the same images reads them instead of extracting again.
    """
    set_metrics = {label: m for label, m in metrics.items() if isinstance(m, SetMetric)}
    if samples.empty or not set_metrics:
        return pd.DataFrame(columns=["variant", "category", "metric", "value", "std", "n", "warnings"])
    known = {r["key"]: r["rows"] for r in store.read_journal("set_metrics", required=("key", "rows"))}
    categories = sorted(c for c in samples["category"].fillna("").unique() if c)
    clusters = prompt_clusters(samples)
    out = []
    for label, metric in set_metrics.items():
        replicates = recorded_replicates(store, label, metric, samples)
        computed: list[dict] = []
        for variant, by_variant in samples.groupby("variant", sort=False):
            category_of_row = by_variant["category"].fillna("").to_numpy()
            subsets = {"": np.arange(len(by_variant))}  # category → the variant's rows in it
            if len(categories) > 1:
                subsets.update({c: np.flatnonzero(category_of_row == c) for c in categories})
            keys = {c: _set_key(label, metric, by_variant.iloc[rows]) for c, rows in subsets.items() if len(rows)}
            features = None
            if replicates is None or any(k not in known for k in keys.values()):
                announce(f"set metric {label}: {variant} ({len(by_variant)} images)")
                with heartbeat(f"set metric {label}: {variant}"):
                    metric.load()
                    features = metric.features(image_batches([store.root / p for p in by_variant["image_path"]]),
                                               by_variant["prompt"].tolist(), world, by_variant["prompt_id"].tolist())
            for category, key in keys.items():
                if key not in known:
                    results = checked_set_results(metric, metric.compute_from_features(features.select(subsets[category])))
                    known[key] = [{"metric": _row_name(label, name, len(results)), "value": _number(r.value),
                                   "std": _number(r.std), "n": int(r.n), "warnings": [str(w) for w in r.warnings or []],
                                   "details": r.details}
                                  for name, r in results.items()]
                    store.append("set_metrics", [{"key": key, "rows": known[key]}])
                for r in known[key]:
                    out.append({"variant": variant, "category": category, "metric": r["metric"],
                                 "value": r["value"], "std": r["std"], "n": r["n"],
                                 "warnings": " | ".join(r.get("warnings") or []), **(r.get("details") or {})})
            if replicates is None:
                n_results = len(known[keys[""]])
                cluster_of_row = by_variant["prompt"].astype(str).map(clusters).to_numpy()
                resampled = metric.resampled(features, leave_one_out_weights(cluster_of_row, len(clusters)))
                computed += [{"variant": variant, "metric": _row_name(label, name, n_results), "jackknife": r.tolist(),
                              "n_prompts": int(by_variant["prompt"].nunique())} for name, r in resampled.items()]
        if replicates is None:
            store.append(REPLICATES_JOURNAL, [{"key": replicates_key(label, metric, samples), "rows": computed}])
        metric.unload()  # free e.g. Inception before the next metric
    frame = pd.DataFrame(out)
    frame["value"] = frame["value"].map(lambda v: v if v is None or not math.isnan(v) else None)
    return frame


def _number(value) -> float | None:
    """A plain float for the journal (a plugin's numpy scalar would be journalled as text)."""
    return None if value is None else float(value)


def _set_key(label: str, metric: SetMetric, subset: pd.DataFrame) -> str:
    return stable_hash({"metric": label, "describe": metric.describe(), "units": sorted(subset["unit_key"])}, 32)


def _row_name(label: str, name: str, n_results: int) -> str:
    """A metric reporting one value is named by its label (``fid-8``); one reporting several, by their names."""
    return label if n_results == 1 else name


# -- the jackknife's replicates -------------------------------------------------------------------
#: how the intervals are made; part of the replicates' journal key and of set_metrics.csv's ``interval``.
JACKKNIFE = "jackknife over distinct prompts (leave one out), t interval, paired across variants"
REPLICATES_JOURNAL = "set_intervals"


def prompt_clusters(samples: pd.DataFrame) -> dict[str, int]:
    """The jackknife's clusters: every distinct prompt text of the run (all variants), numbered in sorted order.

    Every variant's replicate k leaves out the same text k, so replicates of two variants are paired.
    """
    return {t: i for i, t in enumerate(sorted(set(samples["prompt"].astype(str))))}


def replicates_key(label: str, metric: SetMetric, samples: pd.DataFrame) -> str:
    """The replicates' journal key: the metric, its parameters, the method and every variant's units."""
    return stable_hash({"metric": label, "describe": metric.describe(), "interval": JACKKNIFE,
                        "units": {v: sorted(g["unit_key"]) for v, g in samples.groupby("variant")}}, 32)


def recorded_replicates(store: RunDirectory, label: str, metric: SetMetric,
                        samples: pd.DataFrame) -> dict[tuple[str, str], tuple[np.ndarray, int]] | None:
    """``(variant, metric name) → (replicates, distinct prompts)`` from the journal, or None if not recorded.

    Run directories written before the replicates had a key of their own journalled them under a
    key that also named the baseline (the replicates do not depend on it: any baseline's entry
    serves) and called them ``"boot"``; both are still read, so such a run resumes without
    extracting features again.
    """
    keys = [replicates_key(label, metric, samples)]
    units = {v: sorted(g["unit_key"]) for v, g in samples.groupby("variant")}
    keys += [stable_hash({"metric": label, "describe": metric.describe(), "baseline": baseline, "interval": JACKKNIFE,
                          "units": units}, 32) for baseline in units]
    found = {r["key"]: r["rows"] for r in store.read_journal(REPLICATES_JOURNAL, required=("key", "rows"))}
    entry = next((found[k] for k in keys if k in found), None)
    if entry is None:
        return None
    return {(r["variant"], r["metric"]): (np.asarray(r["jackknife"] if "jackknife" in r else r["boot"], dtype=float),
                                         int(r["n_prompts"])) for r in entry}
