"""Which baseline each variant is paired with: the run's one baseline, or in a sweep the baseline at
the variant's own steps and guidance (bench/sweep.py records the pairing in ``manifest["sweep"]``).

Comparing ``noise-reg@steps=32`` with ``vanilla@steps=8`` would mix the effect of the design choice
with the effect of four times the steps; the paired comparison of a design choice holds every other
generation setting fixed, so each sweep point has its own baseline.
"""
from __future__ import annotations

from typing import Mapping

import pandas as pd

from metrics import stats

from .rundir import Run


def sweep_record(run: Run) -> dict:
    """The manifest's sweep record (empty for a run that swept nothing)."""
    record = run.manifest.get("sweep")
    return record if isinstance(record, dict) and record.get("points") else {}


def baseline_of(run: Run) -> dict[str, str]:
    """variant → the variant it is compared with (a baseline maps to itself)."""
    points = sweep_record(run).get("points", {})
    return {v: str((points.get(v) or {}).get("baseline") or run.baseline) for v in run.variants}


def baseline_label(run: Run) -> str:
    """How texts name the baseline: its name, or "vanilla at the same steps and guidance" in a sweep of those."""
    record = sweep_record(run)
    run_axes = [a for a in ("steps", "guidance") if a in record.get("axes", {})]
    if not run_axes:
        return run.baseline
    return f"{record.get('baseline', run.baseline)} at the same {' and '.join(run_axes)}"


def paired_differences(run: Run, higher_is_better: Mapping[str, bool],
                       tie_tolerance: Mapping[str, float | None] | None = None,
                       scores: pd.DataFrame | None = None) -> pd.DataFrame:
    """`metrics.stats.paired_differences` of every variant against its own baseline (see `baseline_of`).

    Without a sweep this is exactly ``stats.paired_differences(run.scores, run.baseline, …)``. In a sweep
    each baseline's group (the baseline and the points paired with it) is paired on its own and the
    groups are stacked: variant names are unique, so every later table keeps one row per point.
    `scores` defaults to the run's; pass the validated table (metrics.validation) to pair that instead.
    """
    scores = run.scores if scores is None else scores
    mapping = baseline_of(run)
    baselines = list(dict.fromkeys(mapping[v] for v in run.variants))
    if len(baselines) <= 1:
        return stats.paired_differences(scores, run.baseline, higher_is_better, tie_tolerance)
    parts = []
    for base in baselines:
        members = [v for v in run.variants if mapping[v] == base]
        subset = scores[scores["variant"].isin(members)]
        if base in set(subset["variant"]):
            parts.append(stats.paired_differences(subset, base, higher_is_better, tie_tolerance))
    if not parts:
        return stats.paired_differences(scores, run.baseline, higher_is_better, tie_tolerance)
    return pd.concat(parts, ignore_index=True)


def compared_variants(run: Run) -> list[str]:
    """The variants that are compared with a baseline (every baseline of a sweep left out)."""
    mapping = baseline_of(run)
    baselines = set(mapping.values())
    return [v for v in run.variants if v not in baselines]
