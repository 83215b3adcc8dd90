"""The same variants across two runs (two models, two step counts, two resolutions …).

Two views, both written as CSV and shown in ``comparison.html`` / ``comparison.md``:

* **win rates side by side**: each variant's win rate against its own run's baseline in run A and in
  run B, and the change B − A with a percentile interval from independent cluster bootstraps of the
  two runs (the runs are independent experiments);
* **B against A, paired**: where both runs scored the same ``(prompt_id, seed)`` with the same prompt
  text, each variant of run B is compared with the same variant of run A directly, pair by pair, with
  the statistics of the main report (win rate, ties half, cluster bootstrap, sign test, Holm).
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from metrics import stats, validation  # noqa: E402

from . import format as fmt  # noqa: E402
from .document import Section, provenance_line  # noqa: E402
from .html import render_html  # noqa: E402
from .markdown import render_markdown  # noqa: E402
from .plots import STYLE, _grid, _save  # noqa: E402
from .rundir import Run, load_run  # noqa: E402
from .tables import CORRECTION_NAMES  # noqa: E402


def _labels(a: Run, b: Run) -> tuple[str, str]:
    la, lb = a.path.name, b.path.name
    return (f"A:{la}", f"B:{lb}") if la == lb else (la, lb)


def _per_prompt(run: Run, metrics: list[str]) -> pd.DataFrame:
    hib = {m: run.higher_is_better(m) for m in metrics}
    tol = {m: run.tie_tolerance(m) for m in metrics}
    # distinct prompt texts are the unit, as in a single run's report (metrics.validation)
    text = dict(zip(run.samples["prompt_id"].astype(str), run.samples["prompt"].astype(str)))
    scores, _ = validation.validate_scores(run.scores[run.scores["metric"].isin(metrics)], text)
    paired = stats.paired_differences(scores, run.baseline, hib, tol)
    return paired.assign(n=1.0).groupby(["variant", "metric", "cluster"])[["outcome", "n"]].sum()


def side_by_side(a: Run, b: Run, n_boot: int = 1000, seed: int = 0, confidence: float = 0.95) -> pd.DataFrame:
    """Win rate vs own baseline in each run and the change B − A with a bootstrap interval."""
    metrics = [m for m in a.per_image_metrics if m in set(b.per_image_metrics)]
    variants = [v for v in a.variants if v in set(b.variants) and v not in (a.baseline, b.baseline)]
    pa, pb = _per_prompt(a, metrics), _per_prompt(b, metrics)
    alpha = (1 - confidence) / 2
    rows = []
    for v in variants:
        for m in metrics:
            reps, est = [], []
            for pp, tag in ((pa, "a"), (pb, "b")):
                try:
                    sub = pp.loc[(v, m)]
                except KeyError:
                    sub = pp.iloc[0:0]
                w = stats.bootstrap_weights(len(sub), n_boot, stats.stratum_rng(seed, (tag, v, m)))
                with np.errstate(invalid="ignore", divide="ignore"):
                    reps.append((w @ sub["outcome"].to_numpy()) / (w @ sub["n"].to_numpy()))
                    est.append(sub["outcome"].sum() / sub["n"].sum() if len(sub) else np.nan)
            diff = reps[1] - reps[0]
            q = lambda x, p: float(np.nanquantile(x, p)) if np.isfinite(x).any() else np.nan  # noqa: E731
            # each run's own win rate: the clustered Clopper–Pearson interval of its report (never zero width)
            ci = []
            for pp in (pa, pb):
                try:
                    sub = pp.loc[(v, m)]
                    ci.append(stats.proportion_interval(sub["outcome"].to_numpy(), sub["n"].to_numpy(), confidence)[1:3])
                except KeyError:
                    ci.append((np.nan, np.nan))
            rows.append({"variant": v, "metric": m,
                         "win_rate_a": est[0], "win_rate_a_lo": float(ci[0][0]), "win_rate_a_hi": float(ci[0][1]),
                         "win_rate_b": est[1], "win_rate_b_lo": float(ci[1][0]), "win_rate_b_hi": float(ci[1][1]),
                         "change": est[1] - est[0], "change_lo": q(diff, alpha), "change_hi": q(diff, 1 - alpha)})
    return pd.DataFrame(rows, columns=["variant", "metric", "win_rate_a", "win_rate_a_lo", "win_rate_a_hi", "win_rate_b",
                                       "win_rate_b_lo", "win_rate_b_hi", "change", "change_lo", "change_hi"])


def paired_across(a: Run, b: Run, n_boot: int = 1000, seed: int = 0, confidence: float = 0.95,
                  correction: str = "holm", alpha: float = 0.05) -> pd.DataFrame:
    """Run B's variant against run A's same variant on shared (prompt_id, seed) with identical prompt text."""
    metrics = [m for m in a.per_image_metrics if m in set(b.per_image_metrics)]
    variants = [v for v in a.variants if v in set(b.variants)]
    text_a = a.samples.drop_duplicates("prompt_id").set_index("prompt_id")["prompt"]
    text_b = b.samples.drop_duplicates("prompt_id").set_index("prompt_id")["prompt"]
    same = [p for p in text_a.index if p in text_b.index and text_a[p] == text_b[p]]
    if not same or not metrics or not variants:
        return pd.DataFrame()
    hib = {m: a.higher_is_better(m) for m in metrics}
    tol = {m: max(a.tie_tolerance(m), b.tie_tolerance(m)) for m in metrics}
    tables = []
    for v in variants:
        sa = a.scores[(a.scores["variant"] == v) & a.scores["metric"].isin(metrics) & a.scores["prompt_id"].isin(same)]
        sb = b.scores[(b.scores["variant"] == v) & b.scores["metric"].isin(metrics) & b.scores["prompt_id"].isin(same)]
        if not len(sa) or not len(sb):
            continue
        both = pd.concat([sa.assign(variant="A"), sb.assign(variant="B")], ignore_index=True)
        both, _ = validation.validate_scores(both, {p: text_a[p] for p in same})
        paired = stats.paired_differences(both, "A", hib, tol)
        if not len(paired):
            continue
        t = stats.win_rate_table(paired, n_boot=n_boot, seed=seed, confidence=confidence)
        tables.append(t.assign(variant=v))
    if not tables:
        return pd.DataFrame()
    return stats.add_adjusted_pvalues(pd.concat(tables, ignore_index=True), correction, alpha)


def _plot(a: Run, sbs: pd.DataFrame, la: str, lb: str, path: Path) -> Path:
    metrics = list(dict.fromkeys(sbs["metric"]))
    with plt.rc_context(STYLE):
        rows, cols = _grid(max(1, len(metrics)))
        variants = list(dict.fromkeys(sbs["variant"]))
        fig, axes = plt.subplots(rows, cols, figsize=(3.8 * cols, (0.5 * len(variants) + 1.2) * rows), squeeze=False, layout="constrained")
        for ax, m in zip(axes.flat, metrics):
            d = sbs[sbs["metric"] == m].set_index("variant").reindex(variants[::-1])
            y = np.arange(len(d))
            for off, tag, colour, label in ((-0.12, "a", "#E69F00", la), (0.12, "b", "#0072B2", lb)):
                est = d[f"win_rate_{tag}"]
                err = np.vstack([est - d[f"win_rate_{tag}_lo"], d[f"win_rate_{tag}_hi"] - est])
                ax.errorbar(est, y + off, xerr=err, fmt="o", color=colour, capsize=3, label=label, ms=4)
            ax.axvline(0.5, color="black", lw=0.8)
            ax.set_yticks(y, d.index)
            ax.set_xlim(0, 1)
            ax.set_xlabel("win rate vs own baseline")
            ax.set_title(a.display_name(m))
            ax.legend(fontsize=7, loc="lower right")
        for ax in list(axes.flat)[len(metrics):]:
            ax.axis("off")
        return _save(fig, path)


def render_comparison(run_a: Path | str, run_b: Path | str, out_dir: Path | str | None = None) -> dict[str, Path]:
    """Write ``comparison.html``, ``comparison.md``, ``tables/comparison_*.csv`` and a plot into ``out_dir``
    (default: ``compare-<A>-vs-<B>`` beside run B). Returns the written paths by name."""
    a, b = load_run(run_a), load_run(run_b)
    out = Path(out_dir) if out_dir is not None else Path(run_b).parent / f"compare-{Path(run_a).name}-vs-{Path(run_b).name}"
    (out / "tables").mkdir(parents=True, exist_ok=True)
    la, lb = _labels(a, b)
    s = a.settings
    sbs = side_by_side(a, b, s.n_boot, s.bootstrap_seed, s.confidence)
    pac = paired_across(a, b, s.n_boot, s.bootstrap_seed, s.confidence, s.correction, s.alpha)
    paths = {"tables/comparison_win_rates": out / "tables" / "comparison_win_rates.csv",
             "tables/comparison_paired": out / "tables" / "comparison_paired.csv"}
    sbs.assign(run_a=la, run_b=lb).to_csv(paths["tables/comparison_win_rates"], index=False, float_format="%.6g")
    pac.to_csv(paths["tables/comparison_paired"], index=False, float_format="%.6g")
    plot = _plot(a, sbs, la, lb, out / "plots" / "comparison_win_rates.png") if len(sbs) else None
    if plot is not None:
        paths["plots/comparison_win_rates"] = plot

    show = pd.DataFrame({
        "variant": sbs["variant"], "metric": sbs["metric"].map(a.display_name),
        f"win rate {la}": [fmt.pct_ci(x, lo, hi) for x, lo, hi in zip(sbs["win_rate_a"], sbs["win_rate_a_lo"], sbs["win_rate_a_hi"])],
        f"win rate {lb}": [fmt.pct_ci(x, lo, hi) for x, lo, hi in zip(sbs["win_rate_b"], sbs["win_rate_b_lo"], sbs["win_rate_b_hi"])],
        "change B − A (points)": [f"{100 * x:+.0f} [{100 * lo:+.0f}, {100 * hi:+.0f}]"
                                  for x, lo, hi in zip(sbs["change"], sbs["change_lo"], sbs["change_hi"])],
    })
    sections = [
        Section("Runs", bullets=[f"A = {la}: {provenance_line(a)}", f"B = {lb}: {provenance_line(b)}"]),
        Section("Win rate against each run's own baseline",
                [f"Baselines: {a.baseline} (A) and {b.baseline} (B). Intervals: {100 * s.confidence:.0f} % cluster bootstrap "
                 f"over prompts ({s.n_boot} resamples); the change's interval combines independent resamples of both runs."],
                table=show, image=plot, csv=["comparison_win_rates.csv"]),
    ]
    if len(pac):
        showp = pd.DataFrame({
            "variant": pac["variant"], "metric": pac["metric"].map(a.display_name), "pairs": pac["n_pairs"],
            f"{lb} better than {la}": [fmt.pct_ci(x, lo, hi) for x, lo, hi in zip(pac["win_rate"], pac["win_rate_lo"], pac["win_rate_hi"])],
            "ties": pac["tie_share"].map(fmt.pct),
            "mean Δ (B − A)": [fmt.num_ci(x, lo, hi) for x, lo, hi in zip(pac["mean_diff"], pac["mean_diff_lo"], pac["mean_diff_hi"])],
            "p sign adj.": pac["p_sign_adj"].map(stats.format_p),
            "survives": np.where(pac["significant"], "yes", "no")})
        sections.append(Section("B against A, paired by prompt and seed",
                                [f"Same variant in both runs, on the prompts and seeds both runs share (same prompt text). "
                                 f"{CORRECTION_NAMES.get(s.correction, s.correction)} correction across the table."], table=showp, csv=["comparison_paired.csv"]))
    else:
        sections.append(Section("B against A, paired by prompt and seed",
                                ["Not available: the runs share no prompt (same id and text) scored on a common metric."]))
    title = f"mgt-bench comparison: {la} vs {lb}"
    line = f"A: {a.manifest.get('config_hash', '?')} · B: {b.manifest.get('config_hash', '?')}"
    paths["html"] = render_html(title, line, sections, out / "comparison.html")
    paths["markdown"] = render_markdown(title, line, sections, out / "comparison.md")
    return paths
