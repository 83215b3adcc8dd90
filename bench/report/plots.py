"""The report's figures (matplotlib, Agg backend, print-readable defaults). Each function writes one PNG.

All figures read the tables of `bench.report.tables` (plus the run's images for the grid), so a
re-render from stored tables draws the same plots.
"""
from __future__ import annotations

import io
import json
import math
import re
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: reports are rendered on headless machines
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import PercentFormatter  # noqa: E402
from PIL import Image  # noqa: E402

from ..rundir.store import atomic_write_bytes  # noqa: E402
from .cost import COST_AXES, pareto  # noqa: E402
from .format import flops_unit  # noqa: E402
from .labels import equal_cost_axis, place_labels, wrap_name  # noqa: E402
from .rundir import Run  # noqa: E402
from .tables import ReportTables  # noqa: E402

STYLE = {
    "figure.dpi": 110, "savefig.dpi": 150, "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9,
    "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3,
    "legend.frameon": False, "image.cmap": "RdBu_r",
    # Variant names, prompts and metric names are user text: "$x$" is drawn as typed, never as mathtext
    # (an unbalanced "$" would otherwise stop the whole report with a ParseSyntaxException).
    "text.parse_math": False,
}
#: win rates are shown in per cent in every plot, as in the tables.
PERCENT = PercentFormatter(1.0, decimals=0)
# Okabe–Ito colours: distinguishable in colour-blind vision and in greyscale print.
PALETTE = ["#000000", "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7"]
# With more variants than colours, each further round of colours gets its own marker: 8 × 8 = 64 distinct styles.
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
#: no figure grows beyond this many inches on a side (at savefig.dpi 150: 2 400 px), whatever the catalogue size.
MAX_INCHES = 16.0
#: the image grid shows the baseline and at most this many variants (the best on the primary metric).
GRID_MAX_VARIANTS = 8
#: pairwise matrices beyond this many variants are drawn for one metric only (all are in pairwise.csv).
PAIRWISE_ALL_METRICS_MAX = 12


