"""--compare's change B − A: an interval as honest at two prompts as the win rates it compares.

The change's interval combines both runs' own clustered Clopper–Pearson intervals (MOVER, Newcombe
1998 method 10); its coverage is simulated here at 2–12 prompts, with prompts that correlate their
seeds' outcomes and with ties, and an end-to-end comparison of a two-prompt run checks that the
change is never narrower than the run's own interval.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.report import compute_tables, load_run, render_comparison
from bench.report.compare import change_interval
from metrics import stats
from run_fixture import make_run_dir


def simulated_runs(rng, prompts: int, seeds: int, win_rate: float, concentration: float, tie: float, reps: int):
    """Per-prompt sums (outcomes with ties ½, pairs) of `reps` runs: each prompt's win probability is drawn
    from Beta(p·c, (1−p)·c) (small c: seeds of a prompt agree), each pair ties with probability `tie`."""
    if np.isinf(concentration):
        q = np.full((prompts, reps), win_rate)
    else:
        q = rng.beta(win_rate * concentration, (1 - win_rate) * concentration, size=(prompts, reps))
    tied = rng.random((prompts, seeds, reps)) < tie
    won = (rng.random((prompts, seeds, reps)) < q[:, None, :]) & ~tied
    return (won + 0.5 * tied).sum(axis=1), np.full((prompts, reps), float(seeds))


@pytest.mark.parametrize("prompts", [2, 3, 4, 6, 8, 12])
def test_change_interval_covers_at_two_to_twelve_prompts(prompts):
    rng = np.random.default_rng(prompts)
    reps, tie = 2000, 0.1
    widths = []
    for win_a, win_b in ((0.5, 0.5), (0.3, 0.7), (0.6, 0.95), (0.9, 0.9)):
        for concentration in (2.0, np.inf):
            outcomes_a, pairs_a = simulated_runs(rng, prompts, 2, win_a, concentration, tie, reps)
            outcomes_b, pairs_b = simulated_runs(rng, prompts, 2, win_b, concentration, tie, reps)
            truth = (win_b - win_a) * (1 - tie)  # ties count half on both sides
            change, low, high = change_interval(outcomes_a, pairs_a, outcomes_b, pairs_b, 0.95)
            coverage = np.mean((low <= truth + 1e-12) & (truth - 1e-12 <= high))
            # 2000 runs: a true 95 % has a standard error of 0.5 point
            assert coverage >= 0.94, (prompts, win_a, win_b, concentration, coverage)
            assert np.all(low <= change) and np.all(change <= high)
            widths.append(np.mean(high - low))
    # informative as prompts grow (the bound is the runs' own intervals, not a fixed [-1, 1])
    assert np.mean(widths) < {2: 1.6, 3: 1.4, 4: 1.3, 6: 1.1, 8: 1.0, 12: 0.8}[prompts]


def test_change_interval_is_the_runs_own_intervals_combined():
    """By hand: MOVER on the two intervals `proportion_interval` gives (the numbers each report shows)."""
    outcomes_a, pairs_a = np.array([1.0, 0.5, 2.0, 0.0]), np.array([2.0, 2.0, 2.0, 2.0])
    outcomes_b, pairs_b = np.array([2.0, 2.0]), np.array([2.0, 2.0])
    pa, la, ua, _ = stats.proportion_interval(outcomes_a, pairs_a)
    pb, lb, ub, _ = stats.proportion_interval(outcomes_b, pairs_b)
    change, low, high = change_interval(outcomes_a, pairs_a, outcomes_b, pairs_b)
    assert change == pytest.approx(1.0 - 3.5 / 8)
    assert low == pytest.approx(change - np.hypot(pb - lb, ua - pa))
    assert high == pytest.approx(min(1.0, change + np.hypot(ub - pb, pa - la)))
    # never narrower on a side than either run's own interval on that side
    assert change - low >= max(pb - lb, ua - pa) and high - change >= min(1 - change, max(ub - pb, pa - la)) - 1e-12


def test_a_two_prompt_run_gets_a_change_no_narrower_than_its_own_interval(tmp_path):
    """The reported case: B with 2 prompts at 100 % [16, 100] printed a change of +26 [+18, +33]."""
    a = make_run_dir(tmp_path / "run-a", n_prompts=12, seeds=(0,), variants={"vanilla": 0.0, "strong": 0.3})
    b = make_run_dir(tmp_path / "run-b", n_prompts=2, seeds=(0,), rng_seed=3, variants={"vanilla": 0.0, "strong": 3.0})
    for run in (a, b):
        compute_tables(load_run(run)).write(run / "tables")
    paths = render_comparison(a, b, tmp_path / "cmp")
    table = pd.read_csv(paths["tables/comparison_win_rates"])
    assert len(table)
    for row in table.itertuples():
        own_b = (row.win_rate_b - row.win_rate_b_lo, row.win_rate_b_hi - row.win_rate_b)
        assert row.change - row.change_lo >= own_b[0] - 1e-9, row
        assert row.change_hi - row.change >= min(own_b[1], 1 - row.change) - 1e-9, row
        assert row.change_lo <= row.change <= row.change_hi
