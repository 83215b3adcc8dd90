"""The delete-one-prompt jackknife of set metrics: FID and KID of re-weighted sets, from features extracted once.

A set metric is one number per variant, so its uncertainty comes from perturbing the set: each
distinct prompt (text, the unit of analysis) is left out in turn, every image of it with it
(`leave_one_out_weights`), and the metric is recomputed (Quenouille 1956, Tukey 1958). The same
weights serve every variant, so the paired difference ``metric(variant) − metric(baseline)`` is
computed on identical prompt sets (`paired_difference_interval`). The reference set is held fixed:
the interval describes the generated set's sampling error.

Nothing is re-extracted: a replicate only re-weights the rows of the feature matrix (weight 0 drops
an image; the formulas accept any non-negative integer counts, so a bootstrap draw — 2 counts an
image twice — works too, though docs/report.md says why the report does not use one).

* **FID** (Heusel et al. 2017, arXiv 1706.08500): ``‖μ_w − μ_r‖² + tr Σ_w + tr Σ_r − 2 tr (Σ_r^½ Σ_w Σ_r^½)^½``
  with ``Σ_w`` the unbiased covariance of the resampled set (torchmetrics' definition). With ``n``
  images of ``D``-d features the trace of the square root is taken on whichever side is smaller: the
  non-zero eigenvalues of ``Σ_r^½ Σ_w Σ_r^½`` (D × D) equal those of the n × n matrix
  ``W^½ X_c Σ_r X_c^T W^½ / (n − 1)`` (``X_c`` the rows centred at the resampled mean, ``W`` the
  draw counts), whose entries follow from the Gram matrix ``X Σ_r X^T`` computed once.
* **KID** (Bińkowski et al. 2018, arXiv 1801.01401): the unbiased MMD² with the cubic polynomial
  kernel ``k(x, y) = (x·y / D + 1)³`` on the whole resampled set (positions drawn twice still count
  as distinct positions, as in any bootstrap), kernel matrices computed once.
"""
from __future__ import annotations

import numpy as np
from scipy import stats as sps


def leave_one_out_weights(cluster_of_row: np.ndarray, n_clusters: int) -> np.ndarray:
    """``(K, N)`` weights whose row k leaves cluster k out: 0 for the images of cluster k, 1 for all others.

    ``cluster_of_row[i]`` is the cluster (distinct prompt) of image i, in ``range(n_clusters)``. A
    cluster the set has no image of gives a row of ones (the whole set), so every variant gets K rows.
    """
    return (1.0 - np.eye(n_clusters))[:, np.asarray(cluster_of_row, dtype=int)]


