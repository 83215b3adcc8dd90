"""The scoring stage: per-image scores (cached by image content) and set metrics (per variant, per category)."""
from __future__ import annotations

import gc
import math
from typing import Any, Sequence

import pandas as pd
import torch

from metrics.base import METRICS, PerImageMetric, SetMetric
from metrics.score_cache import ScoreCache, score_with_cache
from mgt_common.errors import ConfigError

from .config import stable_hash
from .progress import Progress, announce
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

    A computation is journalled under a key of (metric, its parameters, the set's unit keys), so a
    re-run with the same images reuses it.
    """
    from .generate import load_image

    set_metrics = {label: m for label, m in metrics.items() if isinstance(m, SetMetric)}
    if samples.empty or not set_metrics:
        return pd.DataFrame(columns=["variant", "category", "metric", "value", "std", "n", "warnings"])
    known = {r["key"]: r["rows"] for r in store.read_journal("set_metrics", required=("key", "rows"))}
    categories = sorted(c for c in samples["category"].fillna("").unique() if c)
    rows = []
    for label, metric in set_metrics.items():
        for variant, by_variant in samples.groupby("variant", sort=False):
            subsets = [("", by_variant)]
            if len(categories) > 1:
                subsets += [(c, by_variant[by_variant["category"].fillna("") == c]) for c in categories]
            for category, subset in subsets:
                if subset.empty:
                    continue
                key = stable_hash({"metric": label, "describe": metric.describe(),
                                   "units": sorted(subset["unit_key"])}, 32)
                if key not in known:
                    announce(f"set metric {label}: {variant}{' / ' + category if category else ''} "
                             f"({len(subset)} images)")
                    # batches, not one stacked tensor: 3,200 images at 1024² would be 40 GB at once
                    paths = [store.root / p for p in subset["image_path"]]
                    images = (torch.stack([load_image(p) for p in paths[i:i + 64]]) for i in range(0, len(paths), 64))
                    results = metric.compute(images, subset["prompt"].tolist(), world=world,
                                             prompt_ids=subset["prompt_id"].tolist())
                    known[key] = [{"metric": name if name == label or len(results) > 1 else label,
                                   "value": r.value, "std": r.std, "n": r.n, "warnings": r.warnings}
                                  for name, r in results.items()]
                    store.append("set_metrics", [{"key": key, "rows": known[key]}])
                for r in known[key]:
                    rows.append({"variant": variant, "category": category, "metric": r["metric"],
                                 "value": r["value"], "std": r["std"], "n": r["n"],
                                 "warnings": " | ".join(r.get("warnings") or [])})
        unload = getattr(metric, "unload", None)  # free e.g. Inception before the next metric
        if unload is not None:
            unload()
    frame = pd.DataFrame(rows)
    frame["value"] = frame["value"].map(lambda v: v if v is None or not math.isnan(v) else None)
    return frame
