"""Sweep curves: quality and win rate against each swept value, and quality against measured cost.

Meissonic (arXiv 2410.08261) and "Bag of Design Choices" (arXiv 2411.10781) report their choices as
curves (a metric against 8/16/32/64 steps, or against the CFG scale), because a design choice that
helps at 8 steps may not at 32. For a sweep run (bench/sweep.py; ``manifest["sweep"]``) this module
draws, for every variant and per-image metric:

* the **mean score** at each grid point with a percentile interval from the cluster bootstrap over
  prompts (`metrics.stats.cluster_bootstrap_ratio` of per-prompt sums over per-prompt image counts:
  seeds nest in prompts, as in every other interval of the report);
* the **win rate against the baseline at the same steps and guidance** with its interval, taken
  from the report's own win-rate table (so the curve and the tables show the same numbers); a
  baseline point is 50 % by definition and drawn without an interval;
* the mean score against the **measured cost** of each point: transformer FLOPs (when recorded,
  docs/rundir.md "Cost columns"), forward passes (NFE) and seconds per image, means over the point's
  images as generated.

One line joins the points of one variant that differ only in the plotted value (other swept values
fixed). Set metrics (FID, …) enter the CSV with their own value and no interval.
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import PercentFormatter  # noqa: E402
import pandas as pd  # noqa: E402

from metrics import stats  # noqa: E402

from . import format as fmt  # noqa: E402
from ..rundir.store import atomic_write_csv  # noqa: E402
from .pairing import baseline_label, sweep_record  # noqa: E402
from .plots import _save  # noqa: E402
from .rundir import Run  # noqa: E402

#: Run-level axes first, in this order; a variant parameter's axis follows under its own label.
RUN_AXES = ("steps", "guidance")
AXIS_TITLES = {"steps": "sampling steps T", "guidance": "CFG scale w"}
_STYLE = {"figure.dpi": 110, "savefig.dpi": 150, "font.size": 9, "axes.titlesize": 10, "axes.spines.top": False,
          "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3, "legend.frameon": False,
          "text.parse_math": False}  # variant names and values are drawn as typed, never as mathtext
# Okabe–Ito colours (colour-blind safe), as the report's other figures
_PALETTE = ["#000000", "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7"]
_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]

CURVE_COLUMNS = ["variant", "base_variant", "baseline", "is_baseline", "steps", "guidance", "metric", "kind",
                 "mean", "mean_lo", "mean_hi", "win_rate", "win_rate_lo", "win_rate_hi", "n_prompts", "n_images",
                 "forward_passes", "flops_per_image", "seconds_per_image"]


def axes_of(run: Run) -> list[str]:
    """The swept axes in display order: steps, guidance, then the variant parameters (as recorded)."""
    axes = list(sweep_record(run).get("axes", {}))
    return [a for a in RUN_AXES if a in axes] + [a for a in axes if a not in RUN_AXES]


def _mean_with_interval(values: pd.DataFrame, n_boot: int, seed: int, confidence: float, stratum) -> tuple:
    """Mean over images with the cluster-bootstrap percentile interval over prompts."""
    per_prompt = values.groupby("prompt_id", sort=True)["value"].agg(["sum", "count"])
    if per_prompt.empty:
        return (math.nan,) * 3
    weights = stats.bootstrap_weights(len(per_prompt), n_boot, stats.stratum_rng(seed, stratum))
    est, lo, hi = stats.cluster_bootstrap_ratio(per_prompt["sum"].to_numpy(float), per_prompt["count"].to_numpy(float),
                                                confidence=confidence, weights=weights)
    return float(est), float(lo), float(hi)


def compute_curves(run: Run, win_rates: pd.DataFrame) -> pd.DataFrame | None:
    """One row per grid point × metric (see CURVE_COLUMNS plus one column per swept axis); None unless swept.

    `win_rates` is the report's win-rate table (`ReportTables.win_rates`): its rows are reused as they are.
    """
    record = sweep_record(run)
    axes = axes_of(run)
    if not record or not axes:
        return None
    s = run.settings
    points = record["points"]
    samples = run.samples.assign(_flops=pd.to_numeric(run.samples["flops"], errors="coerce")
                                 if "flops" in run.samples.columns else float("nan"))
    cost = samples.groupby("variant").agg(n_images=("unit_key", "size"), forward_passes=("forward_passes", "mean"),
                                          flops_per_image=("_flops", lambda x: x.mean() if x.notna().all() else math.nan),
                                          seconds_per_image=("seconds", "mean"))
    wins = win_rates.set_index(["variant", "metric"]) if len(win_rates) else None
    rows = []
    for v in run.variants:
        point = points.get(v)
        if point is None:
            continue
        base = {"variant": v, "base_variant": point["variant"], "baseline": point["baseline"],
                "is_baseline": v == point["baseline"], "steps": point["steps"], "guidance": point["guidance"],
                **{a: point.get("values", {}).get(a, point.get(a) if a in RUN_AXES else None) for a in axes},
                "n_images": int(cost.loc[v, "n_images"]) if v in cost.index else 0,
                "forward_passes": float(cost.loc[v, "forward_passes"]) if v in cost.index else math.nan,
                "flops_per_image": float(cost.loc[v, "flops_per_image"]) if v in cost.index else math.nan,
                "seconds_per_image": float(cost.loc[v, "seconds_per_image"]) if v in cost.index else math.nan}
        for m in run.per_image_metrics:
            values = run.scores[(run.scores["variant"] == v) & (run.scores["metric"] == m)]
            mean, lo, hi = _mean_with_interval(values, s.n_boot, s.bootstrap_seed, s.confidence, ("curve", v, m))
            if base["is_baseline"]:
                wr = (0.5, math.nan, math.nan)  # the baseline against itself: 50 % by definition
            elif wins is not None and (v, m) in wins.index:
                w = wins.loc[(v, m)]
                wr = (float(w["win_rate"]), float(w["win_rate_lo"]), float(w["win_rate_hi"]))
            else:
                wr = (math.nan,) * 3
            rows.append({**base, "metric": m, "kind": "per-image", "mean": mean, "mean_lo": lo, "mean_hi": hi,
                         "win_rate": wr[0], "win_rate_lo": wr[1], "win_rate_hi": wr[2],
                         "n_prompts": int(values["prompt_id"].nunique())})
        sm = run.set_metrics[(run.set_metrics["variant"] == v) & (run.set_metrics["category"] == "")]
        for r in sm.itertuples():
            rows.append({**base, "metric": r.metric, "kind": "set", "mean": float(r.value), "mean_lo": math.nan,
                         "mean_hi": math.nan, "win_rate": math.nan, "win_rate_lo": math.nan, "win_rate_hi": math.nan,
                         "n_prompts": int(run.samples.loc[run.samples["variant"] == v, "prompt_id"].nunique())})
    columns = CURVE_COLUMNS[:6] + [a for a in axes if a not in RUN_AXES] + CURVE_COLUMNS[6:]
    frame = pd.DataFrame(rows).reindex(columns=columns)
    # the baseline's family first, then the variants in run order; within one, along the swept values
    families = {f: i for i, f in enumerate(dict.fromkeys(
        [record.get("baseline", run.baseline)] + [points[v]["variant"] for v in run.variants if v in points]))}
    order = sorted(range(len(frame)), key=lambda i: (
        families.get(frame["base_variant"].iat[i], len(families)),
        *((0, "") if _missing(frame[a].iat[i]) else (1, _sort_value(frame[a].iat[i])) for a in axes),
        frame["kind"].iat[i] != "per-image"))
    return frame.iloc[order].reset_index(drop=True)


def _sort_value(value):
    # numpy scalars from the frame count as numbers (np.int64 is no int): 8 < 16 < 32, not "16" < "32" < "8"
    numeric = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    return (0, float(value), "") if numeric else (1, 0.0, str(value))


def _line_key(row: pd.Series, axis: str, axes: list[str]) -> tuple:
    """Points on one line: same variant family and the same value of every other swept axis."""
    return (row["base_variant"], *(None if _missing(row[a]) else row[a] for a in axes if a != axis))


def _line_label(key: tuple, axis: str, axes: list[str]) -> str:
    others = [a for a in axes if a != axis]
    fixed = [f"{a}={_fmt_value(v)}" for a, v in zip(others, key[1:]) if v is not None and not _missing(v)]
    return key[0] + (f" ({', '.join(fixed)})" if fixed else "")


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _fmt_value(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _log_scale(values: np.ndarray) -> bool:
    """Log x when the swept values are positive and span a factor of 8 or more (steps 8 → 64)."""
    return bool(len(values) and np.all(values > 0) and values.max() / values.min() >= 8)


def _lines(frame: pd.DataFrame, x: str, axis: str, axes: list[str]):
    """(label, sorted points) per line of a panel; lines with one point are kept (drawn as markers)."""
    for key, sub in frame.groupby(frame.apply(lambda r: _line_key(r, axis, axes), axis=1), sort=False):
        yield _line_label(key, axis, axes), sub.sort_values(x)


def _errorbars(ax, sub: pd.DataFrame, x: str, y: str, colour: str, marker: str, label: str,
               shift: float = 0.0, log: bool = False) -> None:
    """One line with its whiskers; ``shift`` moves it sideways (a fraction of a tick step) so that lines
    with equal values at the same x stay apart: additive on a linear axis, a factor on a log axis."""
    est = sub[y].to_numpy(float)
    lo, hi = sub[f"{y}_lo"].to_numpy(float), sub[f"{y}_hi"].to_numpy(float)
    err = np.vstack([np.where(np.isnan(lo), 0, est - lo), np.where(np.isnan(hi), 0, hi - est)])
    xs = sub[x].to_numpy(float)
    xs = xs * 2.0 ** shift if log else xs + shift
    ax.errorbar(xs, est, yerr=err, color=colour, marker=marker, ms=4, capsize=3, lw=1.2, label=label)


def _dodge(n_lines: int, values: np.ndarray, log: bool) -> list[float]:
    """Sideways shifts of n lines, centred on the true x: 3 % of the smallest gap between swept values each."""
    ticks = np.unique(values)
    gaps = np.diff(np.log2(ticks)) if log else np.diff(ticks)
    step = 0.03 * (float(gaps.min()) if len(gaps) else 1.0)
    return [step * (i - (n_lines - 1) / 2) for i in range(n_lines)]


def _legend_below(fig, ax) -> None:
    """The lines' legend once, below the panels: inside a panel it covers points (above, the title)."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(4, len(handles)), fontsize=7)


