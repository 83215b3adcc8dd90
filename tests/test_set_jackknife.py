"""FID/KID on re-weighted prompt sets from features computed once — against torchmetrics and direct formulas — and
the scoring stage that extracts them once per variant for values, categories and jackknife intervals."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from scipy import linalg

from metrics.fid import ReferenceStats, fid_from_features
from metrics.set_jackknife import fid_resampled, kid_resampled


@pytest.mark.parametrize("n, dim", [(20, 8), (6, 10)])  # both sides of the n ≤ D shortcut
def test_fid_resampled_matches_torchmetrics_and_a_direct_resample(n, dim):
    rng = np.random.default_rng(n)
    x = rng.normal(size=(n, dim))
    ref = ReferenceStats.from_features(torch.tensor(rng.normal(size=(30, dim)) * 1.3 + 0.2, dtype=torch.float32))
    mu_r, cov_r = ref.mean.double().numpy(), ref.cov.double().numpy()
    plain = fid_from_features(torch.tensor(x, dtype=torch.float32), ref).value
    assert fid_resampled(x.astype(np.float32), mu_r, cov_r, np.ones((1, n)))[0] == pytest.approx(plain, rel=1e-6)
    w = np.bincount(rng.integers(0, n, n), minlength=n).astype(float)
    xd = np.repeat(x, w.astype(int), axis=0)
    cov = np.cov(xd, rowvar=False)
    direct = (((xd.mean(0) - mu_r) ** 2).sum() + np.trace(cov) + np.trace(cov_r)
              - 2 * np.real(np.trace(linalg.sqrtm(cov @ cov_r))))
    assert fid_resampled(x, mu_r, cov_r, w[None])[0] == pytest.approx(direct, rel=1e-6)


def test_kid_resampled_is_the_unbiased_mmd_of_the_resampled_set():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(9, 5)), rng.normal(size=(12, 5)) + 0.3
    w = np.bincount(rng.integers(0, 9, 9), minlength=9).astype(float)
    xd = np.repeat(x, w.astype(int), axis=0)
    k = lambda a, b: (a @ b.T / 5 + 1) ** 3  # noqa: E731
    n, m = len(xd), len(y)
    direct = ((k(xd, xd).sum() - np.trace(k(xd, xd))) / (n * (n - 1)) + (k(y, y).sum() - np.trace(k(y, y))) / (m * (m - 1))
              - 2 * k(xd, y).mean())
    assert kid_resampled(x, y, w[None])[0] == pytest.approx(direct, rel=1e-9)


def _small_run(root, categories=("",)):
    """2 variants × 8 prompt ids (6 distinct texts) × 2 seeds of 4 × 4 PNGs; variant "a" is brighter on odd prompts."""
    from PIL import Image

    from bench.rundir.store import RunDirectory

    store = RunDirectory(root)
    (store.root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for v, shift in (("vanilla", 0.0), ("a", 0.3)):
        for p in range(8):
            for s in (0, 1):
                rel = f"images/{v}-{p}-{s}.png"
                pixels = np.clip(rng.normal(0.5 + shift * (p % 2), 0.2, size=(4, 4, 3)), 0, 1)
                Image.fromarray((pixels * 255).astype(np.uint8)).save(store.root / rel)
                rows.append({"unit_key": f"{v}{p}{s}", "variant": v, "prompt_id": f"{p}", "prompt": f"text {p % 6}",
                             "category": categories[p % len(categories)], "seed": s, "image_path": rel})
    return store, pd.DataFrame(rows)


def _mean_colour(images):
    """3-d features: cheap and deterministic."""
    return images.mean(dim=(2, 3))


def _reference(tmp_path):
    rng = np.random.default_rng(1)
    ref = ReferenceStats.from_features(torch.tensor(rng.normal(0.5, 0.2, size=(40, 3)), dtype=torch.float32))
    ref.save(tmp_path / "ref.pt")
    return ref, str(tmp_path / "ref.pt")


def test_add_set_intervals_pairs_variants_on_the_same_prompts(tmp_path):
    """The stage around set_metric_rows: jackknife intervals for whole-set rows, a paired Δ for non-baseline variants."""
    from bench.rundir.images import load_image
    from bench.set_intervals import add_set_intervals
    from metrics.fid import FID

    store, samples = _small_run(tmp_path / "run")
    ref, ref_path = _reference(tmp_path)
    fid = FID(feature=_mean_colour, reference=ref_path)
    values = {}
    for v, g in samples.groupby("variant"):
        feats = torch.stack([_mean_colour(load_image(store.root / p)[None])[0] for p in g["image_path"]])
        values[v] = fid_from_features(feats, ref).value
    set_rows = pd.DataFrame([{"variant": v, "category": "", "metric": "fid", "value": values[v], "std": None, "n": 16,
                              "warnings": ""} for v in ("vanilla", "a")])
    out = add_set_intervals(set_rows, samples, {"fid": fid}, store, baseline="vanilla").set_index("variant")
    assert (out["n_prompts"] == 6).all()  # prompt texts, not ids: 8 ids share 6 texts
    for v in ("vanilla", "a"):
        assert out.loc[v, "value_lo"] < out.loc[v, "value_hi"]
    assert np.isnan(out.loc["vanilla", "diff"]) and out.loc["a", "diff_plain"] == pytest.approx(values["a"] - values["vanilla"])
    # FID's difference is bias-corrected: K·Δ − (K − 1)·mean of the leave-one-prompt-out differences
    from bench.scoring import recorded_replicates

    reps = recorded_replicates(store, "fid", fid, samples)
    d = reps[("a", "fid")][0] - reps[("vanilla", "fid")][0]
    k = len(d)
    assert out.loc["a", "bias_corrected"] == True  # noqa: E712
    assert out.loc["a", "diff"] == pytest.approx(k * (values["a"] - values["vanilla"]) - (k - 1) * d.mean(), rel=1e-6)
    assert out.loc["a", "diff_lo"] < out.loc["a", "diff"] < out.loc["a", "diff_hi"]
    for v in ("vanilla", "a"):
        assert out.loc[v, "value_lo"] <= values[v] < out.loc[v, "value_hi"]  # the interval holds its estimate
    again = add_set_intervals(set_rows, samples, {"fid": fid}, store, baseline="vanilla")
    pd.testing.assert_frame_equal(again.set_index("variant"), out)  # journalled and reproducible


class _Counting:
    """A feature network that counts the images it sees."""

    def __init__(self):
        self.images = 0

    def __call__(self, images):
        self.images += images.shape[0]
        return _mean_colour(images)


def test_features_are_extracted_once_per_variant_for_values_categories_and_intervals(tmp_path):
    """Every image passes the feature network once; categories and the jackknife reuse its rows, with the same numbers."""
    from bench.scoring import set_metric_rows
    from bench.set_intervals import add_set_intervals
    from metrics.fid import FID, KID

    store, samples = _small_run(tmp_path / "run", categories=("x", "y"))
    ref, ref_path = _reference(tmp_path)
    counting = _Counting()
    metrics = {"fid": FID(feature=counting, reference=ref_path),
               "kid": KID(feature=counting, reference=ref_path, subset_size=8, subsets=5)}
    rows = set_metric_rows(samples, metrics, store)
    out = add_set_intervals(rows, samples, metrics, store, baseline="vanilla")
    assert counting.images == 2 * len(samples)  # once per metric, not once per category and again per interval
    for (v, c), g in samples.assign(c=samples["category"]).groupby(["variant", "c"]):
        feats = _mean_colour(torch.stack([torch.from_numpy(np.array(Image.open(store.root / p).convert("RGB"))).permute(2, 0, 1).float() / 255
                                          for p in g["image_path"]]))
        got = out[(out["variant"] == v) & (out["category"] == c) & (out["metric"] == "fid")]["value"].item()
        assert got == fid_from_features(feats, ref).value  # the category's rows, the reference unchanged
    whole = out[out["category"] == ""].set_index(["variant", "metric"])
    assert whole["value_lo"].notna().all() and whole.loc[("a", "kid"), "diff_lo"] < whole.loc[("a", "kid"), "diff_hi"]
    assert (out.loc[out["category"] != "", "value_lo"].isna()).all()  # categories carry no interval


def test_a_labelled_or_plugin_set_metric_gets_its_interval(tmp_path):
    """Intervals follow the metric's `resampled`, not its name: a labelled FID and a plugin metric get one."""
    from bench.scoring import set_metric_rows
    from bench.set_intervals import add_set_intervals
    from metrics.base import SetFeatures, SetMetric, SetMetricResult
    from metrics.fid import FID

    class Brightness(SetMetric):
        """Mean brightness of the set: its jackknife interval is the t interval of per-prompt means (hand-checkable)."""

        name = "brightness"
        lower_bound = 0.0

        def features(self, images, prompts, world=None, prompt_ids=None):
            feats = torch.cat([b.mean(dim=(1, 2, 3)) for b in images]).double()[:, None]
            return SetFeatures(feats, tuple(prompts), None, world)

        def compute_from_features(self, features):
            return {"brightness": SetMetricResult(float(features.features.mean()), n=len(features))}

        def resampled(self, features, weights):
            x = features.features[:, 0].numpy()
            return {"brightness": (weights @ x) / weights.sum(1)}

    store, samples = _small_run(tmp_path / "run")
    _, ref_path = _reference(tmp_path)
    metrics = {"fid-8": FID(feature=_mean_colour, reference=ref_path), "bright": Brightness()}
    out = add_set_intervals(set_metric_rows(samples, metrics, store), samples, metrics, store, baseline="vanilla")
    whole = out.set_index(["variant", "metric"])
    assert whole.loc[("a", "fid-8"), "value_lo"] < whole.loc[("a", "fid-8"), "value_hi"]
    v = samples[samples["variant"] == "vanilla"]
    from bench.rundir.images import load_image

    b = np.array([load_image(store.root / p).mean().item() for p in v["image_path"]])
    texts = v["prompt"].to_numpy()
    leave_out = np.array([b[texts != t].mean() for t in sorted(set(texts))])
    from metrics.set_jackknife import jackknife_interval

    lo, hi = jackknife_interval(b.mean(), leave_out)
    assert whole.loc[("vanilla", "bright"), "value"] == pytest.approx(b.mean())
    assert (whole.loc[("vanilla", "bright"), "value_lo"], whole.loc[("vanilla", "bright"), "value_hi"]) == pytest.approx((max(lo, 0.0), hi))


