"""metrics.ranking: battle counts by hand, Bradley–Terry against closed forms, score equations and simulation."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from metrics import ranking


def _scores(values: dict[str, list[float]], metric="m", seeds=1):
    rows = []
    for v, vals in values.items():
        for i, x in enumerate(vals):
            rows.append({"variant": v, "prompt_id": f"p{i // seeds}", "seed": i % seeds, "metric": metric, "value": x})
    return pd.DataFrame(rows)


def test_battle_tensor_by_hand_with_ties_and_direction():
    s = _scores({"a": [1.0, 2.0, 3.0], "b": [1.0, 3.0, 1.0], "c": [0.0, 0.0, 5.0]})
    w, n, prompts = ranking.battle_tensor(s, "m", ["a", "b", "c"], higher_is_better=True)
    assert prompts == ["p0", "p1", "p2"]
    total = w.sum(0)
    # a vs b: tie, loss, win → 1.5 each way; a vs c: win, win, loss → 2 / 1
    assert total[0, 1] == 1.5 and total[1, 0] == 1.5
    assert total[0, 2] == 2 and total[2, 0] == 1
    assert np.all(n.sum(0)[~np.eye(3, dtype=bool)] == 3)
    w_low, _, _ = ranking.battle_tensor(s, "m", ["a", "b", "c"], higher_is_better=False)
    assert w_low.sum(0)[0, 2] == 1 and w_low.sum(0)[2, 0] == 2  # lower is better flips wins
    w_tol, _, _ = ranking.battle_tensor(s, "m", ["a", "b", "c"], tie_tolerance=1.5)
    # a − b = 0, −1, +2: two ties within 1.5, then a win → a 2, b 1
    assert w_tol.sum(0)[0, 1] == 2 and w_tol.sum(0)[1, 0] == 1


def test_pairwise_matrix_is_complementary():
    rng = np.random.default_rng(0)
    s = _scores({v: list(rng.normal(size=30).round(1)) for v in "abcd"}, seeds=3)
    w, n, _ = ranking.battle_tensor(s, "m", list("abcd"))
    m = ranking.pairwise_matrix(w, n, list("abcd")).to_numpy()
    off = ~np.eye(4, dtype=bool)
    assert np.allclose((m + m.T)[off], 1.0)
    assert np.isnan(np.diag(m)).all()


def test_bradley_terry_two_players_closed_form():
    # MLE for two players: θ_a − θ_b = log(w_ab / w_ba)
    theta = ranking.fit_bradley_terry(np.array([[0.0, 30.0], [10.0, 0.0]]), prior=0)
    assert theta[0] - theta[1] == pytest.approx(np.log(3.0), abs=1e-7)


def test_bradley_terry_satisfies_score_equations_with_fractional_ties():
    # ties as half-wins give fractional counts; at the MLE, expected wins = observed wins for every player
    w = np.array([[0, 7.5, 3.0, 9.0], [4.5, 0, 6.5, 2.0], [8.0, 5.5, 0, 4.5], [1.0, 10.0, 3.5, 0]])
    theta = ranking.fit_bradley_terry(w, prior=0)
    n = w + w.T
    p = 1 / (1 + np.exp(-(theta[:, None] - theta[None, :])))
    np.fill_diagonal(p, 0)
    assert np.allclose((n * p).sum(1), w.sum(1), atol=1e-6)
    assert theta.mean() == pytest.approx(0, abs=1e-12)


def test_all_ties_give_equal_strengths():
    w = np.full((3, 3), 5.0)
    np.fill_diagonal(w, 0)
    assert np.allclose(ranking.fit_bradley_terry(w, prior=0), 0)


def test_bradley_terry_recovers_known_strengths():
    rng = np.random.default_rng(7)
    truth = np.array([0.0, 0.5, 1.0, -0.7, 0.2])
    k, games = len(truth), 3000
    w = np.zeros((k, k))
    for i in range(k):
        for j in range(i + 1, k):
            p = 1 / (1 + np.exp(truth[j] - truth[i]))
            wins = rng.binomial(games, p)
            w[i, j], w[j, i] = wins, games - wins
    est = ranking.fit_bradley_terry(w, prior=0)
    assert np.allclose(est, truth - truth.mean(), atol=0.05)
    assert list(np.argsort(est)) == list(np.argsort(truth))


def test_prior_keeps_a_winless_variant_finite():
    w = np.array([[0, 5.0, 4.0], [3.0, 0, 6.0], [0.0, 0.0, 0]])  # c never wins: no finite MLE
    theta = ranking.fit_bradley_terry(w, prior=0.5)
    assert np.isfinite(theta).all() and theta[2] == theta.min()


def test_arena_rank_by_hand():
    lo = np.array([10, 8, 1, 0])
    hi = np.array([12, 11, 9, 2])
    # a: nobody's lower above 12 → 1; b: nobody's lower above 11 → 1; c: lo_a=10 > 9 → 2; d: a, b → 3 (c's lo 1 < 2)
    assert ranking.arena_rank(lo, hi).tolist() == [1, 1, 2, 3]


def test_bradley_terry_bootstrap_interval_coverage():
    """3 variants with known strengths; per prompt one comparison per pair. The 95 % percentile interval
    of θ_1 − θ_0 from the prompt bootstrap should cover the truth about 95 % of the time."""
    rng = np.random.default_rng(11)
    truth = np.array([0.0, 0.4, -0.3])
    reps, n_prompts, covered = 120, 150, 0
    p = 1 / (1 + np.exp(-(truth[:, None] - truth[None, :])))
    for _ in range(reps):
        won = rng.uniform(size=(n_prompts, 3, 3)) < p
        w = np.zeros((n_prompts, 3, 3))
        iu = np.triu_indices(3, 1)
        w[:, iu[0], iu[1]] = won[:, iu[0], iu[1]]
        w[:, iu[1], iu[0]] = 1 - won[:, iu[0], iu[1]]
        weights = ranking.bootstrap_weights(n_prompts, 300, rng)
        boot = ranking.fit_bradley_terry(np.einsum("bp,pij->bij", weights, w), prior=0, tol=1e-7)
        d = boot[:, 1] - boot[:, 0]
        lo, hi = np.quantile(d, [0.025, 0.975])
        covered += lo <= truth[1] - truth[0] <= hi
    assert 0.88 <= covered / reps <= 0.995, covered / reps


def test_rank_all_orders_simulated_variants():
    rng = np.random.default_rng(3)
    base = rng.normal(size=60)
    eff = {"vanilla": 0.0, "good": 1.0, "bad": -1.0, "same": 0.0}
    rows = []
    for v, e in eff.items():
        for metric, sign in (("up", 1), ("down", -1)):
            vals = sign * (base + e + 0.5 * rng.normal(size=60))
            rows.append(pd.DataFrame({"variant": v, "prompt_id": [f"p{i // 2}" for i in range(60)],
                                      "seed": [i % 2 for i in range(60)], "metric": metric, "value": vals}))
    s = pd.concat(rows, ignore_index=True)
    pw, bt = ranking.rank_all(s, list(eff), {"up": True, "down": False}, baseline="vanilla", n_boot=200)
    assert set(bt["metric"]) == {"up", "down", "all"}
    for m, d in bt.groupby("metric"):
        d = d.set_index("variant")
        assert d.loc["good", "rank"] == 1 and d.loc["bad", "rank"] == 4, m
        assert d.loc["vanilla", "score"] == pytest.approx(1000)
        assert (d["score_lo"] <= d["score"] + 1e-9).all() and (d["score_hi"] >= d["score"] - 1e-9).all()
    pooled = pw[(pw.metric == "all") & (pw.variant == "good") & (pw.opponent == "bad")]
    assert pooled["games"].iloc[0] == 120 and pooled["win_rate"].iloc[0] > 0.9
    # same seed → same intervals
    _, bt2 = ranking.rank_all(s, list(eff), {"up": True, "down": False}, baseline="vanilla", n_boot=200)
    pd.testing.assert_frame_equal(bt, bt2)


def test_variant_without_battles_has_no_strength():
    rng = np.random.default_rng(1)
    rows = [pd.DataFrame({"variant": v, "prompt_id": [f"p{i}" for i in range(20)], "seed": 0, "metric": m,
                          "value": rng.normal(size=20)})
            for v in "abc" for m in ("m1", "m2") if not (v == "c" and m == "m2")]
    _, bt = ranking.rank_all(pd.concat(rows), list("abc"), {"m1": True, "m2": True}, baseline="a", n_boot=50)
    c2 = bt[(bt.metric == "m2") & (bt.variant == "c")].iloc[0]
    assert c2.battles == 0 and np.isnan(c2.score) and pd.isna(c2["rank"])
    assert bt[(bt.metric == "m1")]["score"].notna().all()
