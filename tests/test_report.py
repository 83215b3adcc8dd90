"""bench.report on a synthetic run directory: files, numbers traced to the raw tables, self-containment,
provenance, re-rendering, comparison, and a real headless browser (skipped, with the reason, without one)."""
from __future__ import annotations

import base64
import io
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bench.report import compute_tables, load_run, render_comparison, render_report
from bench.report.screenshot import find_browser, image_load_check, screenshot
from run_fixture import make_run_dir


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    run = make_run_dir(tmp_path_factory.mktemp("run") / "run-a", n_prompts=24)
    return run, render_report(run)


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.attrs = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += [(tag, k, v or "") for k, v in attrs]


def _parse(path: Path) -> _Collect:
    p = _Collect()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def test_writes_every_artefact(rendered):
    run, paths = rendered
    for name in ("win_rates", "pairwise", "bradley_terry", "breakdown_by_category", "breakdown_by_seed", "cost",
                 "set_metrics", "headline"):
        assert (run / "tables" / f"{name}.csv").exists(), name
    for name in ("win_rates", "pairwise", "bradley_terry", "quality_vs_cost", "distributions", "image_grid", "trajectory"):
        assert paths[f"plots/{name}"] == run / "plots" / f"{name}.png"
        with Image.open(paths[f"plots/{name}"]) as im:
            assert im.size[0] > 300 and im.size[1] > 200
    assert paths["html"] == run / "report.html" and paths["markdown"] == run / "report.md"
    assert all(Path(p).exists() for p in paths.values())


def test_win_rates_trace_back_to_raw_scores(rendered):
    """Recompute one headline number from scores.csv with plain pandas, independently of metrics.stats."""
    run, _ = rendered
    scores = pd.read_csv(run / "scores.csv", dtype={"prompt_id": str})
    m = scores[scores.metric == "toy_nll"].pivot_table(index=["prompt_id", "seed"], columns="variant", values="value")
    adv = m["vanilla"] - m["strong"]  # lower is better
    expected = ((adv > 0.05).sum() + 0.5 * (adv.abs() <= 0.05).sum()) / len(adv)
    wr = pd.read_csv(run / "tables" / "win_rates.csv")
    row = wr[(wr.variant == "strong") & (wr.metric == "toy_nll")].iloc[0]
    assert row.win_rate == pytest.approx(expected, abs=1e-6)
    assert row.tie_share == pytest.approx((adv.abs() <= 0.05).mean(), abs=1e-6)
    assert row.win_rate_lo <= row.win_rate <= row.win_rate_hi
    # the effects built into the fixture come out in the right direction and survive Holm
    strong = wr[wr.variant == "strong"]
    assert (strong.win_rate > 0.6).all() and strong.significant.all()
    assert (wr.correction == "holm").all()


def test_report_win_rates_are_the_pipeline_the_tests_test(rendered):
    """tables/win_rates.csv is `metrics.stats.compare_to_baseline`'s table (plus the report's reading), row for row."""
    from metrics import stats

    run, _ = rendered
    r = load_run(run)
    s = r.settings
    metrics = r.per_image_metrics
    table = stats.compare_to_baseline(
        r.scores, r.baseline, {m: r.higher_is_better(m) for m in metrics}, {m: r.tie_tolerance(m) for m in metrics},
        prompt_text=dict(zip(r.samples["prompt_id"].astype(str), r.samples["prompt"].astype(str))),
        variants=r.variants, metrics=metrics, n_boot=s.n_boot, seed=s.bootstrap_seed, confidence=s.confidence,
        correction=s.correction, alpha=s.alpha, test_unit=s.test_unit, primary_metric=r.primary_metric).table
    report = compute_tables(r).win_rates
    assert set(report.loc[report["metric"] == r.primary_metric, "family"]) == {"primary"}
    assert len(report) == len(table) > 0
    keys = ["variant", "metric"]
    pd.testing.assert_frame_equal(report[table.columns].sort_values(keys).reset_index(drop=True),
                                  table.sort_values(keys).reset_index(drop=True))


