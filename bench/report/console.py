"""The summary printed at the end of a run: the report's headline, in its order, beside the cost per image.

Per variant: the primary metric's win rate against its baseline with its interval and the same
significance mark as the report (▲* / ▼*: better / worse by the sign test after the correction), then
forward passes, seconds and peak MiB per image. Rows come in the order of ``tables/headline.csv`` (win
rate on the primary metric, baselines last); every baseline — a sweep has one per steps/guidance
value — says "baseline".
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from .format import pct_ci
from .pairing import baseline_of


def _true(value) -> bool:
    # booleans come back from the CSV as bools, or as strings next to missing values
    return value is True or str(value) == "True"


def cost_summary(run_dir: Path | str) -> str:
    """A plain-text table from ``tables/headline.csv`` and ``tables/cost.csv`` ("" before a report exists):
    per variant, in the headline's order, the primary metric's win rate vs the baseline with its interval,
    forward passes, GFLOPs, seconds per image and against the baseline in the same rounds, the batch's peak
    MiB and the MiB per image above what was resident ("" where not measured; ‡ simulated layout)."""
    run_dir = Path(run_dir)
    head_path, cost_path = run_dir / "tables" / "headline.csv", run_dir / "tables" / "cost.csv"
    if not (head_path.is_file() and cost_path.is_file()):
        return ""
    head = pd.read_csv(head_path, dtype={"variant": str}, keep_default_na=False, na_values=[""])
    cost = pd.read_csv(cost_path, dtype={"variant": str}, keep_default_na=False, na_values=[""]).set_index("variant")
    from .rundir import load_run
    from .tables import CORRECTION_NAMES

    run = load_run(run_dir)
    metric = run.primary_metric
    baselines = {v for v, b in baseline_of(run).items() if v == b} | {run.baseline}

    def fmt(value, spec: str) -> str:
        return "" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)

    def win(r) -> str:
        if r["variant"] in baselines:
            return "baseline"
        key = f"win_rate_{metric}"
        if metric is None or key not in r or r.get(f"status_{metric}") != "tested":
            return "missing"
        mark = ""
        if _true(r.get(f"significant_{metric}")):
            mark = {"better": " ▲*", "worse": " ▼*"}.get(r.get(f"direction_{metric}"), " *")
        return pct_ci(r[key], r[f"{key}_lo"], r[f"{key}_hi"]) + mark

    label = f"{run.display_name(metric)} win rate [{100 * run.settings.confidence:.0f} % CI]" if metric else "win rate"
    rows = [("variant", label, "passes / image", "GFLOPs / image", "s / image", "time vs baseline",
             "peak MiB / batch", "MiB / image above resident")]
    for r in head.to_dict("records"):
        c = cost.loc[r["variant"]] if r["variant"] in cost.index else {}
        flops = c.get("flops_per_image")
        flops = None if flops is None or (isinstance(flops, float) and math.isnan(flops)) else flops / 1e9
        mark = " ‡" if str(c.get("representative")) == "False" else ""  # a simulated layout (cost.csv cost_note)
        relative = fmt(c.get("relative_seconds"), ".2f")
        rows.append((str(r["variant"]), win(r), fmt(c.get("forward_passes"), ".4g"), fmt(flops, ".4g"),
                     fmt(c.get("seconds_per_image"), ".3g") + mark, relative + ("×" if relative else ""),
                     fmt(c.get("peak_mib_per_batch"), ".4g"), fmt(c.get("working_mib_per_image"), ".3g")))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    if metric:
        s = run.settings
        lines += [f"Sorted as the report's headline. ▲* / ▼* = better / worse than the baseline on {run.display_name(metric)}",
                  f"(sign test over {s.test_unit}s, significant at α = {s.alpha} after "
                  f"{CORRECTION_NAMES.get(s.correction, s.correction)} correction)."]
    return "\n".join(lines)
