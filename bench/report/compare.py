"""The same variants across two runs (two models, two step counts, two resolutions …).

Two views, both written as CSV and shown in ``comparison.html`` / ``comparison.md``:

* **win rates side by side**: each variant's win rate against its own run's baseline in run A and in
  run B, and the change B − A with an interval that combines the two runs' own win-rate intervals
  (`change_interval`: MOVER, Newcombe 1998 method 10 / Zou & Donner 2008, on the clustered
  Clopper–Pearson intervals of `metrics.stats.proportion_interval`; the runs are independent experiments);
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

from mgt_common.errors import UserError  # noqa: E402

from ..rundir.store import atomic_write_csv  # noqa: E402

from . import format as fmt  # noqa: E402
from . import pairing  # noqa: E402
from .document import Section, provenance_line  # noqa: E402
from .html import render_html  # noqa: E402
from .markdown import render_markdown  # noqa: E402
from .plots import PERCENT, STYLE, _grid, _save  # noqa: E402
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
    paired = stats.paired_differences(scores, pairing.baselines(run), hib, tol)  # a sweep's points: their own baselines
    return paired.assign(n=1.0).groupby(["variant", "metric", "cluster"])[["outcome", "n"]].sum()


WIN_RATE_COLUMNS = ["variant", "metric", "win_rate", "win_rate_lo", "win_rate_hi"]


def own_win_rates(run: Run) -> tuple[pd.DataFrame, str | None]:
    """The run's own win-rate table as its report shows it (``tables/win_rates.csv``), and a note when it
    had to be recomputed instead (no report tables, or tables of other variants than the run's)."""
    path = run.path / "tables" / "win_rates.csv"
    expected = set(pairing.compared_variants(run))
    if path.exists():
        try:
            table = pd.read_csv(path, dtype={"variant": str, "metric": str}, keep_default_na=False, na_values=[""])
        except (OSError, ValueError, pd.errors.ParserError):
            table = None
        if table is not None and set(WIN_RATE_COLUMNS) <= set(table.columns) and set(table["variant"]) == expected:
            return table, None
        why = "its tables/win_rates.csv does not match its samples (re-rendered since?)"
    else:
        why = "it has no tables/win_rates.csv (its report was never rendered)"
    from .tables import compute_tables

    table = compute_tables(run).win_rates
    return table, (f"{run.path.name}: {why}; its win rates were computed here with its own report settings, "
                   "as its report would show them")


def common_ground(a: Run, b: Run) -> tuple[list[str], list[str], list[str], list[str]]:
    """(metrics, compared variants, variants, prompt ids with the same text) that both runs have."""
    metrics = [m for m in a.per_image_metrics if m in set(b.per_image_metrics)]
    compared = [v for v in pairing.compared_variants(a) if v in set(pairing.compared_variants(b))]
    variants = [v for v in a.variants if v in set(b.variants)]
    text_a = a.samples.drop_duplicates("prompt_id").set_index("prompt_id")["prompt"]
    text_b = b.samples.drop_duplicates("prompt_id").set_index("prompt_id")["prompt"]
    same = [p for p in text_a.index if p in text_b.index and text_a[p] == text_b[p]]
    return metrics, compared, variants, same


def change_interval(outcomes_a: np.ndarray, pairs_a: np.ndarray, outcomes_b: np.ndarray, pairs_b: np.ndarray,
                    confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The change of a win rate between two independent runs, B − A, with its interval.

    Inputs are per-prompt sums (outcomes with ties as ½, and pairs), shape ``(prompts,)`` or ``(prompts, k)``
    for k comparisons at once. Each run's win rate gets the interval its own report gives it
    (`metrics.stats.proportion_interval`: Clopper–Pearson at the clustered effective size, which stays
    honest with two prompts and at 0 % or 100 %), and the two are combined by the method of variance
    estimates recovery (MOVER; Newcombe 1998, "Interval estimation for the difference between independent
    proportions", method 10; Zou & Donner 2008, eq. 5):

        L = (p_B − p_A) − √((p_B − l_B)² + (u_A − p_A)²),   U = (p_B − p_A) + √((u_B − p_B)² + (p_A − l_A)²),

    clipped to [−1, 1]. Each side is at least as wide as either run's own interval on that side, so a
    change is never claimed more precisely than the runs it compares were measured. Coverage at 2–12
    prompts is checked by simulation in tests/test_compare_interval.py. Returns ``(change, low, high)``.
    """
    pa, la, ua, _ = stats.proportion_interval(outcomes_a, pairs_a, confidence)
    pb, lb, ub, _ = stats.proportion_interval(outcomes_b, pairs_b, confidence)
    change = pb - pa
    low = change - np.sqrt((pb - lb) ** 2 + (ua - pa) ** 2)
    high = change + np.sqrt((ub - pb) ** 2 + (pa - la) ** 2)
    return change, np.clip(low, -1.0, 1.0), np.clip(high, -1.0, 1.0)


def side_by_side(a: Run, b: Run, n_boot: int = 1000, seed: int = 0, confidence: float = 0.95,
                 own: tuple[pd.DataFrame, pd.DataFrame] | None = None) -> pd.DataFrame:
    """Win rate vs own baseline in each run (each run's own numbers) and the change B − A with an interval.

    The win rates and their intervals are each run's own (`own_win_rates`, unless `own` passes them), so
    they equal the numbers of that run's report. The change and its interval (`change_interval`) come
    from both runs' per-prompt outcomes at this comparison's `confidence`. `n_boot` and `seed` are not
    used: no resampling is involved (kept for callers that pass them).
    """
    metrics, variants, _, _ = common_ground(a, b)
    tables = own or (own_win_rates(a)[0], own_win_rates(b)[0])
    indexed = [t.drop_duplicates(["variant", "metric"]).set_index(["variant", "metric"]) for t in tables]
    pa, pb = _per_prompt(a, metrics), _per_prompt(b, metrics)
    rows = []
    for v in variants:
        for m in metrics:
            sums = []
            for pp in (pa, pb):
                try:
                    sub = pp.loc[(v, m)]
                except KeyError:
                    sub = pp.iloc[0:0]
                sums += [sub["outcome"].to_numpy(dtype=float), sub["n"].to_numpy(dtype=float)]
            change, low, high = change_interval(*sums, confidence=confidence)
            own_rows = [t.loc[(v, m)] if (v, m) in t.index else None for t in indexed]
            row = {"variant": v, "metric": m}
            for tag, r in zip("ab", own_rows):
                for col in ("win_rate", "win_rate_lo", "win_rate_hi"):
                    row[col.replace("win_rate", f"win_rate_{tag}")] = float(r[col]) if r is not None else np.nan
            row.update({"change": row["win_rate_b"] - row["win_rate_a"], "change_lo": float(low),
                        "change_hi": float(high)})
            rows.append(row)
    return pd.DataFrame(rows, columns=["variant", "metric", "win_rate_a", "win_rate_a_lo", "win_rate_a_hi", "win_rate_b",
                                       "win_rate_b_lo", "win_rate_b_hi", "change", "change_lo", "change_hi"])


def paired_across(a: Run, b: Run, n_boot: int = 1000, seed: int = 0, confidence: float = 0.95,
                  correction: str = "holm", alpha: float = 0.05) -> pd.DataFrame:
    """Run B's variant against run A's same variant on shared (prompt_id, seed) with identical prompt text."""
    metrics, _, variants, same = common_ground(a, b)
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
        # the shared prompts' texts are the same in both runs: distinct texts are the unit of analysis
        both, _ = validation.validate_scores(both, dict(zip(a.samples["prompt_id"].astype(str), a.samples["prompt"].astype(str))))
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
        fig, axes = plt.subplots(rows, cols, figsize=(3.8 * cols, (0.5 * len(variants) + 1.2) * rows + 0.3), squeeze=False, layout="constrained")
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
            ax.xaxis.set_major_formatter(PERCENT)
            ax.set_xlabel("win rate vs own baseline (→ better)")
            ax.set_title(a.display_name(m))
        for ax in list(axes.flat)[len(metrics):]:
            ax.axis("off")
        # one legend for all panels, above them: inside a panel it covered the points
        handles, labels = axes.flat[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside upper center", ncols=2, fontsize=8)
        return _save(fig, path)


def _load(run_dir: Path | str) -> Run:
    try:
        return load_run(run_dir)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise UserError(f"--compare {run_dir}: cannot read it as a finished run ({exc})") from None


def nothing_in_common(a: Run, b: Run, la: str, lb: str) -> str | None:
    """Why neither view of the comparison has a row, or None when at least one has."""
    metrics, compared, variants, same = common_ground(a, b)
    if metrics and (compared or (variants and same)):
        return None
    if not metrics:
        return (f"they share no per-image metric ({la}: {', '.join(a.per_image_metrics) or 'none'}; "
                f"{lb}: {', '.join(b.per_image_metrics) or 'none'})")
    return (f"they share no variant besides their baselines ({la}: {', '.join(a.variants)}; "
            f"{lb}: {', '.join(b.variants)})"
            + ("" if not variants else " and no prompt (same id and text) to pair the shared ones on"))


def render_comparison(run_a: Path | str, run_b: Path | str, out_dir: Path | str | None = None) -> dict[str, Path]:
    """Write ``comparison.html``, ``comparison.md``, ``tables/comparison_*.csv`` and a plot into ``out_dir``
    (default: ``compare-<A>-vs-<B>`` beside run B). Returns the written paths by name.

    Raises UserError, writing nothing, when the runs have nothing in common to compare.
    """
    a, b = _load(run_a), _load(run_b)
    out = Path(out_dir) if out_dir is not None else Path(run_b).parent / f"compare-{Path(run_a).name}-vs-{Path(run_b).name}"
    la, lb = _labels(a, b)
    why = nothing_in_common(a, b, la, lb)
    if why is not None:
        raise UserError(f"--compare {run_a} {run_b}: nothing to compare: {why}")
    s = a.settings
    (own_a, note_a), (own_b, note_b) = own_win_rates(a), own_win_rates(b)
    sbs = side_by_side(a, b, s.n_boot, s.bootstrap_seed, s.confidence, own=(own_a, own_b))
    pac = paired_across(a, b, s.n_boot, s.bootstrap_seed, s.confidence, s.correction, s.alpha)
    paths = {"tables/comparison_win_rates": atomic_write_csv(out / "tables" / "comparison_win_rates.csv",
                                                             sbs.assign(run_a=la, run_b=lb), float_format="%.6g"),
             "tables/comparison_paired": atomic_write_csv(out / "tables" / "comparison_paired.csv", pac,
                                                          float_format="%.6g")}
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
    notes = [n for n in (note_a, note_b) if n]
    sections = [Section("Runs", bullets=[f"A = {la}: {provenance_line(a)}", f"B = {lb}: {provenance_line(b)}"])]
    if len(sbs):
        sections.append(Section(
            "Win rate against each run's own baseline",
            [f"Baselines: {pairing.baseline_label(a)} (A) and {pairing.baseline_label(b)} (B). Each run's win rate "
             "and interval are its own report's (tables/win_rates.csv). The change's interval "
             f"({100 * s.confidence:.0f} %) combines both runs' own intervals (MOVER, Newcombe's method 10), so "
             "it is never narrower on a side than either run's own interval.", *notes],
            table=show, image=plot, csv=["comparison_win_rates.csv"]))
    else:
        sections.append(Section("Win rate against each run's own baseline",
                                ["Not available: the runs share no variant besides their baselines "
                                 f"({la}: {', '.join(a.variants)}; {lb}: {', '.join(b.variants)})."]))
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
