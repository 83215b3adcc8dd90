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
    assert np.isnan(out.loc["vanilla", "diff"]) and out.loc["a", "diff"] == pytest.approx(values["a"] - values["vanilla"])
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