def test_replicates_of_older_run_directories_are_read_without_extracting(tmp_path):
    """Journals written before the rename (key naming the baseline, field "boot") still resume the run."""
    import json

    from bench.config import stable_hash
    from bench.scoring import JACKKNIFE, REPLICATES_JOURNAL, set_metric_rows
    from bench.set_intervals import add_set_intervals
    from metrics.fid import FID

    store, samples = _small_run(tmp_path / "run")
    _, ref_path = _reference(tmp_path)
    counting = _Counting()
    metrics = {"fid": FID(feature=counting, reference=ref_path)}
    first = add_set_intervals(set_metric_rows(samples, metrics, store), samples, metrics, store, baseline="vanilla")
    journal = store.journal(REPLICATES_JOURNAL)
    entry = json.loads(journal.read_text())
    units = {v: sorted(g["unit_key"]) for v, g in samples.groupby("variant")}
    entry["key"] = stable_hash({"metric": "fid", "describe": metrics["fid"].describe(), "baseline": "vanilla",
                                "interval": JACKKNIFE, "units": units}, 32)
    entry["rows"] = [{("boot" if k == "jackknife" else k): value for k, value in r.items()} for r in entry["rows"]]
    entry.pop("check")  # lines of that time carried no checksum
    journal.write_text(json.dumps(entry) + "\n")
    counting.images = 0
    again = add_set_intervals(set_metric_rows(samples, metrics, store), samples, metrics, store, baseline="vanilla")
    assert counting.images == 0
    pd.testing.assert_frame_equal(again, first)


