"""What the report says about its statistics: families, diagnostics, minimum detectable effect, FID at n."""
from __future__ import annotations

import json

import pandas as pd

from bench.report import compute_tables, load_run
from bench.report import format as fmt
from bench.report.document import build_sections
from metrics import power
from run_fixture import make_run_dir


def _mark_diagnostic(run, metric):
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["metrics"][metric]["role"] = "diagnostic"
    (run / "manifest.json").write_text(json.dumps(manifest))


def test_primary_family_secondary_family_and_a_diagnostic_without_verdict(tmp_path):
    run = make_run_dir(tmp_path / "r", n_prompts=12, seeds=(0, 1))
    _mark_diagnostic(run, "toy_nll")
    loaded = load_run(run, n_boot=50)
    assert loaded.primary_metric == "hpsv2"
    t = compute_tables(loaded)
    w = t.win_rates.set_index(["variant", "metric"])
    assert set(w.xs("hpsv2", level="metric")["family"]) == {"primary"}
    assert set(w.xs("clip_score", level="metric")["family"]) == {"secondary"}
    assert set(w.xs("toy_nll", level="metric")["family"]) == {"diagnostic"}
    assert (w.xs("hpsv2", level="metric")["family_size"] == 3).all()  # strong, weak, worse
    diag = w.xs("toy_nll", level="metric")
    assert not diag["significant"].any() and diag["p_sign_adj"].isna().all()
    assert all("a diagnostic: no verdict" in r for r in diag["reading"])
    table = fmt.win_rates(loaded, t)
    assert set(table.loc[table["metric"] == "toy_nll", "verdict"]) == {"diagnostic (no verdict)"}
    headline = build_sections(loaded, t, {})[0].paragraphs[0]
    assert "the 3 comparisons on the primary metric HPS v2.1 form one family" in headline
    assert "the 3 on the other metrics another" in headline and "toy_nll is a diagnostic" in headline


def test_a_diagnostic_is_primary_only_when_asked_for(tmp_path):
    run = make_run_dir(tmp_path / "r", n_prompts=8, seeds=(0,))
    _mark_diagnostic(run, "hpsv2")  # the manifest's first metric
    assert load_run(run).primary_metric == "clip_score"
    asked = load_run(run, primary_metric="hpsv2")
    assert asked.primary_metric == "hpsv2"
    t = compute_tables(asked)
    assert set(t.win_rates.loc[t.win_rates["metric"] == "hpsv2", "family"]) == {"primary"}  # tested, as chosen


def test_the_default_primary_metric_is_the_first_one_the_config_lists(tmp_path):
    """The runner writes the manifest with sorted keys, so its metrics table is alphabetical: the config's
    own list decides which metric is first (a run with metrics = [hpsv2, clip_score] ranks by hpsv2)."""
    run = make_run_dir(tmp_path / "r", n_prompts=8, seeds=(0,))
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["config"]["metrics"] = ["toy_nll", {"name": "hpsv2"}, "clip_score", "fid"]
    (run / "manifest.json").write_text(json.dumps(manifest, sort_keys=True))
    assert list(json.loads((run / "manifest.json").read_text())["metrics"])[0] == "clip_score"  # sorted first
    assert load_run(run).primary_metric == "toy_nll"
    _mark_diagnostic(run, "toy_nll")  # a diagnostic is passed over for the next one the config lists
    assert load_run(run).primary_metric == "hpsv2"


def test_headline_states_the_minimum_detectable_effect(tmp_path):
    run = make_run_dir(tmp_path / "r", n_prompts=16, seeds=(0, 1))
    loaded = load_run(run, n_boot=50)
    t = compute_tables(loaded)
    headline = build_sections(loaded, t, {})[0].paragraphs[0]
    agree = power.minimum_detectable_win_rate(16, 2, 1.0, 0.05, 3)
    independent = power.minimum_detectable_win_rate(16, 2, 0.0, 0.05, 3)
    assert "Minimum detectable effect" in headline and "16 prompts × 2 seed(s), sign test at α / 3" in headline
    assert f"{100 * agree:.0f} % if a prompt's seeds agree, {100 * independent:.0f} % if they are independent" in headline
    tiny = make_run_dir(tmp_path / "tiny", n_prompts=3, seeds=(0,))
    loaded = load_run(tiny, n_boot=50)
    assert "none — too few prompts for any effect" in build_sections(loaded, compute_tables(loaded), {})[0].paragraphs[0]


def test_fid_is_labelled_at_its_n_and_its_difference_as_bias_corrected(tmp_path):
    run = make_run_dir(tmp_path / "r", n_prompts=8, seeds=(0, 1))
    sets = pd.read_csv(run / "set_metrics.csv", keep_default_na=False, na_values=[""])
    whole = sets["category"].isna() | (sets["category"] == "")
    sets.loc[whole & (sets["metric"] == "fid"), "bias_corrected"] = True
    sets.loc[whole & (sets["metric"] == "kid"), "bias_corrected"] = False
    for col, value in (("diff", 0.5), ("diff_lo", 0.1), ("diff_hi", 0.9), ("value_lo", 1.0), ("value_hi", 30.0)):
        sets.loc[whole & (sets["variant"] != "vanilla"), col] = value
    sets.to_csv(run / "set_metrics.csv", index=False)
    loaded = load_run(run, n_boot=50)
    t = compute_tables(loaded)
    table = fmt.set_metrics(loaded, t)
    assert "fid at n = 16 (↓) [95 % CI]" in table.columns and "kid (↓) [95 % CI]" in table.columns
    assert "Δ fid vs vanilla, bias-corrected [95 % CI]" in table.columns and "Δ kid vs vanilla [95 % CI]" in table.columns
    assert "fid at n = 16 (↓) [95 % CI]" in fmt.headline(loaded, t).columns