def test_headline_sorted_and_read_aloud(rendered):
    run, paths = rendered
    head = pd.read_csv(run / "tables" / "headline.csv")
    rates = head["win_rate_hpsv2"].dropna().to_numpy()
    assert np.all(np.diff(rates) <= 0) and head["variant"].iloc[-1] == "vanilla"
    md = paths["markdown"].read_text()
    assert "- strong: better than vanilla on HPS v2.1: won " in md and "after Holm" in md
    assert "fid" in head.columns and "kid_std" in head.columns


def test_html_is_self_contained(rendered):
    """Nothing is loaded from elsewhere: images are data: URIs, the one script is inline (the paired gallery's,
    beside its inert JSON block), and the only links are the page's own anchors and the CSVs beside it."""
    _, paths = rendered
    parsed = _parse(paths["html"])
    assert "link" not in parsed.tags and "iframe" not in parsed.tags and "object" not in parsed.tags
    assert parsed.tags.count("script") == 2
    assert sorted(v for t, k, v in parsed.attrs if t == "script") == ["application/json", "gallery-data"]  # no src
    srcs = [v for t, k, v in parsed.attrs if k == "src"]
    assert len(srcs) >= 7
    for src in srcs:
        assert src.startswith("data:image/png;base64,")
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as im:
            im.verify()
    assert not [v for t, k, v in parsed.attrs if k in ("srcset", "data", "poster", "action")]
    hrefs = [v for t, k, v in parsed.attrs if k == "href"]
    assert hrefs and all(h.startswith("#") or (h.startswith("tables/") and h.endswith(".csv")) for h in hrefs)
    anchors = {v for t, k, v in parsed.attrs if k == "id"}
    assert all(h[1:] in anchors for h in hrefs if h.startswith("#"))  # the table of contents leads somewhere
    assert "url(" not in paths["html"].read_text()  # no CSS-loaded resources either


def test_markdown_images_exist(rendered):
    run, paths = rendered
    md = paths["markdown"].read_text()
    links = [line.split("](")[1].rstrip(")") for line in md.splitlines() if line.startswith("![")]
    assert len(links) >= 7 and all((run / link).exists() for link in links)


def test_provenance_is_stated(rendered):
    _, paths = rendered
    for text in (paths["html"].read_text(), paths["markdown"].read_text()):
        for needle in ("abc123def456", "synthetic-world", "0123456789ab", "2026-11-22", "hpsv2 v2.1", "200 resamples, seed 7"):
            assert needle in text, needle


def test_report_only_rerender_is_reproducible(rendered, tmp_path):
    """Recomputing from the stored run directory (what --report-only does) gives byte-identical tables."""
    run, _ = rendered
    compute_tables(load_run(run)).write(tmp_path)
    for name in ("win_rates", "bradley_terry", "breakdown_by_category", "breakdown_by_seed", "cost", "pairwise"):
        assert (run / "tables" / f"{name}.csv").read_text() == (tmp_path / f"{name}.csv").read_text(), name


def test_bh_option_and_missing_trajectory(tmp_path):
    run = make_run_dir(tmp_path / "r", n_prompts=8, seeds=(0,), with_trajectory=False)
    paths = render_report(run, correction="bh", n_boot=50)
    assert "plots/trajectory" not in paths
    wr = pd.read_csv(run / "tables" / "win_rates.csv")
    assert (wr.correction == "bh").all() and (wr.test_unit == "prompt").all()
    assert "Benjamini–Hochberg" in paths["markdown"].read_text()
    assert "of prompts" in paths["markdown"].read_text()  # one seed: pairs are prompts


