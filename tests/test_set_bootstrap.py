"""Issue 10: FID/KID on resampled prompts from features computed once — against torchmetrics and direct formulas."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import linalg

from metrics.fid import ReferenceStats, fid_from_features
from metrics.set_bootstrap import fid_resampled, kid_resampled


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
