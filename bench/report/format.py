"""Display versions of the report tables (strings, rounded) shared by the HTML and Markdown renderers."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from metrics.stats import format_p

from .pairing import baseline_label
from .rundir import Run
from .tables import ReportTables


def pct(x) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.0f} %"


def pct_ci(est, lo, hi) -> str:
    if est is None or (isinstance(est, float) and math.isnan(est)):
        return "—"
    return f"{100 * est:.0f} % [{100 * lo:.0f}, {100 * hi:.0f}]"


def num(x, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return f"{x:.{digits}g}"


def num_ci(est, lo, hi, digits: int = 3) -> str:
    return f"{est:+.{digits}g} [{lo:+.{digits}g}, {hi:+.{digits}g}]"


def headline(run: Run, t: ReportTables) -> pd.DataFrame:
    rows = []
    for r in t.headline.to_dict("records"):
        row = {"variant": r["variant"]}
        for m in run.per_image_metrics:
            key = f"win_rate_{m}"
            if r.get(key) is None or (isinstance(r.get(key), float) and math.isnan(r[key])):
                row[f"{run.display_name(m)} win rate"] = "baseline"
            else:
                mark = " *" if r.get(f"significant_{m}") else ""
                row[f"{run.display_name(m)} win rate"] = pct_ci(r[key], r[f"{key}_lo"], r[f"{key}_hi"]) + mark
        for m in run.set_metric_names:
            if m in r:
                std = r.get(f"{m}_std")
                row[run.display_name(m)] = num(r[m]) + (f" ± {num(std, 2)}" if std is not None and not (isinstance(std, float) and math.isnan(std)) else "")
        row["passes / image"] = num(r.get("forward_passes"), 4)
        row["s / image"] = num(r.get("seconds_per_image"), 3)
        rows.append(row)
    return pd.DataFrame(rows)


def readings(run: Run, t: ReportTables) -> list[str]:
    return [r for r in t.headline["reading"] if not r.endswith("the baseline")]


def win_rates(run: Run, t: ReportTables) -> pd.DataFrame:
    w = t.win_rates
    return pd.DataFrame({
        "variant": w["variant"],
        "metric": w["metric"].map(run.display_name),
        "mean (variant)": w["mean_value"].map(num),
        f"mean ({baseline_label(run)})": w["mean_baseline"].map(num),
        "mean Δ [95 % CI]": [num_ci(a, b, c) for a, b, c in zip(w["mean_diff"], w["mean_diff_lo"], w["mean_diff_hi"])],
        "win rate [95 % CI]": [pct_ci(a, b, c) for a, b, c in zip(w["win_rate"], w["win_rate_lo"], w["win_rate_hi"])],
        "ties": w["tie_share"].map(pct),
        "W / T / L": [f"{a} / {b} / {c}" for a, b, c in zip(w["wins"], w["ties"], w["losses"])],
        "p sign": w["p_sign"].map(format_p),
        "p sign adj.": w["p_sign_adj"].map(format_p),
        "p Wilcoxon adj.": w["p_wilcoxon_adj"].map(format_p),
        "survives": np.where(w["significant"], "yes", "no"),
    })


def metric_summary(run: Run, t: ReportTables) -> pd.DataFrame:
    s = t.metric_summary
    wide = s.assign(cell=[f"{num(a)} ± {num(b, 2)}" for a, b in zip(s["mean"], s["std"])]).pivot(
        index="variant", columns="metric", values="cell").reindex(index=run.variants, columns=run.per_image_metrics)
    wide.columns = [run.display_name(m) for m in wide.columns]
    return wide.reset_index()


def set_metrics(run: Run, t: ReportTables) -> pd.DataFrame:
    s = t.set_metrics
    if not len(s):
        return pd.DataFrame()
    cells = [num(v) + (f" ± {num(d, 2)}" if not (isinstance(d, float) and math.isnan(d)) else "") + f" (n={int(n) if not math.isnan(n) else '?'})"
             for v, d, n in zip(s["value"], s["std"], s["n"])]
    wide = s.assign(cell=cells).pivot(index="variant", columns="metric", values="cell").reindex(index=run.variants)
    wide.columns = [f"{run.display_name(m)} ({'↑' if run.higher_is_better(m) else '↓'})" for m in wide.columns]
    return wide.reset_index()


def bradley_terry(run: Run, t: ReportTables) -> pd.DataFrame:
    bt = t.bradley_terry
    return pd.DataFrame({
        "metric": bt["metric"].map(lambda m: "pooled" if m == "all" else run.display_name(m)),
        "rank": bt["rank"], "variant": bt["variant"],
        "score [95 % CI]": [f"{a:.0f} [{b:.0f}, {c:.0f}]" for a, b, c in zip(bt["score"], bt["score_lo"], bt["score_hi"])],
        f"P(beats {run.baseline})": bt["win_prob_vs_baseline"].map(pct),
        "battles": bt["battles"].map(lambda x: f"{x:.0f}"),
    })


def by_category(run: Run, t: ReportTables) -> pd.DataFrame:
    b = t.breakdown_by_category
    m = run.primary_metric
    b = b[b["metric"] == m]
    if not len(b):
        return pd.DataFrame()
    cell = [pct_ci(a, lo, hi) + f" (n={n})" for a, lo, hi, n in zip(b["win_rate"], b["win_rate_lo"], b["win_rate_hi"], b["n_prompts"])]
    wide = b.assign(cell=cell).pivot(index="variant", columns="category", values="cell")
    return wide.reindex([v for v in run.variants if v in wide.index]).reset_index()


def by_seed(run: Run, t: ReportTables) -> pd.DataFrame:
    b = t.breakdown_by_seed
    m = run.primary_metric
    b = b[b["metric"] == m]
    if not len(b):
        return pd.DataFrame()
    cell = [pct_ci(a, lo, hi) for a, lo, hi in zip(b["win_rate"], b["win_rate_lo"], b["win_rate_hi"])]
    wide = b.assign(cell=cell, seed=b["seed"].map(lambda s: f"seed {s}")).pivot(index="variant", columns="seed", values="cell")
    return wide.reindex([v for v in run.variants if v in wide.index]).reset_index()


def cost(run: Run, t: ReportTables) -> pd.DataFrame:
    c = t.cost
    out = pd.DataFrame({"variant": c["variant"], "images": c["images"],
                        "passes / image": c["forward_passes"].map(lambda x: num(x, 4)),
                        "declared": c["forward_passes_declared"].map(lambda x: "" if x is None or (isinstance(x, float) and math.isnan(x)) else str(int(x))),
                        "s / image": c["seconds_per_image"].map(lambda x: num(x, 3)),
                        "s total": c["seconds_total"].map(lambda x: num(x, 4))})
    for m in run.per_image_metrics:
        out[f"mean {run.display_name(m)}"] = c[f"mean_{m}"].map(num) + np.where(c[f"pareto_{m}"], " ◆", "")
        out[f"Δ {run.display_name(m)} / extra pass"] = c[f"gain_{m}_per_extra_pass"].map(lambda x: num(x, 3))
    return out
