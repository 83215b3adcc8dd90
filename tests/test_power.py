"""The power of the report's sign test over prompts: exact formula against scipy and simulation; the sizes it gives."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from metrics import power as pw


def test_prompt_outcomes_by_hand():
    # 2 independent seeds, no ties: won both w², split 2w(1−w) (a tied prompt), lost both (1−w)²
    won, tied, lost = pw.prompt_outcome_probabilities(0.6, seeds=2, rho=0.0)
    assert (won, tied, lost) == pytest.approx((0.36, 0.48, 0.16))
    # seeds that always agree: a prompt is one pair
    assert pw.prompt_outcome_probabilities(0.6, seeds=4, rho=1.0) == pytest.approx((0.6, 0.0, 0.4))
    # ties: one seed, win rate 0.6 with 20 % ties = 50 % won, 20 % tied, 30 % lost
    assert pw.prompt_outcome_probabilities(0.6, seeds=1, tie_share=0.2) == pytest.approx((0.5, 0.2, 0.3))
    with pytest.raises(ValueError):
        pw.prompt_outcome_probabilities(0.95, seeds=1, tie_share=0.2)


def test_sign_test_power_matches_scipy_binomtest_enumeration():
    """Power = Σ over outcomes of P(outcome) · 1{binomtest p ≤ α}: enumerated with scipy for a small design."""
    k, won, lost, alpha = 9, 0.5, 0.2, 0.05
    tied = 1 - won - lost
    total = 0.0
    for w in range(k + 1):
        for l in range(k + 1 - w):
            prob = math.comb(k, w) * math.comb(k - w, l) * won ** w * lost ** l * tied ** (k - w - l)
            p = sps.binomtest(w, w + l, 0.5).pvalue if w + l else 1.0
            total += prob * (p <= alpha)
    assert pw.sign_test_power(k, won, lost, alpha) == pytest.approx(total, abs=1e-12)


def test_power_matches_a_seeded_simulation_of_correlated_seeds():
    rng = np.random.default_rng(0)
    reps, prompts, seeds, w, rho = 4000, 30, 2, 0.65, 0.5
    u = rng.random((reps, prompts, seeds))
    u = np.where(rng.random((reps, prompts, 1)) < rho, u[:, :, :1], u)
    share = (u < w).mean(2)
    wins, losses = (share > 0.5).sum(1), (share < 0.5).sum(1)
    p = np.minimum(1.0, 2.0 * sps.binom.cdf(np.minimum(wins, losses), wins + losses, 0.5))
    simulated = float(np.mean(p <= 0.05))
    exact = pw.power(prompts, w, seeds, rho, 0.05)
    assert abs(simulated - exact) < 3 * math.sqrt(exact * (1 - exact) / reps), (simulated, exact)


def test_minimum_detectable_effect_and_prompts_needed_agree():
    mde = pw.minimum_detectable_win_rate(48, seeds=2, rho=0.0, alpha=0.05, family=5)
    assert pw.power(48, mde, 2, 0.0, 0.05, 5) >= 0.8 > pw.power(48, mde - 0.01, 2, 0.0, 0.05, 5)
    # independent seeds help, a larger family costs: the MDE orders accordingly
    assert mde < pw.minimum_detectable_win_rate(48, seeds=2, rho=1.0, alpha=0.05, family=5)
    assert mde > pw.minimum_detectable_win_rate(48, seeds=2, rho=0.0, alpha=0.05, family=1)
    k = pw.prompts_needed(0.6, seeds=2, rho=0.0, family=5)
    assert all(pw.power(j, 0.6, 2, 0.0, 0.05, 5) >= 0.8 for j in range(k, 2 * k + 1))
    assert pw.power(k - 1, 0.6, 2, 0.0, 0.05, 5) < 0.8
    assert math.isnan(pw.minimum_detectable_win_rate(3))  # 3 prompts can never reach p ≤ 0.05
    with pytest.raises(ValueError):
        pw.prompts_needed(0.5)


def test_power_flag_prints_the_table_and_refuses_a_bad_effect(capsys):
    from bench.cli import main
    from bench.config import load_config

    config = load_config("default")
    family = len(config.samplers) - 1  # every sampler but the baseline is one primary comparison
    assert main(["--power", "0.6"]) == 0
    out = capsys.readouterr().out
    assert "prompts (seeds agree)" in out and f"{family} comparison(s) in the primary family" in out
    assert f"{len(config.seeds)} seed(s) per prompt" in out
    assert main(["--power", "1.2"]) == 2
    assert "between 0.5 and 1" in capsys.readouterr().err
