"""Display versions of the report tables (strings, rounded) shared by the HTML and Markdown renderers."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from metrics.stats import format_p

from .pairing import baseline_label, baseline_of
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
    if est is None or (isinstance(est, float) and math.isnan(est)):
        return "—"
    if est == lo == hi == 0:
        return "0 (all within tolerance)"
    if not (_finite(lo) and _finite(hi)):
        return f"{est:+.{digits}g} (no interval)"  # e.g. one prompt: nothing to estimate a spread from
    return f"{est:+.{digits}g} [{lo:+.{digits}g}, {hi:+.{digits}g}]"


def is_baseline(run: Run, variant: str) -> bool:
    """The run's baseline, or in a sweep any point's baseline (each steps/guidance value has its own)."""
    return variant == run.baseline or baseline_of(run).get(variant) == variant


def headline(run: Run, t: ReportTables) -> pd.DataFrame:
    rows = []
    unit, scale = flops_unit(t.headline["flops_per_image"] if "flops_per_image" in t.headline else [])
    for r in t.headline.to_dict("records"):
        row = {"variant": r["variant"]}
        for m in run.per_image_metrics:
            key = f"win_rate_{m}"
            if is_baseline(run, r["variant"]):
                row[f"{run.display_name(m)} win rate"] = "baseline"
            elif r.get(f"status_{m}") != "tested":
                row[f"{run.display_name(m)} win rate"] = "missing"
            else:
                # the star carries the direction of the test that decided it
                mark = {"better": " ▲*", "worse": " ▼*"}.get(r.get(f"direction_{m}"), " *") if r.get(f"significant_{m}") else ""
                row[f"{run.display_name(m)} win rate"] = pct_ci(r[key], r[f"{key}_lo"], r[f"{key}_hi"]) + mark
        for m in run.set_metric_names:
            if m in r:
                # never starred (no test), never without its interval; ↓ marks lower-is-better
                arrow = "↑" if run.higher_is_better(m) else "↓"
                row[f"{set_metric_label(run, t, m)} ({arrow}) [95 % CI]"] = value_ci(r[m], r.get(f"{m}_lo"), r.get(f"{m}_hi"))
        row["passes / image"] = num(r.get("forward_passes"), 4)
        if _measured(r.get("flops_per_image")):
            row[f"{unit} / image"] = num(r.get("flops_per_image") / scale, 4)
        mark = " ‡" if _unrepresentative(r.get("representative")) else ""
        row["s / image (median)"] = num(r.get("seconds_per_image"), 3) + mark
        for label, value in memory_cells(r).items():
            row[label] = value + (mark if value else "")
        rows.append(row)
    return pd.DataFrame(rows)


def _unrepresentative(flag) -> bool:
    """True only for a recorded False (a variant whose costs come from a simulation)."""
    return flag is not None and not _nan(flag) and not bool(flag)


def _nan(value) -> bool:
    return isinstance(value, float) and math.isnan(value)


def flops_unit(values) -> tuple[str, float]:
    """("GFLOPs", 1e9) or ("TFLOPs", 1e12), by the largest value."""
    finite = [float(v) for v in values if v is not None and not _nan(float(v))]
    return ("TFLOPs", 1e12) if finite and max(finite) >= 1e12 else ("GFLOPs", 1e9)


def memory_cells(r) -> dict[str, str]:
    """The memory columns of a cost or headline row, named for what they are (docs/rundir.md, "Cost columns"):
    the batch's peak with the batch size, and the working memory per image above what was resident; a run
    recorded before these has only the batch's peak divided by its images, named so."""
    cells = {}
    if _measured(r.get("peak_mib_per_batch")):
        batch = r.get("batch_images")
        size = f" of {int(batch)}" if _measured(batch) else ""
        cells["peak MiB / batch"] = f"{num(r.get('peak_mib_per_batch'), 4)} (batch{size})"
        cells["MiB / image above resident"] = num(r.get("working_mib_per_image"), 3)
    elif _measured(r.get("legacy_memory_mib_per_image")):
        cells["MiB / image (batch peak ÷ batch size, weights included)"] = num(r.get("legacy_memory_mib_per_image"), 4)
    return cells