def _sqrtm_psd(a: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eigh((a + a.T) / 2.0)
    return (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T


def fid_resampled(features: np.ndarray, ref_mean: np.ndarray, ref_cov: np.ndarray,
                  weights: np.ndarray) -> np.ndarray:
    """FID of the set re-weighted by each row of ``weights`` ``(B, n)`` (non-negative integer counts).

    ``features`` ``(n, D)``; returns ``(B,)``. With all weights 1 this is the plain FID of the set.
    """
    x = np.asarray(features, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    mu_r = np.asarray(ref_mean, dtype=np.float64)
    cov_r = np.asarray(ref_cov, dtype=np.float64)
    n, dim = x.shape
    total = w.sum(1)                                     # = n for a bootstrap resample
    mu = (w @ x) / total[:, None]                        # (B, D)
    sq = (x * x).sum(1)
    tr_cov = (w @ sq - total * (mu * mu).sum(1)) / (total - 1.0)
    mean_term = ((mu - mu_r) ** 2).sum(1)
    out = np.empty(w.shape[0])
    side = min(n, dim)
    block = max(1, int(2e7 // (side * side)))  # replicates per batched eigen-decomposition (≈ 160 MB)
    if n <= dim:
        gram = x @ cov_r @ x.T                           # (n, n), once
        for start in range(0, w.shape[0], block):
            wb, tb = w[start:start + block], total[start:start + block]
            gw = wb @ gram / tb[:, None]                 # X Σ_r μ_w, per replicate (gram is symmetric)
            c = np.einsum("bi,bi->b", wb, gw) / tb       # μ_w Σ_r μ_w
            centred = gram[None] - gw[:, :, None] - gw[:, None, :] + c[:, None, None]
            sq = np.sqrt(wb)
            vals = np.linalg.eigvalsh(sq[:, :, None] * centred * sq[:, None, :] / (tb - 1.0)[:, None, None])
            out[start:start + block] = np.sqrt(np.clip(vals, 0.0, None)).sum(1)
    else:
        root = _sqrtm_psd(cov_r)
        xr = x @ root                                    # rows in the reference's root frame, once
        for start in range(0, w.shape[0], block):
            wb, tb, mb = w[start:start + block], total[start:start + block], mu[start:start + block] @ root
            second = np.einsum("bi,ij,ik->bjk", wb, xr, xr, optimize=True)
            cov = (second - tb[:, None, None] * mb[:, :, None] * mb[:, None, :]) / (tb - 1.0)[:, None, None]
            vals = np.linalg.eigvalsh(cov)               # = eigenvalues of Σ_r^½ Σ_w Σ_r^½
            out[start:start + block] = np.sqrt(np.clip(vals, 0.0, None)).sum(1)
    return mean_term + tr_cov + np.trace(cov_r) - 2.0 * out


def kid_resampled(features: np.ndarray, reference: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Unbiased MMD² (cubic polynomial kernel) of the re-weighted set against the fixed reference: ``(B,)``."""
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(reference, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    dim = x.shape[1]
    m = y.shape[0]
    k_xx = (x @ x.T / dim + 1.0) ** 3
    # the reference side only enters through sums: taken in row blocks, so a 50k-image reference
    # never needs its m × m kernel matrix in memory
    yy_sum, xy_rows = 0.0, np.zeros(x.shape[0])
    for start in range(0, m, 2048):
        block = y[start:start + 2048]
        k_by = (block @ y.T / dim + 1.0) ** 3
        yy_sum += k_by.sum() - ((block * block).sum(1) / dim + 1.0).__pow__(3).sum()
        xy_rows += ((x @ block.T / dim + 1.0) ** 3).sum(1)
    yy = yy_sum / (m * (m - 1))
    total = w.sum(1)
    xx = (np.einsum("bi,ij,bj->b", w, k_xx, w, optimize=True) - w @ np.diag(k_xx)) / (total * (total - 1.0))
    xy = (w @ xy_rows) / (total * m)
    return xx + yy - 2.0 * xy


def jackknife_interval(estimate: float, replicates: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """``θ̂ ± t_{K−1} · se`` with the delete-one jackknife ``se² = (K−1)/K · Σ (θ_(k) − θ̄)²`` (Efron & Stein 1981).

    ``replicates``: the statistic with each of K clusters left out. NaN bounds with fewer than 2.
    """
    reps = np.asarray(replicates, dtype=float)
    reps = reps[np.isfinite(reps)]
    k = reps.size
    if k < 2 or not np.isfinite(estimate):
        return float("nan"), float("nan")
    se = float(np.sqrt((k - 1) / k * ((reps - reps.mean()) ** 2).sum()))
    half = float(sps.t.ppf(0.5 + confidence / 2.0, k - 1)) * se
    return float(estimate) - half, float(estimate) + half


def jackknife_bias(estimate: float, replicates: np.ndarray) -> float:
    """Quenouille's (1956) jackknife estimate of the bias of ``estimate``: ``(K − 1)(θ̄_(·) − θ̂)``.

    ``replicates``: the statistic with each of K clusters left out (non-finite ones dropped). For a
    statistic whose bias is ``b / n`` (n images, equal clusters) it is exact: θ̂ carries ``b / n``,
    each replicate ``b / (n − n/K)``, and ``(K − 1)(θ̄ − θ̂) = b / n``. NaN with fewer than 2.
    """
    reps = np.asarray(replicates, dtype=float)
    reps = reps[np.isfinite(reps)]
    if reps.size < 2 or not np.isfinite(estimate):
        return float("nan")
    return float((reps.size - 1) * (reps.mean() - float(estimate)))


def paired_difference_interval(estimate: float, replicates: np.ndarray, base_estimate: float,
                               base_replicates: np.ndarray, confidence: float = 0.95,
                               bias_corrected: bool = False) -> tuple[float, float, float]:
    """``(Δ, low, high)`` for ``Δ = estimate − base_estimate``: `jackknife_interval` of the replicate differences.

    Both replicate vectors must leave out the same cluster in the same row (`leave_one_out_weights`
    over one list of clusters), so that each replicate difference compares identical prompt sets.

    ``bias_corrected``: Δ becomes the jackknife's bias-corrected difference ``Δ̂ − bias(Δ̂)``
    (`jackknife_bias` of the replicate differences; Quenouille 1956, Efron & Tibshirani 1993 §10.5),
    with the same standard error. Needed for FID: its small-sample bias grows with each set's
    covariance, so two variants of unequal diversity do not share it, and the plain difference can
    have the wrong sign (a variant 20 % narrower looked *better* at 48 prompts;
    tests/test_set_jackknife.py measures the coverage of both).
    """
    diff = float(estimate) - float(base_estimate)
    reps = np.asarray(replicates, float) - np.asarray(base_replicates, float)
    if bias_corrected:
        bias = jackknife_bias(diff, reps)
        diff = diff - bias if np.isfinite(bias) else diff
    low, high = jackknife_interval(diff, reps, confidence)
    return diff, low, high
