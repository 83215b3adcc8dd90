"""Read a run directory into memory: the tidy tables, the manifest, and the settings of the report.

The run directory contract (written by the harness, read here only):

* ``samples.csv`` — one row per unit: ``unit_key, variant, prompt_id, prompt, category, seed, steps,
  forward_passes, seconds, image_path`` (relative to the run dir) and optionally ``trajectory``
  (JSON list: masked tokens left after each step) and the cost columns of docs/rundir.md, "Cost columns"
  (rows by kind, FLOPs, memory, round; absent in older runs, then "not measured");
* ``scores.csv`` — one row per unit × per-image metric: ``unit_key, variant, prompt_id, seed, metric, value``;
* ``set_metrics.csv`` — ``variant, category, metric, value, std, n`` (category "" = all prompts) and,
  for the whole-set rows, ``value_lo, value_hi, diff, diff_lo, diff_hi, n_prompts, interval``
  (`bench.set_intervals`);
* ``manifest.json`` — config, config hash, baseline, variants, metrics (``higher_is_better``,
  ``version``, ``tie_tolerance``), model, versions, git commit, device, seeds, timings, created.

Report settings are read from ``manifest["config"]["report"]`` when present (``n_boot``, also
taken from the config's top-level ``bootstrap``,
``bootstrap_seed``, ``confidence``, ``correction``, ``alpha``, ``test_unit``, ``primary_metric``,
``grid_rows``, ``gallery_mib``); the defaults below apply otherwise.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

SAMPLE_COLUMNS = ["unit_key", "variant", "prompt_id", "prompt", "category", "seed", "steps", "forward_passes",
                  "seconds", "image_path"]
SCORE_COLUMNS = ["unit_key", "variant", "prompt_id", "seed", "metric", "value"]
SET_COLUMNS = ["variant", "category", "metric", "value", "std", "n"]
# Text columns are read as text: prompt ids such as "007" must not become the integer 7.
_TEXT = {"unit_key": str, "variant": str, "prompt_id": str, "prompt": str, "category": str, "metric": str,
         "image_path": str, "trajectory": str, "warnings": str, "cost_note": str, "time_slot": str}

# Set metrics whose direction the manifest may not state: Fréchet/kernel distances are lower-better.
_LOWER_IS_BETTER_SET = {"fid", "kid", "fd", "cmmd", "fd_dinov2"}


@dataclass
class ReportSettings:
    n_boot: int = 1000
    bootstrap_seed: int = 0
    confidence: float = 0.95
    correction: str = "holm"
    alpha: float = 0.05
    test_unit: str = "prompt"
    primary_metric: str | None = None
    grid_rows: int = 3  # best and worst pairs each
    gallery_mib: float = 8.0  # thumbnail bytes the paired gallery may embed in report.html (bench/report/gallery.py)

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any], **overrides: Any) -> "ReportSettings":
        config = manifest.get("config") or {}
        cfg = {}
        # the config's top-level `bootstrap` (resamples) is the harness's name for n_boot
        if isinstance(config.get("bootstrap"), int):
            cfg["n_boot"] = config["bootstrap"]
        cfg.update(config.get("report") or {})
        unknown = sorted(set(overrides) - set(cls.__dataclass_fields__))
        if unknown:
            raise TypeError(f"unknown report settings {unknown}; known: {sorted(cls.__dataclass_fields__)}")
        cfg.update({k: v for k, v in overrides.items() if v is not None})
        known = {k: cfg[k] for k in cls.__dataclass_fields__ if k in cfg}
        return cls(**known)


@dataclass
class Run:
    path: Path
    samples: pd.DataFrame
    scores: pd.DataFrame
    set_metrics: pd.DataFrame
    manifest: dict[str, Any]
    settings: ReportSettings
    warnings: list[str] = field(default_factory=list)

    @property
    def baseline(self) -> str:
        return str(self.manifest.get("baseline", "vanilla"))

    def _metric_order(self) -> list[str]:
        """Per-image metrics found in scores.csv, in the config's order (the manifest's "metrics" table is
        written key-sorted, so it only orders metrics the config does not list), then any others."""
        from ..config import metric_labels

        found = list(dict.fromkeys(self.scores["metric"]))
        configured = metric_labels(self.manifest.get("config", {}).get("metrics", []))
        listed = [m for m in dict.fromkeys([*configured, *self.manifest.get("metrics", {})]) if m in found]
        return listed + [m for m in found if m not in listed]

    @property
    def per_image_metrics(self) -> list[str]:
        """Per-image metrics in the config's order (then any others found in scores.csv), primary first."""
        order = self._metric_order()
        primary = self.primary_metric
        return [primary] + [m for m in order if m != primary] if primary in order else order

    @property
    def primary_metric(self) -> str | None:
        """The one asked for, else the first metric that gives verdicts (a diagnostic such as world-loglik is
        primary only when asked for)."""
        order = self._metric_order()
        if self.settings.primary_metric in order:
            return self.settings.primary_metric
        for m in order:
            if self.metric_info(m).get("role") != "diagnostic":
                return m
        return order[0] if order else None

    @property
    def set_metric_names(self) -> list[str]:
        return list(dict.fromkeys(self.set_metrics["metric"])) if len(self.set_metrics) else []

    @property
    def variants(self) -> list[str]:
        """Baseline first, then the manifest's order, then any other variant found in the tables."""
        listed = list(self.manifest.get("variants", {}))
        found = list(dict.fromkeys(list(self.samples["variant"]) + list(self.scores["variant"])))
        order = [self.baseline] + [v for v in listed + found if v != self.baseline]
        return [v for v in dict.fromkeys(order) if v in found]

    def metric_info(self, metric: str) -> dict[str, Any]:
        return dict(self.manifest.get("metrics", {}).get(metric) or {})

    def higher_is_better(self, metric: str) -> bool:
        info = self.metric_info(metric)
        if "higher_is_better" in info:
            return bool(info["higher_is_better"])
        return metric.lower() not in _LOWER_IS_BETTER_SET

    def tie_tolerance(self, metric: str) -> float:
        return float(self.metric_info(metric).get("tie_tolerance") or 0.0)

    def display_name(self, metric: str) -> str:
        info = self.metric_info(metric)
        return str(info.get("display_name") or metric)

    def unit(self, metric: str) -> str:
        """The metric's unit as its scorer declares it (e.g. "nats/token"); "" when none is recorded."""
        return str(self.metric_info(metric).get("unit") or "")

    def metric_label(self, metric: str) -> str:
        """Display name with the unit, e.g. "world-loglik (nats/token)", for means and their axes."""
        unit = self.unit(metric)
        return f"{self.display_name(metric)} ({unit})" if unit else self.display_name(metric)

    @property
    def model_label(self) -> str:
        """A short name of the model: its id, else its name or backend (plus revision when recorded)."""
        model = self.manifest.get("model")
        if not isinstance(model, dict):
            return str(model or "")
        label = str(model.get("id") or model.get("name") or model.get("backend") or "")
        rev = model.get("revision")
        return f"{label}@{rev}" if label and rev else label

    def seeds_per_prompt(self) -> int:
        counts = self.samples.groupby(["variant", "prompt_id"])["seed"].nunique()
        return int(counts.max()) if len(counts) else 0