def _readable_y(ax) -> None:
    """No offset notation ("1e-10 + 9.99e-1") and a visible range when every point has the same score."""
    ax.ticklabel_format(axis="y", useOffset=False, style="plain")
    lo, hi = ax.get_ylim()
    centre = (lo + hi) / 2
    if hi - lo < 1e-6 * max(1.0, abs(centre)):
        half = max(0.05 * abs(centre), 0.05)
        ax.set_ylim(centre - half, centre + half)


def plot_axis(run: Run, curves: pd.DataFrame, axis: str, path: Path) -> Path | None:
    """Mean score (left) and win rate vs the baseline at the same point (right) against one swept axis."""
    axes = axes_of(run)
    data = curves[(curves["kind"] == "per-image") & curves[axis].notna()]
    metrics = list(dict.fromkeys(data["metric"]))
    if data.empty or data[axis].nunique() < 2:
        return None
    x_values = pd.to_numeric(data[axis], errors="coerce")
    if x_values.isna().any():
        return None  # a swept string parameter: the CSV holds it, a line plot would invent an order
    data = data.assign(_x=x_values.astype(float))
    with plt.rc_context(_STYLE):
        fig, grid = plt.subplots(len(metrics), 2, figsize=(9, 2.9 * len(metrics)), squeeze=False, layout="constrained")
        for row, m in enumerate(metrics):
            sub = data[data["metric"] == m]
            lines = list(_lines(sub, "_x", axis, axes))
            log = _log_scale(data["_x"].to_numpy(float))
            shifts = _dodge(len(lines), data["_x"].to_numpy(float), log)
            for i, (label, line) in enumerate(lines):
                colour, marker = _PALETTE[i % len(_PALETTE)], _MARKERS[i % len(_MARKERS)]
                _errorbars(grid[row, 0], line, "_x", "mean", colour, marker, label, shifts[i], log)
                compared = line[~line["is_baseline"].astype(bool)]
                if len(compared):
                    _errorbars(grid[row, 1], compared, "_x", "win_rate", colour, marker, label, shifts[i], log)
            grid[row, 0].set_ylabel(run.metric_label(m))
            _readable_y(grid[row, 0])
            grid[row, 0].set_title(f"mean {run.display_name(m)} ({100 * run.settings.confidence:.0f} % CI)")
            grid[row, 1].axhline(0.5, color="black", lw=0.8)
            grid[row, 1].set_ylim(-0.02, 1.02)
            grid[row, 1].yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
            grid[row, 1].set_ylabel("win rate (↑ = variant better)")
            grid[row, 1].set_title(f"win rate vs {baseline_label(run)}")
            for ax in grid[row]:
                ax.set_xlabel(AXIS_TITLES.get(axis, axis))
                if _log_scale(data["_x"].to_numpy(float)):
                    ax.set_xscale("log", base=2)
                ticks = sorted(set(data["_x"]))
                ax.set_xticks(ticks, [_fmt_value(t) for t in ticks])
        _legend_below(fig, grid[0, 0])
        fig.suptitle(f"Sweep over {AXIS_TITLES.get(axis, axis)}: one line per variant, other swept values fixed "
                     "(lines drawn slightly apart)")
        _save(fig, path)
    return path