def _measured(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def readings(run: Run, t: ReportTables) -> list[str]:
    return [r for r in t.headline["reading"] if not r.endswith(": the baseline")]


def win_rates(run: Run, t: ReportTables) -> pd.DataFrame:
    w = t.win_rates
    return pd.DataFrame({
        "variant": w["variant"],
        "metric": w["metric"].map(run.metric_label),  # with its unit: the means and Δ are in it
        "mean (variant)": w["mean_value"].map(num),
        f"mean ({baseline_label(run)})": w["mean_baseline"].map(num),
        "mean Δ beyond tolerance [95 % CI]": [num_ci(a, b, c) for a, b, c in zip(w["mean_diff"], w["mean_diff_lo"], w["mean_diff_hi"])],
        "ties": w["tie_share"].map(pct),
        "win rate [95 % CI]": [pct_ci(a, b, c) for a, b, c in zip(w["win_rate"], w["win_rate_lo"], w["win_rate_hi"])],
        "W / T / L": [f"{a} / {b} / {c}" for a, b, c in zip(w["wins"], w["ties"], w["losses"])],
        f"{unit_word(w)} won / lost": [f"{a} / {b}" for a, b in zip(w["test_wins"], w["test_losses"])],
        "p sign": w["p_sign"].map(format_p),
        "min. p": w["p_sign_min"].map(format_p),
        "p sign adj.": w["p_sign_adj"].map(format_p),
        "p Wilcoxon adj.": w["p_wilcoxon_adj"].map(format_p),
        "Wilcoxon method": w["wilcoxon_method"],
        "verdict": [verdict(r, run.settings.alpha) for r in w.itertuples()],
    })


def unit_word(w: pd.DataFrame) -> str:
    return "prompts" if (w["test_unit"] == "prompt").all() else "pairs"


def verdict(r, alpha: float) -> str:
    """The table's short form of `tables.reading`: direction and decision from the same sign test."""
    if r.status != "tested":
        return "missing"
    if getattr(r, "family", "") == "diagnostic":
        return "diagnostic (no verdict)"
    if r.p_sign_min > alpha:
        return "undecidable (too few untied prompts)"
    if r.significant:
        return r.direction
    return "no detectable difference"


def metric_summary(run: Run, t: ReportTables) -> pd.DataFrame:
    s = t.metric_summary
    wide = s.assign(cell=[f"{num(a)} ± {num(b, 2)}" for a, b in zip(s["mean"], s["std"])]).pivot(
        index="variant", columns="metric", values="cell").reindex(index=run.variants, columns=run.per_image_metrics)
    wide.columns = [run.metric_label(m) for m in wide.columns]
    return wide.reset_index()


def _finite(x) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def value_ci(v, lo, hi, digits: int = 4) -> str:
    """A set metric with its interval, or "(no interval)" where none could be computed."""
    if not _finite(v):
        return "—"
    if _finite(lo) and _finite(hi):
        return f"{num(v, digits)} [{num(lo, digits)}, {num(hi, digits)}]"
    return f"{num(v, digits)} (no interval)"


def set_metric_label(run: Run, t: ReportTables, metric: str) -> str:
    """A set metric's name as the tables show it: a biased one (FID) says at which n, e.g. "fid at n = 96".

    FID at n = 96 is not FID at n = 50 000: its small-sample bias is part of the number. A metric is
    taken as biased when its paired difference was bias-corrected (bench/set_intervals.py); the n is
    the whole-set n when every variant has the same, else "at each row's n".
    """
    name = run.display_name(metric)
    rows = t.set_metrics[t.set_metrics["metric"] == metric] if len(t.set_metrics) else t.set_metrics
    biased = "bias_corrected" in rows.columns and rows["bias_corrected"].astype(str).str.lower().eq("true").any()
    if not biased:
        return name
    sizes = set(rows["n"].dropna().astype(int))
    return f"{name} at n = {sizes.pop()}" if len(sizes) == 1 else f"{name} at each row's n"


def set_metrics(run: Run, t: ReportTables) -> pd.DataFrame:
    """One row per variant: each set metric with its interval and n, and the paired difference to the baseline."""
    s = t.set_metrics
    if not len(s):
        return pd.DataFrame()
    rows = []
    for v in [v for v in run.variants if v in set(s["variant"])]:
        row = {"variant": v}
        for m in run.set_metric_names:
            r = s[(s["variant"] == v) & (s["metric"] == m)]
            if not len(r):
                continue
            r = r.iloc[0]
            arrow = "↑" if run.higher_is_better(m) else "↓"
            name = set_metric_label(run, t, m)
            n = r.get("n")
            prompts = r.get("n_prompts")
            used = r.get("prompts_used")  # a per-prompt metric may have no value for some prompts (world-coverage)
            size = f"n = {int(n)}" if _finite(n) else "n = ?"
            if _finite(prompts):
                size += f" images, {int(prompts)} prompts"
                if _finite(used) and int(used) < int(prompts):
                    size += f" ({int(used)} with a value)"
            row[f"{name} ({arrow}) [95 % CI]"] = value_ci(r["value"], r.get("value_lo"), r.get("value_hi"))
            if _finite(r.get("std")):
                row[f"{name} ({arrow}) [95 % CI]"] += f" ± {num(r['std'], 2)} over subsets"
            row[f"{run.display_name(m)} size"] = size
            delta = f"Δ {run.display_name(m)} vs {run.baseline}" + (", bias-corrected" if name != run.display_name(m) else "") \
                + " [95 % CI]"
            if v == run.baseline:
                row[delta] = "baseline"
            elif _finite(r.get("diff")) and r["diff"] == r["diff_lo"] == r["diff_hi"] == 0:
                row[delta] = "0 [0, 0] (identical on every prompt set)"
            elif _finite(r.get("diff")):
                row[delta] = num_ci(r["diff"], r["diff_lo"], r["diff_hi"])
            else:
                row[delta] = "—"
        rows.append(row)
    return pd.DataFrame(rows)


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


def seconds_spread(median, p10, p90) -> str:
    if median is None or (isinstance(median, float) and math.isnan(median)):
        return ""
    return f"{num(median, 3)} [{num(p10, 3)}, {num(p90, 3)}]"


def ratio_spread(ratio, p10, p90, rounds, method) -> str:
    """"1.23× [1.10, 1.41] (8 rounds)" for ratios in the same rounds; "1.23× (ratio of medians)" otherwise."""
    if ratio is None or _nan(ratio):
        return ""
    if method == "baseline":
        return "1× (baseline)"
    if method == "same rounds" and _measured(p10):
        return f"{ratio:.2f}× [{p10:.2f}, {p90:.2f}] ({int(rounds)} rounds)"
    return f"{ratio:.2f}× (ratio of medians)"


def cost(run: Run, t: ReportTables) -> pd.DataFrame:
    c = t.cost
    mark = np.where(c["representative"].astype(bool), "", " ‡")
    unit, scale = flops_unit(c["flops_per_image"])
    out = pd.DataFrame({"variant": c["variant"], "images": c["images"],
                        "passes / image": c["forward_passes"].map(lambda x: num(x, 4)),
                        "declared": c["forward_passes_declared"].map(lambda x: "" if x is None or (isinstance(x, float) and math.isnan(x)) else str(int(x))),
                        "rows cond / uncond / perturbed": [
                            " / ".join(num(v, 4) for v in (a, b, d)) if _measured(a) else ""
                            for a, b, d in zip(c["rows_conditional"], c["rows_unconditional"], c["rows_perturbed"])]})
    if c["flops_per_image"].notna().any():
        out[f"{unit} / image"] = (c["flops_per_image"] / scale).map(lambda x: num(x, 4))
        out["FLOPs vs baseline"] = c["relative_flops"].map(lambda x: "" if pd.isna(x) else f"{x:.3g}×")
    out["scorer calls / image"] = c["scorer_calls"].map(lambda x: num(x, 4))
    out["s / image (median [p10, p90])"] = [seconds_spread(a, b, d) + (m if a == a else "") for a, b, d, m in
                                            zip(c["seconds_per_image"], c["seconds_p10"], c["seconds_p90"], mark)]
    out["s / pass"] = c["seconds_per_pass"].map(lambda x: num(x, 3))
    out["time vs baseline (same rounds)"] = [ratio_spread(*values) for values in zip(
        c["relative_seconds"], c["relative_seconds_p10"], c["relative_seconds_p90"], c["relative_seconds_rounds"],
        c["relative_seconds_method"])]
    out["s total"] = c["seconds_total"].map(lambda x: num(x, 4))
    memory = [memory_cells(r) for r in c.to_dict("records")]
    for label in dict.fromkeys(label for cells in memory for label in cells):
        out[label] = [cells.get(label, "") + (m if cells.get(label) else "") for cells, m in zip(memory, mark)]
    if c["weight_mib"].notna().any():
        out["weights MiB (as run)"] = c["weight_mib"].map(lambda x: num(x, 4))
    for m in run.per_image_metrics:
        out[f"{run.display_name(m)} win rate"] = [("baseline" if is_baseline(run, v) else pct(w))
                                                  for v, w in zip(c["variant"], c[f"win_rate_{m}"])]
        out[f"mean {run.metric_label(m)}"] = c[f"mean_{m}"].map(num) + np.where(c[f"pareto_{m}"], " ◆", "")
        out[f"Δ {run.display_name(m)} / extra pass"] = c[f"gain_{m}_per_extra_pass"].map(lambda x: num(x, 3))
    return out


def cost_notes(t: ReportTables) -> list[str]:
    """One line per variant whose seconds and memory are not representative (‡ in the tables)."""
    c = t.cost
    return [f"‡ {v}: {note}" for v, note in zip(c["variant"], c["cost_note"]) if note]
