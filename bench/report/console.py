"""The cost summary printed at the end of a run: win rate next to seconds and memory per image."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd


def cost_summary(run_dir: Path | str) -> str:
    """A plain-text table from ``tables/cost.csv``: per variant the primary metric's win rate vs the
    baseline, forward passes, seconds and peak MiB per image ("" where not measured)."""
    run_dir = Path(run_dir)
    path = run_dir / "tables" / "cost.csv"
    if not path.is_file():
        return ""
    cost = pd.read_csv(path)
    from .rundir import load_run

    run = load_run(run_dir)
    metric = run.primary_metric
    column = f"win_rate_{metric}" if metric else None

    def fmt(value, spec: str) -> str:
        return "" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)

    rows = [("variant", f"{run.display_name(metric)} win rate" if column else "win rate", "passes / image",
             "s / image", "MiB / image")]
    for r in cost.to_dict("records"):
        win = "baseline" if r["variant"] == run.baseline else (fmt(r.get(column), ".0%") if column else "")
        rows.append((str(r["variant"]), win, fmt(r.get("forward_passes"), ".4g"), fmt(r.get("seconds_per_image"), ".3g"),
                     fmt(r.get("memory_mib_per_image"), ".4g")))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)