def plot_cost(run: Run, curves: pd.DataFrame, path: Path) -> Path | None:
    """Mean score against measured transformer FLOPs (when recorded), forward passes and seconds per image,
    one line per variant setting."""
    axes = axes_of(run)
    data = curves[curves["kind"] == "per-image"]
    costs = [c for c in ("flops_per_image", "forward_passes", "seconds_per_image") if data[c].notna().any()]
    if data.empty or not costs:
        return None
    labels = {"flops_per_image": "transformer GFLOPs per image (measured)",
              "forward_passes": "forward passes per image (measured)", "seconds_per_image": "seconds per image (measured)"}
    data = data.assign(flops_per_image=data["flops_per_image"] / 1e9)
    metrics = list(dict.fromkeys(data["metric"]))
    along = next((a for a in RUN_AXES if a in axes), axes[0])  # a line traces the run-level sweep
    with plt.rc_context(_STYLE):
        fig, grid = plt.subplots(len(metrics), len(costs), figsize=(4.5 * len(costs), 2.9 * len(metrics)),
                                 squeeze=False, layout="constrained")
        for row, m in enumerate(metrics):
            sub = data[data["metric"] == m]
            for col, x in enumerate(costs):
                for i, (label, line) in enumerate(_lines(sub, x, along, axes)):
                    _errorbars(grid[row, col], line, x, "mean", _PALETTE[i % len(_PALETTE)],
                               _MARKERS[i % len(_MARKERS)], label)
                grid[row, col].set_xlabel(labels[x])
                grid[row, col].set_ylabel(run.metric_label(m))
                _readable_y(grid[row, col])
                if x != "seconds_per_image" and _log_scale(sub[x].to_numpy(float)):
                    grid[row, col].set_xscale("log", base=2)
            grid[row, 0].set_title(f"mean {run.display_name(m)} vs cost")
        _legend_below(fig, grid[0, 0])
        _save(fig, path)
    return path


