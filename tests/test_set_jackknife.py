"""Issue 10: FID/KID on resampled prompts from features computed once — against torchmetrics and direct formulas."""
from __future__ import annotations

import numpy as np
import pytest
import torch
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


def test_add_set_intervals_pairs_variants_on_the_same_prompts(tmp_path):
    """The stage around set_metric_rows: jackknife intervals for whole-set rows, a paired Δ for non-baseline variants."""
    import pandas as pd
    from PIL import Image

    from bench.set_intervals import add_set_intervals
    from bench.store import RunDirectory
    from metrics.fid import FID

    store = RunDirectory(tmp_path / "run")
    rng = np.random.default_rng(0)
    rows = []
    for v, shift in (("vanilla", 0.0), ("a", 0.3)):
        for p in range(8):
            for s in (0, 1):
                rel = f"images/{v}-{p}-{s}.png"
                (store.root / "images").mkdir(parents=True, exist_ok=True)
                pixels = np.clip(rng.normal(0.5 + shift * (p % 2), 0.2, size=(4, 4, 3)), 0, 1)
                Image.fromarray((pixels * 255).astype(np.uint8)).save(store.root / rel)
                rows.append({"unit_key": f"{v}{p}{s}", "variant": v, "prompt_id": f"{p}", "prompt": f"text {p % 6}",
                             "category": "", "seed": s, "image_path": rel})
    samples = pd.DataFrame(rows)
    feature = lambda images: images.mean(dim=(2, 3))  # noqa: E731  (3-d features: cheap and deterministic)
    ref = ReferenceStats.from_features(torch.tensor(rng.normal(0.5, 0.2, size=(40, 3)), dtype=torch.float32))
    ref_path = tmp_path / "ref.pt"
    ref.save(ref_path)
    fid = FID(feature=feature, reference=str(ref_path))
    from bench.rundir.images import load_image

    values = {}
    for v, g in samples.groupby("variant"):
        feats = torch.stack([feature(load_image(store.root / p)[None])[0] for p in g["image_path"]])
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


def test_jackknife_interval_of_a_mean_is_the_t_interval():
    from scipy import stats as sps

    from metrics.set_jackknife import jackknife_interval

    x = np.array([1.0, 3.0, 2.0, 7.0, 4.0])
    leave_one_out = np.array([(x.sum() - v) / 4 for v in x])
    lo, hi = jackknife_interval(x.mean(), leave_one_out)
    half = sps.t.ppf(0.975, 4) * x.std(ddof=1) / np.sqrt(5)
    assert (lo, hi) == pytest.approx((x.mean() - half, x.mean() + half))