def test_compare_two_runs(rendered, tmp_path):
    run, _ = rendered
    twin = tmp_path / "run-b"
    shutil.copytree(run, twin)
    paths = render_comparison(run, twin, tmp_path / "cmp")
    assert paths["html"].exists() and paths["markdown"].exists()
    sbs = pd.read_csv(paths["tables/comparison_win_rates"])
    assert set(sbs.variant) == {"strong", "weak", "worse"} and np.allclose(sbs["change"], 0)
    paired = pd.read_csv(paths["tables/comparison_paired"])
    assert np.allclose(paired["win_rate"], 0.5) and np.allclose(paired["tie_share"], 1.0)  # a run against itself
    other = make_run_dir(tmp_path / "run-c", n_prompts=24, rng_seed=5,
                         variants={"vanilla": 0.0, "strong": 2.0, "weak": 0.05})
    sbs2 = pd.read_csv(render_comparison(run, other, tmp_path / "cmp2")["tables/comparison_win_rates"])
    assert set(sbs2.variant) == {"strong", "weak"}
    s = sbs2[(sbs2.variant == "strong") & (sbs2.metric == "clip_score")].iloc[0]
    assert s.change > 0 and s.change_lo <= s.change <= s.change_hi


def test_renders_in_headless_browser(rendered):
    if find_browser() is None:
        pytest.skip("no Chromium on PATH: install Debian's `chromium` (apt-get install -y chromium) to run this test")
    run, paths = rendered
    shot = run / "report.png"
    res = screenshot(paths["html"], shot)
    assert res, res.reason
    checked = image_load_check(paths["html"])
    assert isinstance(checked, tuple), checked.reason
    n_images, broken = checked
    # the figures, and the thumbnails the gallery's script put on the page
    assert n_images > sum(1 for t, k, _ in _parse(paths["html"]).attrs if t == "img" and k == "src") and broken == 0
    with Image.open(shot) as im:
        px = np.asarray(im.convert("L"), dtype=float)
    assert px.shape == (4000, 1400)
    assert px.std() > 20 and (px < 200).mean() > 0.02  # not a blank page


def test_degenerate_runs_still_render(tmp_path):
    # one variant besides the baseline, one metric, no set_metrics.csv, an image missing on disk
    run = make_run_dir(tmp_path / "small", n_prompts=6, seeds=(0,), variants={"vanilla": 0.0, "x": 1.0})
    scores = pd.read_csv(run / "scores.csv", dtype={"prompt_id": str})
    scores[scores.metric == "hpsv2"].to_csv(run / "scores.csv", index=False)
    (run / "set_metrics.csv").unlink()
    (run / "images" / "x-000-0.png").unlink()
    paths = render_report(run, n_boot=50)
    bt = pd.read_csv(run / "tables" / "bradley_terry.csv")
    assert set(bt.metric) == {"hpsv2"}  # no pooled ranking from a single metric
    assert "Set metrics" not in paths["markdown"].read_text()
    # the baseline alone: nothing to compare, but scores and cost are still reported
    alone = make_run_dir(tmp_path / "alone", n_prompts=4, seeds=(0,), variants={"vanilla": 0.0})
    paths = render_report(alone, n_boot=50)
    assert "plots/win_rates" not in paths and "plots/pairwise" not in paths
    assert pd.read_csv(alone / "tables" / "win_rates.csv").empty


def test_category_follows_the_unit_not_a_shared_key(tmp_path):
    # Content-addressed unit keys: two prompt ids with the same text share a key, yet keep their categories.
    run = make_run_dir(tmp_path / "dup", n_prompts=4, seeds=(0,), variants={"vanilla": 0.0, "x": 1.0})
    samples = pd.read_csv(run / "samples.csv", dtype={"prompt_id": str})
    scores = pd.read_csv(run / "scores.csv", dtype={"prompt_id": str})
    for df in (samples, scores):
        df["unit_key"] = df["unit_key"].str.replace("-001-", "-000-")
    samples.to_csv(run / "samples.csv", index=False)
    scores.to_csv(run / "scores.csv", index=False)
    loaded = load_run(run)
    cats = loaded.scores.drop_duplicates("prompt_id").set_index("prompt_id")["category"]
    assert cats["000"] == "anime" and cats["001"] == "concept-art"