def curve_table(run: Run, curves: pd.DataFrame) -> pd.DataFrame:
    """The report's view of the primary metric's curve: one row per grid point."""
    axes = axes_of(run)
    primary = run.primary_metric
    d = curves[(curves["metric"] == primary) & (curves["kind"] == "per-image")]
    out = pd.DataFrame({"variant": d["base_variant"]})
    for a in axes:
        out[a] = [("" if _missing(v) else _fmt_value(v)) for v in d[a]]
    out[f"mean {run.metric_label(primary)}"] = [f"{fmt.num(x)} [{fmt.num(lo)}, {fmt.num(hi)}]"
                                                for x, lo, hi in zip(d["mean"], d["mean_lo"], d["mean_hi"])]
    out["win rate vs baseline"] = ["baseline" if b else fmt.pct_ci(x, lo, hi)
                                   for b, x, lo, hi in zip(d["is_baseline"], d["win_rate"], d["win_rate_lo"], d["win_rate_hi"])]
    out["passes / image"] = d["forward_passes"].map(lambda x: fmt.num(x, 4))
    if d["flops_per_image"].notna().any():
        out["GFLOPs / image"] = (d["flops_per_image"] / 1e9).map(lambda x: fmt.num(x, 4))
    out["s / image"] = d["seconds_per_image"].map(lambda x: fmt.num(x, 3))
    return out.reset_index(drop=True)