def _styles(variants: list[str]) -> dict[str, tuple[str, str]]:
    """A distinct (colour, marker) per variant, up to 64 variants; colours cycle first, markers after."""
    return {v: (PALETTE[i % len(PALETTE)], MARKERS[(i // len(PALETTE)) % len(MARKERS)]) for i, v in enumerate(variants)}


def _colours(variants: list[str]) -> dict[str, str]:
    return {v: c for v, (c, _) in _styles(variants).items()}


def _label_size(n: int) -> float:
    """Tick-label font size for n labels on an axis: 9 pt up to 20 labels, then smaller, at least 5 pt."""
    return 9.0 if n <= 20 else max(5.0, 9.0 * 20 / n)


def _length(n: int, per_item: float, extra: float) -> float:
    """An axis length in inches for n labelled items, capped at MAX_INCHES."""
    return min(MAX_INCHES, per_item * n + extra)


def _panel_width(labels: list[str], cols: int) -> float:
    """Figure width for ``cols`` panels whose y axis carries these labels: 2.9 inches of plot per panel plus
    the longest label (about 0.075 inch a character at 9 pt), so long variant names never squeeze a panel
    to nothing; at most MAX_INCHES."""
    n = len(labels)
    longest = max((len(str(x)) for x in labels), default=0) * 0.075 * _label_size(n) / 9.0
    return min(MAX_INCHES, cols * (2.9 + max(0.7, longest)))


def _grid(n: int, max_cols: int = 3) -> tuple[int, int]:
    cols = min(max_cols, max(1, n))
    return math.ceil(n / cols), cols


def _save(fig, path: Path) -> Path:
    """Save and close a figure; the file is replaced atomically (a link planted at `path` is replaced, not followed)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def better_word(higher_is_better: bool) -> str:
    """Which way a metric's *score* improves, in words: arrows beside a win-rate axis read as its direction."""
    return "higher score is better" if higher_is_better else "lower score is better"


def win_rate_axis_label(baseline: str) -> str:
    """The win-rate axis says which way is better, whatever the metric's own direction."""
    return f"← worse · win rate vs {baseline} · better →"


def win_rate_plot(run: Run, t: ReportTables, path: Path) -> Path | None:
    """Win rate vs the baseline with its Clopper–Pearson interval, one panel per per-image metric (bars)."""
    metrics = [m for m in run.per_image_metrics if m in set(t.win_rates["metric"])]
    if not metrics:
        return None  # nothing compared (e.g. a run of the baseline alone)
    with plt.rc_context(STYLE):
        rows, cols = _grid(len(metrics))
        others = [v for v in run.variants if v != run.baseline]
        height = min(MAX_INCHES, rows * _length(len(others), 0.45 if len(others) <= 20 else 0.2, 1.2))
        fig, axes = plt.subplots(rows, cols, figsize=(_panel_width(others, cols), height), squeeze=False, layout="constrained")
        for ax, m in zip(axes.flat, metrics):
            d = t.win_rates[t.win_rates["metric"] == m].set_index("variant").reindex(others[::-1])
            y = np.arange(len(d))
            err = np.vstack([d["win_rate"] - d["win_rate_lo"], d["win_rate_hi"] - d["win_rate"]])
            colours = ["#0072B2" if s else "#999999" for s in d["significant"].fillna(False)]
            ax.barh(y, d["win_rate"] - 0.5, left=0.5, color=colours, height=0.6)
            ax.errorbar(d["win_rate"], y, xerr=err, fmt="none", ecolor="black", capsize=3, lw=1)
            ax.axvline(0.5, color="black", lw=0.8)
            ax.set_yticks(y, d.index, fontsize=_label_size(len(others)))
            ax.set_xlim(0, 1)
            ax.xaxis.set_major_formatter(PERCENT)
            ax.set_xlabel(win_rate_axis_label(run.baseline))
            ax.set_title(f"{run.display_name(m)}\n({better_word(run.higher_is_better(m))})")
        for ax in list(axes.flat)[len(metrics):]:
            ax.axis("off")
        # no explicit y: constrained layout then keeps the title clear of the panel titles
        fig.suptitle(f"Paired win rate vs {run.baseline} (ties ½; right of 50 % = variant better, whatever the metric's "
                     f"direction);\nwhiskers: {100 * run.settings.confidence:.0f} % clustered Clopper–Pearson CI; "
                     f"blue = significant after {run.settings.correction}", fontsize=8)
        return _save(fig, path)


def pairwise_heatmap(run: Run, t: ReportTables, path: Path) -> Path | None:
    """Row beats column: win-rate matrix per metric (and pooled), annotated with percentages."""
    metrics = list(dict.fromkeys(t.pairwise["metric"]))
    if not metrics:
        return None
    variants = run.variants
    k = len(variants)
    if k > PAIRWISE_ALL_METRICS_MAX:
        # one matrix (pooled, else the primary metric) keeps the figure legible; every matrix is in pairwise.csv
        metrics = ["all"] if "all" in metrics else [run.primary_metric if run.primary_metric in metrics else metrics[0]]
    annotate = k <= 16
    with plt.rc_context({**STYLE, "axes.grid": False}):
        rows, cols = _grid(len(metrics))
        size = min(MAX_INCHES / cols, 0.6 * k + 2.2)
        fig, axes = plt.subplots(rows, cols, figsize=(size * cols, min(MAX_INCHES, size * rows)), squeeze=False,
                                 layout="constrained")
        im = None
        for ax, m in zip(axes.flat, metrics):
            mat = (t.pairwise[t.pairwise["metric"] == m].pivot(index="variant", columns="opponent", values="win_rate")
                   .reindex(index=variants, columns=variants))
            im = ax.imshow(mat.to_numpy(float), vmin=0, vmax=1, cmap="RdBu_r")
            if annotate:
                for i in range(k):
                    for j in range(k):
                        val = mat.iat[i, j]
                        if not np.isnan(val):
                            ax.text(j, i, f"{100 * val:.0f}", ha="center", va="center", fontsize=7,
                                    color="white" if abs(val - 0.5) > 0.3 else "black")
            ax.set_xticks(range(k), variants, rotation=90 if k > 16 else 45, ha="center" if k > 16 else "right",
                          fontsize=_label_size(k))
            ax.set_yticks(range(k), variants, fontsize=_label_size(k))
            ax.set_title("pooled over metrics" if m == "all" else run.display_name(m))
        for ax in list(axes.flat)[len(metrics):]:
            ax.axis("off")
        if im is not None:
            fig.colorbar(im, ax=axes, shrink=0.6, label="row beats column (win rate)", format=PERCENT)
        return _save(fig, path)


def bradley_terry_forest(run: Run, t: ReportTables, path: Path) -> Path | None:
    """Bradley–Terry scores (Elo-like, baseline = 1000) with bootstrap intervals, per metric and pooled."""
    bt = t.bradley_terry
    metrics = list(dict.fromkeys(bt["metric"]))
    if len(run.variants) < 2 or not metrics:
        return None
    styles = _styles(run.variants)
    k = len(run.variants)
    with plt.rc_context(STYLE):
        rows, cols = _grid(len(metrics))
        height = min(MAX_INCHES, rows * _length(k, 0.4 if k <= 20 else 0.2, 1.0))
        width = _panel_width([f"{v} (#00)" for v in run.variants], cols)
        fig, axes = plt.subplots(rows, cols, figsize=(width, height), squeeze=False, layout="constrained")
        for ax, m in zip(axes.flat, metrics):
            d = bt[bt["metric"] == m].sort_values("score")
            y = np.arange(len(d))
            for yi, r in zip(y, d.itertuples()):
                colour, marker = styles.get(r.variant, ("black", "o"))
                ax.plot([r.score_lo, r.score_hi], [yi, yi], color=colour, lw=2)
                ax.plot(r.score, yi, marker, color=colour, markeredgecolor="black", markeredgewidth=0.4)
            ax.set_yticks(y, [f"{r.variant} (#{r.rank})" for r in d.itertuples()], fontsize=_label_size(k))
            ax.axvline(1000, color="grey", lw=0.8, ls="--")
            ax.set_xlabel("Bradley–Terry score")
            ax.set_title("pooled over metrics" if m == "all" else run.display_name(m))
        for ax in list(axes.flat)[len(metrics):]:
            ax.axis("off")
        return _save(fig, path)


def quality_vs_cost(run: Run, t: ReportTables, path: Path) -> Path:
    """Mean score against each measured cost (bench/report/cost.py, `COST_AXES`): transformer FLOPs per image
    (when measured; the Pareto front is taken and drawn on it, as in the cost table), forward passes and
    seconds per image. One row of panels per metric; every panel rings its own front."""
    metrics = run.per_image_metrics
    cost = t.cost
    axes_shown = [a for a in COST_AXES if cost[a].notna().any()]
    styles = _styles(run.variants)
    many = len(run.variants) > 12  # then only the front and the baseline are named; a legend names the rest
    with plt.rc_context(STYLE):
        rows, cols = len(metrics), len(axes_shown)
        fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols + (3.0 if many else 0.0), min(MAX_INCHES, 3.0 * rows)),
                                 squeeze=False, layout="constrained")
        labelled = []
        for i, m in enumerate(metrics):
            y = cost[f"mean_{m}"].to_numpy(float)
            oriented = y * (1 if run.higher_is_better(m) else -1)
            for j, axis in enumerate(axes_shown):
                ax = axes[i, j]
                x = cost[axis].to_numpy(float)
                label = COST_AXES[axis]
                if axis == "flops_per_image":  # in G/TFLOPs: no "1e9" offset over the axis label
                    unit, scale = flops_unit(x)
                    x, label = x / scale, label.replace("FLOPs", unit)
                front = pareto(x, oriented)
                order = np.argsort(x[front])
                ax.step(x[front][order], y[front][order], where="post", color="grey", lw=1, zorder=1)
                named = []
                for xi, yi, v, f in zip(x, y, cost["variant"], front):
                    colour, marker = styles.get(v, ("black", "o"))
                    ax.scatter(xi, yi, color=colour, marker=marker, s=36, zorder=2,
                               label=v if (i, j) == (0, 0) else None, edgecolor="black" if f else "none", linewidth=1.2)
                    if not many or f or v == run.baseline:
                        named.append((xi, yi, v))
                if not equal_cost_axis(ax, x, label):  # no invented spread such as 15.25–16.75 around one value
                    ax.set_xlabel(label)
                ax.ticklabel_format(axis="y", useOffset=False)  # an offset like "+1" hides the values
                arrow = "↑" if run.higher_is_better(m) else "↓"
                ax.set_ylabel(f"mean {run.metric_label(m)} {arrow}")
                labelled.append((ax, named))
        if many:
            fig.legend(loc="outside right upper", fontsize=6, ncols=max(1, math.ceil(len(run.variants) / 30)),
                       markerscale=0.8, handletextpad=0.2)
        front_axis = "FLOPs" if cost["pareto_axis"].iloc[0] == "flops_per_image" else "forward passes"
        fig.suptitle(f"Quality vs cost; ringed = Pareto front of each panel (the cost table's ◆: {front_axis}); "
                     "↑ / ↓ = higher / lower mean is better", fontsize=9)
        # names last, once the layout is final: stacked beside their points, never over each other
        for ax, named in labelled:
            if named:
                place_labels(ax, [p[0] for p in named], [p[1] for p in named], [wrap_name(p[2]) for p in named])
        return _save(fig, path)


def distributions(run: Run, path: Path) -> Path:
    """Box plot of each per-image metric per variant (whiskers 1.5 IQR, means as white dots)."""
    metrics = run.per_image_metrics
    variants = run.variants
    with plt.rc_context(STYLE):
        rows, cols = _grid(len(metrics))
        height = min(MAX_INCHES, rows * _length(len(variants), 0.35 if len(variants) <= 20 else 0.2, 1.2))
        fig, axes = plt.subplots(rows, cols, figsize=(_panel_width(variants, cols), height), squeeze=False, layout="constrained")
        for ax, m in zip(axes.flat, metrics):
            sub = run.scores[run.scores["metric"] == m]
            data = [sub.loc[sub["variant"] == v, "value"].to_numpy(float) for v in variants]
            ax.boxplot(data, orientation="horizontal", tick_labels=variants, showmeans=True, widths=0.6,
                       meanprops={"marker": "o", "markerfacecolor": "white", "markeredgecolor": "black", "markersize": 4},
                       flierprops={"markersize": 2})
            ax.tick_params(axis="y", labelsize=_label_size(len(variants)))
            ax.invert_yaxis()
            ax.set_title(f"{run.display_name(m)} ({better_word(run.higher_is_better(m))})")
            if run.unit(m):
                ax.set_xlabel(run.unit(m))
        for ax in list(axes.flat)[len(metrics):]:
            ax.axis("off")
        return _save(fig, path)


def grid_selection(run: Run, t: ReportTables) -> tuple[str | None, pd.DataFrame]:
    """The (prompt, seed) rows of the image grid: the headline variant's best then worst paired differences
    on the primary metric. Returns ``(headline variant, rows)``."""
    m = run.primary_metric
    wr = t.win_rates[t.win_rates["metric"] == m].sort_values("win_rate", ascending=False)
    if not len(wr):
        first = run.samples.drop_duplicates(["prompt_id", "seed"]).head(2 * run.settings.grid_rows)
        return None, first[["prompt_id", "seed"]].assign(advantage=np.nan, kind="")
    top = wr.iloc[0]["variant"]
    p = t.paired[(t.paired["variant"] == top) & (t.paired["metric"] == m)].sort_values("advantage", ascending=False)
    k = run.settings.grid_rows
    best = p.head(k).assign(kind="best")
    worst = p.iloc[::-1].head(k)
    worst = worst[~worst.set_index(["prompt_id", "seed"]).index.isin(best.set_index(["prompt_id", "seed"]).index)].assign(kind="worst")
    rows = pd.concat([best, worst])
    rows["kind"] = np.where(rows["outcome"] == 0.5, "tie", rows["kind"])  # within the tolerance: not a "best"
    return top, rows[["prompt_id", "seed", "advantage", "kind"]].reset_index(drop=True)


def grid_variants(run: Run, t: ReportTables) -> list[str]:
    """The grid's columns: all variants when they fit, else the baseline and the best by primary win rate."""
    if len(run.variants) <= GRID_MAX_VARIANTS + 1:
        return list(run.variants)
    wr = t.win_rates[(t.win_rates["metric"] == run.primary_metric) & (t.win_rates["variant"] != run.baseline)]
    best = wr.sort_values("win_rate", ascending=False, na_position="last")["variant"].head(GRID_MAX_VARIANTS).tolist()
    if len(best) < GRID_MAX_VARIANTS:
        best += [v for v in run.variants if v != run.baseline and v not in best][: GRID_MAX_VARIANTS - len(best)]
    return [run.baseline] + best


def image_grid(run: Run, t: ReportTables, path: Path, thumb: int = 160) -> Path:
    """Same prompts and seeds across variants (columns, baseline first); rows: best, then worst pairs."""
    top, sel = grid_selection(run, t)
    variants = grid_variants(run, t)
    lookup = run.samples.set_index(["variant", "prompt_id", "seed"])
    prompts = run.samples.drop_duplicates("prompt_id").set_index("prompt_id")["prompt"]
    with plt.rc_context({**STYLE, "axes.grid": False}):
        fig, axes = plt.subplots(len(sel), len(variants), figsize=(1.5 * len(variants) + 2.2, 1.55 * len(sel) + 0.4),
                                 squeeze=False, layout="constrained")
        for i, r in enumerate(sel.itertuples()):
            for j, v in enumerate(variants):
                ax = axes[i, j]
                ax.set_xticks([])
                ax.set_yticks([])
                for s in ax.spines.values():
                    s.set_visible(False)
                try:
                    rel = lookup.loc[(v, r.prompt_id, r.seed), "image_path"]
                    rel = rel.iloc[0] if isinstance(rel, pd.Series) else rel
                    with Image.open(run.path / rel) as im:
                        im = im.convert("RGB")
                        im.thumbnail((thumb, thumb))
                        ax.imshow(np.asarray(im))
                except (KeyError, FileNotFoundError, OSError):
                    ax.text(0.5, 0.5, "missing", ha="center", va="center", transform=ax.transAxes, color="red")
                if i == 0:
                    ax.set_title(v, fontsize=8, color="#0072B2" if v == top else "black")
                if j == 0:
                    # control characters (a NUL in a prompt) have no glyph: drawn as U+FFFD, as browsers do
                    label = re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", "\ufffd", str(prompts.get(r.prompt_id, r.prompt_id)))
                    label = textwrap.shorten(label, 60)
                    delta = "" if np.isnan(r.advantage) else f"\n{r.kind}: Δ {r.advantage:+.3g}"
                    ax.set_ylabel("\n".join(textwrap.wrap(label, 24)) + f"\nseed {r.seed}{delta}", fontsize=6,
                                  rotation=0, ha="right", va="center")
        shown = "" if len(variants) == len(run.variants) else (
            f"\ncolumns: {run.baseline} and the {len(variants) - 1} best of {len(run.variants) - 1} variants by win rate")
        if top is not None:
            fig.suptitle(f"Rows: {top}'s best and worst paired differences vs {run.baseline} on "
                         f"{run.display_name(run.primary_metric)}{shown}", fontsize=8)
        return _save(fig, path)


def trajectory_plot(run: Run, t: ReportTables, path: Path) -> Path | None:
    """Masked tokens left after each step, per variant, for the grid's first prompt and seed (if recorded).

    Variants that reveal on the same schedule have identical trajectories (most design choices change
    *which* tokens are revealed, not how many): they share one line, whose legend entry names them all,
    instead of drawing lines over each other that no dash pattern keeps apart.
    """
    if "trajectory" not in run.samples.columns:
        return None
    _, sel = grid_selection(run, t)
    if not len(sel):
        return None
    pid, seed = sel.iloc[0]["prompt_id"], sel.iloc[0]["seed"]
    sub = run.samples[(run.samples["prompt_id"] == pid) & (run.samples["seed"] == seed)]
    styles = _styles(run.variants)
    groups: dict[tuple, list[str]] = {}
    for r in sub.itertuples():
        try:
            traj = json.loads(r.trajectory) if isinstance(r.trajectory, str) and r.trajectory else None
        except json.JSONDecodeError:
            traj = None
        if traj:
            groups.setdefault(tuple(traj), []).append(r.variant)
    if not groups:
        return None
    with plt.rc_context(STYLE):
        legend = len(groups) > 1 or len(groups[next(iter(groups))]) == 1
        fig, ax = plt.subplots(figsize=(5 + (2.5 if legend else 0) + (3 if len(groups) > 12 else 0), 3),
                               layout="constrained")
        for i, (traj, names) in enumerate(groups.items()):
            colour, marker = styles.get(names[0], ("black", "o"))
            label = names[0] if len(names) == 1 else f"{', '.join(names)} (identical)"
            ax.plot(np.arange(1, len(traj) + 1), traj, marker=marker, markersize=3, color=colour,
                    linestyle=["-", "--", ":", "-."][i % 4], linewidth=1.4,
                    label="\n".join(textwrap.wrap(label, 32)))
        ax.set_xlabel("step")
        ax.set_ylabel("masked tokens left")
        title = f"Decoding trajectory, prompt {pid}, seed {seed}"
        if not legend:  # one line for several variants: say so instead of a legend naming them all
            title += f"\nidentical for all {len(sub)} variants"
        ax.set_title(title, fontsize=9)
        if legend:
            fig.legend(loc="outside right upper", fontsize=6 if len(groups) > 12 else 7,
                       ncols=max(1, math.ceil(len(groups) / 30)))
        return _save(fig, path)


def render_all(run: Run, t: ReportTables, out_dir: Path) -> dict[str, Path]:
    paths = {
        "plots/win_rates": win_rate_plot(run, t, out_dir / "win_rates.png"),
        "plots/pairwise": pairwise_heatmap(run, t, out_dir / "pairwise.png"),
        "plots/bradley_terry": bradley_terry_forest(run, t, out_dir / "bradley_terry.png"),
        "plots/quality_vs_cost": quality_vs_cost(run, t, out_dir / "quality_vs_cost.png"),
        "plots/distributions": distributions(run, out_dir / "distributions.png"),
        "plots/image_grid": image_grid(run, t, out_dir / "image_grid.png"),
    }
    paths["plots/trajectory"] = trajectory_plot(run, t, out_dir / "trajectory.png")
    return {k: v for k, v in paths.items() if v is not None}
