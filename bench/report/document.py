"""The report's content as a list of sections, rendered identically by `html` and `markdown`."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from . import format as fmt
from .pairing import baseline_label, compared_variants
from .rundir import Run
from .tables import CORRECTION_NAMES, ReportTables, family_sizes, minimum_detectable_effect, provenance, provenance_json


@dataclass
class Section:
    title: str
    paragraphs: list[str] = field(default_factory=list)
    bullets: list[str] = field(default_factory=list)
    table: pd.DataFrame | None = None
    image: Path | None = None
    caption: str = ""
    csv: list[str] = field(default_factory=list)  # the tables/*.csv behind the numbers
    code: str = ""
    html: str = ""  # an HTML-only block (the paired gallery), already escaped; Markdown shows the paragraphs


def build_sections(run: Run, t: ReportTables, plots: dict[str, Path]) -> list[Section]:
    """The report in reading order: headline, every comparison, set metrics, rankings, breakdowns, cost, figures."""
    secs = [_headline_section(run, t),
            Section("Win rate vs baseline", image=plots.get("plots/win_rates"),
                    caption="Bars start at 50 % (no difference); whiskers are the clustered Clopper–Pearson intervals.",
                    csv=["win_rates.csv"]),
            _comparisons_section(run, t),
            Section("Scores per variant", ["Mean ± standard deviation over all images."],
                    table=fmt.metric_summary(run, t), csv=["metric_summary.csv"])]
    secs += _set_metrics_sections(run, t)
    secs += _ranking_sections(run, t, plots)
    secs += _breakdown_sections(run, t)
    secs.append(_cost_section(run, t, plots))
    secs.append(Section("Score distributions", image=plots.get("plots/distributions"), csv=["metric_summary.csv"]))
    secs.append(Section("Image grid", ["Same prompt and seed in every column; rows are the best, then the worst, "
                                       "paired differences of the top variant on the primary metric."],
                        image=plots.get("plots/image_grid"), csv=["paired_differences.csv"]))
    if plots.get("plots/trajectory"):
        secs.append(Section("Decoding trajectory", image=plots.get("plots/trajectory")))
    if run.warnings:
        secs.append(Section("Warnings", bullets=list(run.warnings)))
    secs.append(Section("Provenance", ["Everything needed to trace these numbers back to their run."],
                        table=provenance_table(run), code=provenance_json(run)))
    return secs


def _correction(run: Run) -> str:
    return CORRECTION_NAMES.get(run.settings.correction, run.settings.correction)


def _family_size(t: ReportTables) -> int:
    """How many comparisons the multiplicity correction covers (every tested variant × metric, all families)."""
    return sum(family_sizes(t.win_rates).values())


def _families_text(run: Run, t: ReportTables) -> str:
    """Which families the correction ran over, e.g. "the 5 comparisons on the primary metric (one family) and the 20 …"."""
    sizes = family_sizes(t.win_rates)
    w = t.win_rates
    diagnostics = list(dict.fromkeys(w.loc[w["family"] == "diagnostic", "metric"])) if "family" in w.columns else []
    parts = []
    if "primary" in sizes:
        parts.append(f"the {sizes['primary']} comparisons on the primary metric {_primary(run)} form one family")
    if "secondary" in sizes:
        parts.append(f"the {sizes['secondary']} on the other metrics another (so they cost the primary metric no power)")
    if "all" in sizes:
        parts.append(f"the {sizes['all']} variant × metric comparisons that were tested form one family")
    text = "; ".join(parts) if parts else "no comparison was tested"
    if diagnostics:
        text += f"; {', '.join(run.display_name(m) for m in diagnostics)} {'is a diagnostic' if len(diagnostics) == 1 else 'are diagnostics'}, reported without a verdict"
    return text


def _mde_text(run: Run, t: ReportTables) -> str:
    """The minimum detectable effect of the primary metric's verdict at this run's size (metrics/power.py)."""
    m = minimum_detectable_effect(run, t.win_rates)
    if not m["n_prompts"]:
        return ""
    agree, independent = m["win_rate_if_seeds_agree"], m["win_rate_if_seeds_independent"]

    at = f"α / {m['family']} = {m['alpha'] / m['family']:.3g}" if m["family"] > 1 else f"α = {m['alpha']}"
    size = f"{m['n_prompts']} prompts × {m['seeds']} seed(s), sign test at {at}, {100 * m['power']:.0f} % power"
    advice = "`run_bench.py --power WIN_RATE` gives the prompts × seeds an effect needs."
    if independent != independent:  # NaN: not even a variant that wins every pair is found that often
        return f" **Minimum detectable effect** at this size ({size}): none — too few prompts for any effect. {advice}"
    agree_text = f"{100 * agree:.0f} %" if agree == agree else "more than any win rate"
    return (f" **Minimum detectable effect** at this size ({size}): a pair-level win rate of {agree_text} if a prompt's "
            f"seeds agree, {100 * independent:.0f} % if they are independent; smaller effects are likely to be reported "
            f"as no detectable difference. {advice}")


def _primary(run: Run) -> str:
    return run.display_name(run.primary_metric) if run.primary_metric else "—"


def _headline_section(run: Run, t: ReportTables) -> Section:
    s = run.settings
    n_prompts = run.samples["prompt"].nunique() if "prompt" in run.samples.columns else run.samples["prompt_id"].nunique()
    surviving = t.win_rates[t.win_rates["significant"]]
    n_missing = int((t.win_rates["status"] != "tested").sum()) if len(t.win_rates) else 0
    missing_text = f"; {n_missing} comparisons without any complete pair are shown as missing and are not in it" if n_missing else ""
    n_variants = len(compared_variants(run))
    return Section(
        "Headline",
        [f"{n_variants} variant{'' if n_variants == 1 else 's'} against the baseline **{baseline_label(run)}** on {n_prompts} distinct prompts × "
         f"{run.seeds_per_prompt()} seed(s), paired by prompt and seed; the distinct prompt text is the unit of analysis. "
         f"Sorted by win rate on {_primary(run)}. Win rate = share of pairs where the variant scores better (ties count "
         f"half), with {100 * s.confidence:.0f} % Clopper–Pearson intervals at the effective number of prompts "
         f"(design effect of seeds within a prompt). ▲* / ▼* = better / worse by the sign test over prompts, "
         f"significant at α = {s.alpha} after {_correction(run)} correction within its family: {_families_text(run, t)}"
         f"{missing_text} ({len(surviving)} {'survives' if len(surviving) == 1 else 'survive'})."
         + (" Set metrics (↓ = lower is better, ↑ = higher) carry jackknife intervals over prompts and are never starred."
            if run.set_metric_names else "") + _mde_text(run, t)],
        bullets=fmt.readings(run, t), table=fmt.headline(run, t), csv=["headline.csv", "win_rates.csv", "set_metrics.csv"])


def _comparisons_section(run: Run, t: ReportTables) -> Section:
    s = run.settings
    return Section(
        "All comparisons with the baseline",
        [f"Mean Δ = mean paired difference variant − {baseline_label(run)} in the metric's units, differences within the "
         f"metric's tie tolerance counted as 0 (interval: Student's t over prompts, widened where the per-prompt "
         f"differences are skewed by Hall's 1992 transformation); read it "
         f"beside the tie share. p sign: exact two-sided sign test (`scipy.stats.binomtest`, ties excluded) on one value "
         f"per {s.test_unit}; 'min. p' is the smallest p it can reach with that many untied {s.test_unit}s (above α the "
         f"comparison is undecidable, not 'no difference'). p Wilcoxon: signed-rank test (`scipy.stats.wilcoxon`, zeros "
         f"dropped) with the method shown. 'adj.' = {_correction(run)}-adjusted within the comparison's family "
         f"({_families_text(run, t)}); the verdict's direction is the sign test's (prompts won vs lost)."],
        table=fmt.win_rates(run, t), csv=["win_rates.csv", "paired_differences.csv"])


def _set_metrics_sections(run: Run, t: ReportTables) -> list[Section]:
    sm = fmt.set_metrics(run, t)
    if not len(sm):
        return []
    return [Section("Set metrics", ["One number per variant over all its images (↓ = lower is better, ↑ = higher), with a "
                                    f"{100 * run.settings.confidence:.0f} % jackknife interval over distinct prompts (each "
                                    "prompt left out in turn with all its seeds; features extracted once; reference "
                                    f"fixed), and the paired difference to {run.baseline} with its interval, both "
                                    "variants computed on the same reduced prompt sets. A difference whose interval includes 0 means the sets "
                                    "cannot be told apart at this size. FID is shown *at this n* (the number of "
                                    "generated images it saw): it is biased upward at small n, by an amount that grows "
                                    "with the set's spread, so its interval is for the FID of sets of this size, and "
                                    "its difference to the baseline is **bias-corrected** by the jackknife (a less "
                                    "diverse variant has less bias, and the plain difference of two FIDs can show it "
                                    "as better when it is worse; the plain one is `diff_plain` in set_metrics.csv). "
                                    "KID and the world's faithfulness and coverage are unbiased at any n: their "
                                    "differences are plain. ± is the metric's own spread over subsets where it gives one (KID)."],
                    table=sm, csv=["set_metrics.csv", "set_metrics_by_category.csv"])]


def _ranking_sections(run: Run, t: ReportTables, plots: dict[str, Path]) -> list[Section]:
    return [
        Section("Pairwise win rates", ["Row variant beats column variant, share of shared prompt–seed units, "
                                       "ties half; 'pooled' counts every metric's battles."],
                image=plots.get("plots/pairwise"), csv=["pairwise.csv"]),
        Section("Bradley–Terry ranking",
                ["Bradley–Terry strengths fitted to all pairwise battles (ties half), on the Chatbot Arena scale "
                 f"(400 points = 10× odds; {run.baseline} = 1000), with cluster-bootstrap intervals over prompts. "
                 "Rank = 1 + number of variants whose lower bound is above this one's upper bound (Chatbot Arena, arXiv 2403.04132)."],
                table=fmt.bradley_terry(run, t), image=plots.get("plots/bradley_terry"), csv=["bradley_terry.csv"])]


def _breakdown_sections(run: Run, t: ReportTables) -> list[Section]:
    secs = []
    cat = fmt.by_category(run, t)
    if len(cat):
        secs.append(Section(f"By prompt category ({_primary(run)})",
                            ["Win rate vs the baseline within each category, prompts resampled within the category; "
                             "n = prompts. Descriptive: p-values in the CSV are not adjusted."],
                            table=cat, csv=["breakdown_by_category.csv"]))
    seed = fmt.by_seed(run, t)
    if len(seed) and run.seeds_per_prompt() > 1:
        secs.append(Section(f"By seed ({_primary(run)})", ["Win rate vs the baseline for each seed separately."],
                            table=seed, csv=["breakdown_by_seed.csv"]))
    return secs


def _cost_section(run: Run, t: ReportTables, plots: dict[str, Path]) -> Section:
    axis = "transformer FLOPs" if t.cost["pareto_axis"].iloc[0] == "flops_per_image" else "forward passes"
    paragraphs = [
        "Passes are network calls (NFE); rows are the row evaluations inside them (a CFG call is a conditional and an "
        "unconditional row, a critic or PAG pass one) and FLOPs their transformer FLOPs, counted by torch's "
        "FlopCounterMode on each variant's warm-up batch (docs/rundir.md, \"Cost columns\"): device-independent "
        "costs that show token merging, feature caching and extra passes for what they are.",
        "Seconds per image are measured after one untimed warm-up batch per variant, as the median over batches with "
        "the 10th–90th percentile beside it (s / pass = median seconds per forward pass). Batches run round robin "
        "over the variants, so \"time vs baseline\" is the median over rounds of the variant's seconds divided by "
        "its baseline's in the same round, with the 10th–90th percentiles of those ratios. Peak memory is per batch "
        "(batch size beside it; weights and everything else held included); MiB / image above resident is the "
        "batch's peak minus what was held at its start, divided by its images.",
        f"◆ = on the Pareto front of {axis} and mean score; Δ / extra pass = change of the mean score per forward "
        "pass beyond the baseline's."]
    notes = fmt.cost_notes(t)
    if notes:
        paragraphs.append("‡ = seconds and memory not representative of a real kernel (the variant runs a simulation):")
    return Section("Cost", paragraphs, bullets=notes, table=fmt.cost(run, t), image=plots.get("plots/quality_vs_cost"),
                   caption=("Quality against each cost: FLOPs (the front drawn), forward passes and seconds; "
                            "all variants measured in this run."), csv=["cost.csv"])


def provenance_line(run: Run) -> str:
    p = provenance(run)
    return (f"config {p['config_hash'] or '?'} · model {run.model_label or '?'} · commit {str(p['git_commit'])[:12] or '?'} · "
            f"seeds {p['seeds']} · created {p['created'] or '?'}")


def provenance_table(run: Run) -> pd.DataFrame:
    p = provenance(run)
    model = p["model"]
    rows = [("config hash", p["config_hash"]), ("created", p["created"]), ("git commit", p["git_commit"]),
            ("device", p["device"]),
            ("model", ", ".join(f"{k}={v}" for k, v in model.items()) if isinstance(model, dict) else str(model)),
            ("scorers", "; ".join(f"{k} v{v.get('version', '?')}" + (f" ({v['weights']})" if v.get("weights") else "")
                                  for k, v in p["scorers"].items())),
            ("packages", ", ".join(f"{k} {v}" for k, v in p["versions"].items())),
            ("seeds", ", ".join(map(str, p["seeds"]))), ("baseline", p["baseline"]),
            ("prompts / images", f"{p['n_prompts']} / {p['n_images']}"),
            ("intervals", p["statistics"]["intervals"]), ("mean differences", p["statistics"]["mean differences"]),
            ("bootstrap", p["statistics"]["bootstrap"]), ("tests", p["statistics"]["tests"])]
    return pd.DataFrame(rows, columns=["item", "value"])
