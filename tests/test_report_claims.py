"""What the report claims — missing comparisons, repeated prompts, bad rows, legible plots at 60 variants."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bench.report import compute_tables, load_run, render_report
from bench.report import format as fmt
from bench.report import plots
from mgt_common.errors import UserError
from run_fixture import make_run_dir


def _one_metric(run, metric="hpsv2"):
    scores = pd.read_csv(run / "scores.csv", dtype={"prompt_id": str})
    scores[scores.metric == metric].to_csv(run / "scores.csv", index=False)
    (run / "set_metrics.csv").unlink(missing_ok=True)
    return scores[scores.metric == metric]


def test_all_nan_comparison_is_missing_not_baseline_and_leaves_the_family(tmp_path):
    run = make_run_dir(tmp_path / "r", n_prompts=8, seeds=(0,), variants={"vanilla": 0.0, "a": 1.0, "b": 0.5})
    scores = _one_metric(run).copy()
    scores.loc[scores.variant == "b", "value"] = np.nan
    scores.to_csv(run / "scores.csv", index=False)
    loaded = load_run(run, n_boot=50)
    t = compute_tables(loaded)
    row = t.win_rates.set_index("variant").loc["b"]
    assert row["status"] == "missing" and np.isnan(row["p_sign_adj"])
    assert int(t.win_rates["family_size"].iloc[0]) == 1  # only "a" was tested
    head = fmt.headline(loaded, t).set_index("variant")
    assert head.loc["b"].iloc[0] == "missing" and head.loc["vanilla"].iloc[0] == "baseline"
    assert any("b vs vanilla" in w and "missing" in w for w in loaded.warnings)
    assert any(r.startswith("b: not tested") for r in t.headline["reading"])


def test_repeated_prompt_texts_are_one_unit(tmp_path):
    """Prompt ids sharing a text and seed are copies (identical images): counted once, with a warning naming them."""
    run = make_run_dir(tmp_path / "r", n_prompts=8, seeds=(0,), variants={"vanilla": 0.0, "a": 1.0})
    _one_metric(run)
    samples = pd.read_csv(run / "samples.csv", dtype={"prompt_id": str})
    text = samples.loc[samples.prompt_id == "004", "prompt"].iloc[0]
    samples.loc[samples.prompt_id.isin(["005", "006", "007"]), "prompt"] = text
    samples.to_csv(run / "samples.csv", index=False)
    loaded = load_run(run, n_boot=50)
    t = compute_tables(loaded)
    row = t.win_rates.iloc[0]
    assert row["n_prompts"] == 5 and row["n_pairs"] == 5
    assert any("005, 006, 007" in w for w in loaded.warnings)
    bt = t.bradley_terry
    assert bt["battles"].max() == 5


def test_duplicate_rows_with_different_values_are_refused(tmp_path):
    run = make_run_dir(tmp_path / "r", n_prompts=6, seeds=(0,), variants={"vanilla": 0.0, "a": 1.0})
    scores = _one_metric(run)
    dup = scores[scores.variant == "a"].head(1).assign(value=123.0)
    pd.concat([scores, dup]).to_csv(run / "scores.csv", index=False)
    with pytest.raises(UserError, match="one row per unit"):
        compute_tables(load_run(run, n_boot=50))


def test_identical_duplicate_rows_and_infinities_are_counted_once_and_left_out(tmp_path):
    run = make_run_dir(tmp_path / "r", n_prompts=6, seeds=(0,), variants={"vanilla": 0.0, "a": 1.0})
    scores = _one_metric(run).copy()
    scores.loc[scores.index[scores.variant == "a"][0], "value"] = np.inf
    pd.concat([scores, scores[scores.variant == "a"].tail(2)]).to_csv(run / "scores.csv", index=False)
    loaded = load_run(run, n_boot=50)
    t = compute_tables(loaded)
    row = t.win_rates.iloc[0]
    assert row["n_pairs"] == 5 and np.isfinite(row["mean_value"])
    assert np.isfinite(t.metric_summary["mean"]).all()
    assert any("infinite" in w for w in loaded.warnings) and any("duplicate rows" in w for w in loaded.warnings)


def test_mean_difference_respects_the_tie_tolerance(tmp_path):
    """Differences of 1e-7 inside a tolerance of 1e-3 are ties, not an effect of +1e-7."""
    run = make_run_dir(tmp_path / "r", n_prompts=10, seeds=(0,), variants={"vanilla": 0.0, "a": 0.0})
    scores = _one_metric(run).copy()
    base = scores[scores.variant == "vanilla"].set_index("prompt_id")["value"]
    scores.loc[scores.variant == "a", "value"] = scores.loc[scores.variant == "a", "prompt_id"].map(base) + 1e-7
    scores.to_csv(run / "scores.csv", index=False)
    import json
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["metrics"]["hpsv2"]["tie_tolerance"] = 1e-3
    (run / "manifest.json").write_text(json.dumps(manifest))
    t = compute_tables(load_run(run, n_boot=50))
    row = t.win_rates.iloc[0]
    assert row["mean_diff"] == 0.0 and row["tie_share"] == 1.0 and row["mean_diff_raw"] == pytest.approx(1e-7)
    assert row["win_rate_lo"] < 0.5 < row["win_rate_hi"]  # all ties: a wide interval around 50 %, never [50, 50]


def test_no_zero_width_win_rate_interval(tmp_path):
    """A variant that wins every prompt, and one that ties every prompt, still get honest intervals."""
    run = make_run_dir(tmp_path / "r", n_prompts=12, seeds=(0, 1), variants={"vanilla": 0.0, "win": 0.0, "tie": 0.0})
    scores = _one_metric(run).copy()
    scores.loc[scores.variant == "win", "value"] = 10.0
    base = scores[scores.variant == "vanilla"].set_index(["prompt_id", "seed"])["value"]
    tie = scores.variant == "tie"
    scores.loc[tie, "value"] = base.reindex(pd.MultiIndex.from_frame(scores.loc[tie, ["prompt_id", "seed"]])).to_numpy()
    scores.to_csv(run / "scores.csv", index=False)
    t = compute_tables(load_run(run, n_boot=50)).win_rates.set_index("variant")
    assert t.loc["win", "win_rate"] == 1.0 and t.loc["win", "win_rate_hi"] == 1.0 and 0.6 < t.loc["win", "win_rate_lo"] < 0.99
    assert t.loc["tie", "win_rate_lo"] < 0.4 and t.loc["tie", "win_rate_hi"] > 0.6


def test_plots_stay_legible_with_60_variants(tmp_path):
    variants = {"vanilla": 0.0, **{f"variant-{i:02d}-with-a-long-name": 0.05 * (i % 7) for i in range(59)}}
    run = make_run_dir(tmp_path / "r", n_prompts=3, seeds=(0,), image_size=8, variants=variants, with_trajectory=False)
    _one_metric(run)  # one metric keeps the test fast; panels per metric are laid out as before
    loaded = load_run(run, n_boot=10)
    t = compute_tables(loaded)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "constrained_layout not applied because axes sizes collapse"
        paths = plots.render_all(loaded, t, tmp_path / "plots")
    assert {"plots/win_rates", "plots/pairwise", "plots/bradley_terry", "plots/image_grid", "plots/quality_vs_cost",
            "plots/distributions"} <= set(paths)
    for name, path in paths.items():
        with Image.open(path) as im:
            assert max(im.size) <= 2500, (name, im.size)
    styles = plots._styles(list(variants))
    assert len(set(styles.values())) == 60


def test_set_metrics_shown_with_interval_and_paired_difference(tmp_path):
    run = make_run_dir(tmp_path / "r", n_prompts=6, seeds=(0,), variants={"vanilla": 0.0, "a": 1.0})
    _one_metric(run)
    pd.DataFrame([
        {"variant": "vanilla", "category": "", "metric": "fid", "value": 10.0, "std": np.nan, "n": 6, "warnings": "",
         "value_lo": 8.0, "value_hi": 13.0, "diff": np.nan, "diff_lo": np.nan, "diff_hi": np.nan, "n_prompts": 6},
        {"variant": "a", "category": "", "metric": "fid", "value": 9.0, "std": np.nan, "n": 6,
         "warnings": "fid: only 6 images", "value_lo": 7.5, "value_hi": 12.0, "diff": -1.0, "diff_lo": -2.5,
         "diff_hi": 0.4, "n_prompts": 6},
        {"variant": "a", "category": "photo", "metric": "fid", "value": 30.0, "std": np.nan, "n": 2,
         "warnings": "fid: only 2 images"},
    ]).to_csv(run / "set_metrics.csv", index=False)
    loaded = load_run(run, n_boot=50)
    t = compute_tables(loaded)
    table = fmt.set_metrics(loaded, t).set_index("variant")
    assert table.loc["a", "fid (↓) [95 % CI]"] == "9 [7.5, 12]"
    assert table.loc["a", "Δ fid vs vanilla [95 % CI]"] == "-1 [-2.5, +0.4]"
    head = fmt.headline(loaded, t).set_index("variant")
    assert head.loc["a", "fid (↓) [95 % CI]"] == "9 [7.5, 12]"
    # the warning of the table's own n only; the per-category row's n = 2 is not presented as the table's
    assert "fid: only 6 images" in loaded.warnings and "fid: only 2 images" not in loaded.warnings