def _read_csv(path: Path, required: list[str]) -> pd.DataFrame:
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: is this a finished run directory?")
    df = pd.read_csv(path, dtype={k: v for k, v in _TEXT.items()}, keep_default_na=False, na_values=[""])
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(f"{path.name} lacks columns {missing}")
    return df


def load_run(run_dir: Path | str, **setting_overrides: Any) -> Run:
    """Load and check a run directory (see the module docstring for its contract)."""
    run_dir = Path(run_dir)
    manifest_path = run_dir / "manifest.json"
    if not manifest_path.exists():
        raise FileNotFoundError(f"{manifest_path} is missing: is this a run directory?")
    manifest = json.loads(manifest_path.read_text())
    samples = _read_csv(run_dir / "samples.csv", SAMPLE_COLUMNS)
    scores = _read_csv(run_dir / "scores.csv", SCORE_COLUMNS)
    set_path = run_dir / "set_metrics.csv"
    set_metrics = _read_csv(set_path, SET_COLUMNS) if set_path.exists() else pd.DataFrame(columns=SET_COLUMNS)
    for df in (samples, scores, set_metrics):
        for col in ("category", "prompt", "variant", "prompt_id", "metric"):
            if col in df.columns:
                df[col] = df[col].fillna("").astype(str)
    samples["seed"] = samples["seed"].astype(int)
    scores["seed"] = scores["seed"].astype(int)
    scores["value"] = pd.to_numeric(scores["value"], errors="coerce")
    for col in ("value", "std", "n", "value_lo", "value_hi", "diff", "diff_lo", "diff_hi", "n_prompts"):
        if col in set_metrics.columns:
            set_metrics[col] = pd.to_numeric(set_metrics[col], errors="coerce")
    warnings = []
    n_nan = int(scores["value"].isna().sum())
    if n_nan:
        warnings.append(f"{n_nan} scores are missing or not numbers and were left out")
        scores = scores.dropna(subset=["value"])
    if "warnings" in set_metrics.columns:
        # The harness's own caveats about a set metric (e.g. FID on too few images) belong in the report,
        # but only those of the whole-set rows the report's table shows: a per-category row's caveat names
        # its own smaller n, which would contradict the table.
        overall = set_metrics["category"].fillna("").astype(str) == ""
        for w in dict.fromkeys(set_metrics.loc[overall, "warnings"].dropna().astype(str)):
            if w.strip():
                warnings.append(w.strip())
        if (~overall & set_metrics["warnings"].fillna("").astype(str).str.strip().ne("")).any():
            warnings.append("set metrics per prompt category (tables/set_metrics_by_category.csv) use fewer images than "
                            "the whole-set table and carry their own small-sample warnings there")
    for info in manifest.get("metrics", {}).values():  # a scorer's own caveats (e.g. captions cut at 77 tokens)
        warnings.extend(str(note) for note in (info.get("notes") or []) if str(note).strip())
    unknown = sorted(set(scores["metric"]) - set(manifest.get("metrics", {})))
    if unknown:
        warnings.append(f"metrics {unknown} are not in the manifest; assumed higher is better, no tie tolerance")
    # The category of a score comes from its unit, so breakdowns by category need no extra column in scores.csv.
    # Matched on (variant, prompt_id, seed), not unit_key: units are content-addressed, so two prompt ids
    # with the same text share a key but may sit in different categories.
    cat = samples.drop_duplicates(["variant", "prompt_id", "seed"]).set_index(["variant", "prompt_id", "seed"])["category"]
    idx = pd.MultiIndex.from_frame(scores[["variant", "prompt_id", "seed"]])
    scores["category"] = pd.Series(cat.reindex(idx).to_numpy(), index=scores.index).fillna("")
    settings = ReportSettings.from_manifest(manifest, **setting_overrides)
    return Run(run_dir, samples, scores, set_metrics, manifest, settings, warnings)
