"""The cost summary printed at the end of a run: win rate next to seconds and memory per image."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd


def cost_summary(run_dir: Path | str) -> str:
    """A plain-text table from ``tables/cost.csv``: per variant the primary metric's win rate vs the
    baseline, forward passes, GFLOPs, seconds per image and against the baseline in the same rounds, the
    batch's peak MiB and the MiB per image above what was resident ("" where not measured; ‡ simulated)."""
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
             "GFLOPs / image", "s / image", "time vs baseline", "peak MiB / batch", "MiB / image above resident")]
    for r in cost.to_dict("records"):
        win = "baseline" if r["variant"] == run.baseline else (fmt(r.get(column), ".0%") if column else "")
        flops = r.get("flops_per_image")
        mark = " ‡" if str(r.get("representative")) == "False" else ""  # a simulated layout (cost.csv cost_note)
        rows.append((str(r["variant"]), win, fmt(r.get("forward_passes"), ".4g"),
                     fmt(None if flops is None else flops / 1e9, ".4g"), fmt(r.get("seconds_per_image"), ".3g") + mark,
                     fmt(r.get("relative_seconds"), ".2f") + ("×" if fmt(r.get("relative_seconds"), ".2f") else ""),
                     fmt(r.get("peak_mib_per_batch"), ".4g"), fmt(r.get("working_mib_per_image"), ".3g")))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)