def test_reading_sentences():
    from bench.report.tables import reading

    row = pd.Series({"win_rate": 0.68, "win_rate_lo": 0.63, "win_rate_hi": 0.73, "tie_share": 0.0, "p_sign_adj": 0.0021,
                     "p_sign_min": 1e-15, "test_unit": "prompt", "n_prompts": 50, "n_pairs": 50, "test_wins": 34,
                     "test_losses": 16, "direction": "better", "status": "tested"})
    assert reading(row, "vanilla", "HPS v2.1", "prompts", "holm", 0.05) == \
        "better than vanilla on HPS v2.1: won 34, lost 16 of 50 prompts, p = 0.002 after Holm; win rate 68 % [63, 73] of prompts"
    worse = row.copy()
    worse[["win_rate", "win_rate_lo", "win_rate_hi", "tie_share", "p_sign_adj", "test_wins", "test_losses", "direction"]] = \
        [0.3, 0.22, 0.38, 0.1, 0.0001, 10, 35, "worse"]
    assert reading(worse, "vanilla", "CLIP", "prompts", "bh", 0.05) == \
        ("worse than vanilla on CLIP: won 10, lost 35 of 50 prompts (5 tied), p < 0.001 after Benjamini–Hochberg; "
         "win rate 30 % [22, 38] of prompts, 10 % ties")
    unclear = row.copy()
    unclear["p_sign_adj"] = 0.2
    assert reading(unclear, "vanilla", "HPS v2.1", "prompts", "holm", 0.05).startswith("no detectable difference from vanilla")


def test_reading_direction_comes_from_the_test_not_the_pair_win_rate():
    """A pair-level win rate of 51 % with 32 of 49 prompts lost must read "worse", not "better"."""
    from bench.report.tables import reading

    row = pd.Series({"win_rate": 0.51, "win_rate_lo": 0.45, "win_rate_hi": 0.57, "tie_share": 0.3, "p_sign_adj": 0.044,
                     "p_sign_min": 1e-15, "test_unit": "prompt", "n_prompts": 49, "n_pairs": 196, "test_wins": 17,
                     "test_losses": 32, "direction": "worse", "status": "tested"})
    text = reading(row, "vanilla", "HPS", "prompt–seed pairs", "holm", 0.05)
    assert text.startswith("worse than vanilla on HPS: won 17, lost 32 of 49 prompts")


def test_reading_says_when_a_test_cannot_reach_significance():
    """4 prompts, all won: the sign test's smallest p is 0.125, so no verdict is possible."""
    from bench.report.tables import reading

    row = pd.Series({"win_rate": 1.0, "win_rate_lo": 0.4, "win_rate_hi": 1.0, "tie_share": 0.0, "p_sign_adj": 0.125,
                     "p_sign_min": 0.125, "test_unit": "prompt", "n_prompts": 4, "n_pairs": 4, "test_wins": 4,
                     "test_losses": 0, "direction": "better", "status": "tested"})
    text = reading(row, "vanilla", "HPS", "prompts", "holm", 0.05)
    assert text.startswith("cannot be decided on HPS with this many untied prompts") and "smallest possible p is 0.12" in text
    assert "no detectable difference" not in text


def test_scorer_notes_reach_the_report(tmp_path):
    """A scorer's caveat recorded in the manifest (e.g. captions cut at 77 tokens) is shown under Warnings."""
    import json as _json

    run = make_run_dir(tmp_path / "run", n_prompts=6)
    manifest = _json.loads((run / "manifest.json").read_text())
    first = next(iter(manifest["metrics"]))
    manifest["metrics"][first]["notes"] = ["clip_score: 3 distinct caption(s) exceed 77 tokens and were truncated"]
    (run / "manifest.json").write_text(_json.dumps(manifest))
    paths = render_report(run)
    assert "3 distinct caption(s) exceed 77 tokens" in paths["markdown"].read_text()