def test_jackknife_interval_of_a_mean_is_the_t_interval():
    from scipy import stats as sps

    from metrics.set_jackknife import jackknife_interval

    x = np.array([1.0, 3.0, 2.0, 7.0, 4.0])
    leave_one_out = np.array([(x.sum() - v) / 4 for v in x])
    lo, hi = jackknife_interval(x.mean(), leave_one_out)
    half = sps.t.ppf(0.975, 4) * x.std(ddof=1) / np.sqrt(5)
    assert (lo, hi) == pytest.approx((x.mean() - half, x.mean() + half))


def test_the_design_docs_metric_examples_run_through_the_scoring_stage(tmp_path, monkeypatch):
    """docs/design.md, "Adding a metric": both examples register and score; the set metric gets its jackknife interval."""
    import re
    from pathlib import Path

    from bench.rundir.images import load_image
    from bench.scoring import set_metric_rows
    from bench.set_intervals import add_set_intervals
    from metrics.base import METRICS, ScoreBatch
    from metrics.set_jackknife import jackknife_interval

    monkeypatch.setattr(METRICS, "_entries", dict(METRICS._entries))  # the examples' names stay in this test
    section = (Path(__file__).parents[1] / "docs" / "design.md").read_text().split("## Adding a metric", 1)[1]
    blocks = re.findall(r"```python\n(.*?)```", section.split("\n## ", 1)[0], re.S)
    assert len(blocks) == 2
    for block in blocks:
        exec(compile(block, "docs/design.md", "exec"), {})

    store, samples = _small_run(tmp_path / "run")
    images = torch.stack([load_image(store.root / p) for p in samples["image_path"]])
    brightness = images.mean(dim=(1, 2, 3)).double()
    scores = METRICS.get("mean-brightness")().score(ScoreBatch(images, samples["prompt"].tolist()))
    assert torch.equal(scores, brightness)

    metrics = {"spread": METRICS.get("brightness-spread")()}
    out = add_set_intervals(set_metric_rows(samples, metrics, store), samples, metrics, store, baseline="vanilla")
    row = out.set_index("variant").loc["a"]
    b = brightness[torch.tensor((samples["variant"] == "a").to_numpy())].numpy()
    texts = samples.loc[samples["variant"] == "a", "prompt"].to_numpy()
    leave_out = np.array([b[texts != t].std(ddof=1) for t in sorted(set(texts))])
    assert row["value"] == pytest.approx(b.std(ddof=1))
    assert (row["value_lo"], row["value_hi"]) == pytest.approx(jackknife_interval(b.std(ddof=1), leave_out))
    assert np.isfinite(row["diff_lo"]) and row["diff_lo"] < row["diff"] < row["diff_hi"]


