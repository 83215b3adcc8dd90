"""Which baseline each variant is paired with: the run's one baseline, or in a sweep the baseline at
the variant's own steps and guidance (bench/sweep.py records the pairing in ``manifest["sweep"]``).

Comparing ``noise-reg@steps=32`` with ``vanilla@steps=8`` would mix the effect of the design choice
with the effect of four times the steps; the paired comparison of a design choice holds every other
generation setting fixed, so each sweep point has its own baseline.
"""
from __future__ import annotations

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


def baselines(run: Run) -> str | dict[str, str]:
    """What `metrics.stats.paired_differences` pairs with: the run's baseline, or in a sweep each variant's own."""
    mapping = baseline_of(run)
    return run.baseline if len(set(mapping.values())) <= 1 else mapping


def compared_variants(run: Run) -> list[str]:
    """The variants that are compared with a baseline (every baseline of a sweep left out)."""
    mapping = baseline_of(run)
    baselines = set(mapping.values())
    return [v for v in run.variants if v not in baselines]