def render_curves(run: Run, win_rates: pd.DataFrame, out_dir: Path) -> tuple[dict[str, Path], list]:
    """Write ``tables/curves.csv`` and ``plots/curves_*.png``; return the paths and the report sections.

    A run that swept nothing gets neither (empty results).
    """
    from .document import Section

    curves = compute_curves(run, win_rates)
    if curves is None or curves.empty:
        return {}, []
    paths: dict[str, Path] = {}
    table_path = out_dir / "tables" / "curves.csv"
    atomic_write_csv(table_path, curves, float_format="%.6g")
    paths["tables/curves"] = table_path
    axes = axes_of(run)
    record = sweep_record(run)
    s = run.settings
    swept = "; ".join(f"{a} = " + ", ".join(_fmt_value(v) for v in record["axes"][a]) for a in axes)
    sections = [Section(
        "Sweep curves",
        [f"Swept: {swept}. Every grid point is a "
         f"variant of its own, named after its swept values, and is paired with {baseline_label(run)} "
         "(same prompts, seeds, steps and guidance): the win rates above follow this pairing. "
         f"Means carry {100 * s.confidence:.0f} % cluster-bootstrap intervals over prompts ({s.n_boot} resamples); win "
         "rates are the report's own (ties half). Cost is measured: forward passes and seconds per image.",
         f"Primary metric: {run.display_name(run.primary_metric)}; every metric is in `tables/curves.csv`."],
        table=curve_table(run, curves), csv=["curves.csv"])]
    for a in axes:
        plot = plot_axis(run, curves, a, out_dir / "plots" / f"curves_{_file_label(a)}.png")
        if plot is not None:
            paths[f"plots/curves_{_file_label(a)}"] = plot
            sections.append(Section(f"Curves against {AXIS_TITLES.get(a, a)}", image=plot,
                                    caption="Left: mean score, whiskers = cluster-bootstrap percentile intervals over "
                                            "prompts; right: win rate against the baseline at the same steps and "
                                            "guidance (50 % = no difference), whiskers = the win-rate table's clustered "
                                            "Clopper–Pearson intervals.",
                                    csv=["curves.csv"]))
    plot = plot_cost(run, curves, out_dir / "plots" / "curves_cost.png")
    if plot is not None:
        paths["plots/curves_cost"] = plot
        sections.append(Section("Quality against measured cost", image=plot,
                                caption="Mean score against forward passes (left) and seconds (right) per image; "
                                        "one line per variant setting across the sweep.", csv=["curves.csv"]))
    return paths, sections


def _file_label(axis: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in axis)