# -- the paired difference under a change of diversity ------------------------------------------------
def _fid_difference_simulation(scale, reps, prompts=48, seeds=2, dim=64, tau=0.3, seed=0):
    """Baseline features N(0, I), variant ``scale`` × that (``scale`` 0.8 = 20 % narrower), against the population
    reference N(0, I); prompts share a component of variance ``tau`` across their seeds. True difference of
    FIDs: ``dim (scale − 1)²``. Returns the plain and the bias-corrected (Δ, lo, hi) per replication."""
    from metrics.set_jackknife import leave_one_out_weights, paired_difference_interval

    rng = np.random.default_rng(seed)
    cluster = np.repeat(np.arange(prompts), seeds)
    weights = np.vstack([np.ones((1, prompts * seeds)), leave_one_out_weights(cluster, prompts)])
    plain, corrected = [], []
    for _ in range(reps):
        shared = rng.normal(size=(prompts, dim)) * np.sqrt(tau)
        base = shared[cluster] + rng.normal(size=(prompts * seeds, dim)) * np.sqrt(1 - tau)
        variant = scale * (shared[cluster] + rng.normal(size=(prompts * seeds, dim)) * np.sqrt(1 - tau))
        fb = fid_resampled(base, np.zeros(dim), np.eye(dim), weights)
        fv = fid_resampled(variant, np.zeros(dim), np.eye(dim), weights)
        plain.append(paired_difference_interval(fv[0], fv[1:], fb[0], fb[1:]))
        corrected.append(paired_difference_interval(fv[0], fv[1:], fb[0], fb[1:], bias_corrected=True))
    return np.array(plain), np.array(corrected), dim * (scale - 1) ** 2


def _coverage(results, truth):
    return float(np.mean((results[:, 1] <= truth) & (truth <= results[:, 2])))


def test_bias_corrected_fid_difference_covers_a_diversity_change_at_48_prompts():
    """A variant 20 % narrower (true ΔFID +2.56): the plain difference's interval almost never covers it and its
    mean has the wrong sign; the jackknife's bias-corrected difference covers ≥ 0.9 (measured 0.935, 200 reps)."""
    plain, corrected, truth = _fid_difference_simulation(0.8, reps=150)
    assert _coverage(plain, truth) < 0.1 and plain[:, 0].mean() < 0.5 * truth
    assert _coverage(corrected, truth) >= 0.9, _coverage(corrected, truth)
    assert abs(corrected[:, 0].mean() - truth) < 0.25 * truth


def test_bias_corrected_fid_difference_keeps_its_coverage_without_a_change():
    _, corrected, truth = _fid_difference_simulation(1.0, reps=80, seed=1)
    assert truth == 0 and _coverage(corrected, truth) >= 0.9


def test_jackknife_bias_is_exact_for_a_bias_of_order_one_over_n():
    from metrics.set_jackknife import jackknife_bias

    # θ̂ = μ + b/n with n = K·s images; leaving a cluster out: μ + b/(n − s)
    k, s, b, mu = 12, 3, 5.0, 2.0
    estimate = mu + b / (k * s)
    replicates = np.full(k, mu + b / ((k - 1) * s))
    assert jackknife_bias(estimate, replicates) == pytest.approx(b / (k * s))


def test_set_intervals_warn_when_spreads_differ_and_bias_the_difference():
    from bench.set_intervals import spread_warning

    row = pd.Series({"metric": "fid", "variant": "cold", "n": 96, "n_prompts": 48, "feature_trace": 41.0,
                     "diff": 2.9, "diff_lo": 1.5, "diff_hi": 4.3, "diff_plain": -0.1})
    base = pd.Series({"feature_trace": 64.0})
    text = spread_warning(row, base, "vanilla", 0.95)
    assert "0.64× vanilla's" in text and "off by -3" in text and "bias-corrected difference (+2.9)" in text
    assert spread_warning(row.copy().replace({41.0: 62.0}), base, "vanilla", 0.95) == ""  # spreads equal: no warning
    small_shift = row.copy()
    small_shift["diff_plain"] = 2.8  # the correction barely moves it
    assert spread_warning(small_shift, base, "vanilla", 0.95) == ""
