"""Power of the report's verdict test, and the run size a given effect needs.

The report's verdict on a comparison is the exact two-sided sign test over prompts (`metrics.stats`):
a prompt is won when the variant wins more of its seeds than it loses, lost in the opposite case,
tied otherwise, and ties are dropped. Its power is computed exactly here, for a model of how the
pair outcomes of one prompt's seeds relate:

* every prompt–seed pair is won with probability ``w − t/2``, tied with ``t`` and lost with
  ``1 − w − t/2`` (``w`` = the pair-level win rate with ties as half, ``t`` = the tie share);
* with probability ``rho`` all seeds of a prompt share one outcome (they agree), otherwise they are
  independent — the model of ``tests/test_stats_calibration.py``. ``rho = 1`` makes a prompt worth
  one pair (the least favourable case: extra seeds add nothing); ``rho = 0`` is the most favourable.

Given K prompts, the number of untied prompts is Binomial(K, 1 − τ) and the wins among them are
Binomial(n, q) (τ, q from the model above); the test rejects when ``min(wins, losses) ≤ c_n``, the
largest c with ``2 · P(Bin(n, ½) ≤ c) ≤ α``. Power = Σ_n P(n untied) · P(reject | n) — exact, no
simulation. With m comparisons in the Holm family, a lone effect must pass Holm's first step,
α / m (planning at α / m is what "Holm over m" costs at worst).

`minimum_detectable_win_rate` is the least pair-level win rate found with the given power;
`prompts_needed` the least number of prompts. ``python -m metrics.power`` prints both (see
``--help``); ``run_bench.py --power WIN_RATE`` does it for a config's seeds and family.
"""
from __future__ import annotations

import argparse
import math

import numpy as np
from scipy import stats as sps

DEFAULT_POWER = 0.8


def prompt_outcome_probabilities(win_rate: float, seeds: int, rho: float = 1.0,
                                 tie_share: float = 0.0) -> tuple[float, float, float]:
    """(P(prompt won), P(prompt tied), P(prompt lost)) for the model in the module docstring."""
    win = win_rate - tie_share / 2.0
    loss = 1.0 - win - tie_share
    if min(win, loss) < -1e-12 or not 0 <= rho <= 1 or seeds < 1:
        raise ValueError(f"no such outcome model: win rate {win_rate}, ties {tie_share}, rho {rho}, seeds {seeds}")
    win, loss = max(win, 0.0), max(loss, 0.0)
    # independent seeds: a prompt is won when it has more won seeds than lost ones (multinomial counts)
    p_won = p_lost = 0.0
    for wins in range(seeds + 1):
        for losses in range(seeds + 1 - wins):
            ties = seeds - wins - losses
            prob = math.comb(seeds, wins) * math.comb(seeds - wins, losses) * win ** wins * loss ** losses \
                * tie_share ** ties
            if wins > losses:
                p_won += prob
            elif losses > wins:
                p_lost += prob
    p_won = rho * win + (1 - rho) * p_won
    p_lost = rho * loss + (1 - rho) * p_lost
    return p_won, max(0.0, 1.0 - p_won - p_lost), p_lost


def sign_test_power(n_prompts: int, p_won: float, p_lost: float, alpha: float) -> float:
    """Exact power of the two-sided sign test over ``n_prompts`` prompts at level ``alpha`` (ties dropped)."""
    k = int(n_prompts)
    untied = p_won + p_lost
    if k < 1 or untied <= 0:
        return 0.0
    n = np.arange(k + 1)
    # c_n: the largest c with 2·P(Bin(n, ½) ≤ c) ≤ α (−1 when even c = 0 is not significant)
    c = sps.binom.ppf(alpha / 2.0, n, 0.5)
    c = np.where(sps.binom.cdf(c, n, 0.5) > alpha / 2.0, c - 1, c)
    q = p_won / untied
    reject = np.where(c >= 0, sps.binom.cdf(c, n, q) + sps.binom.sf(n - c - 1, n, q), 0.0)
    return float(np.sum(sps.binom.pmf(n, k, untied) * reject))


def power(n_prompts: int, win_rate: float, seeds: int = 1, rho: float = 1.0, alpha: float = 0.05,
          family: int = 1, tie_share: float = 0.0) -> float:
    """Power to find a pair-level ``win_rate`` with the sign test over prompts, at Holm's first step α / family."""
    won, _, lost = prompt_outcome_probabilities(win_rate, seeds, rho, tie_share)
    return sign_test_power(n_prompts, won, lost, alpha / max(int(family), 1))


def minimum_detectable_win_rate(n_prompts: int, seeds: int = 1, rho: float = 1.0, alpha: float = 0.05,
                                family: int = 1, target: float = DEFAULT_POWER, tie_share: float = 0.0) -> float:
    """The least pair-level win rate above ½ found with probability ``target``; NaN if even 100 % is not."""
    top = 1.0 - tie_share / 2.0
    if power(n_prompts, top, seeds, rho, alpha, family, tie_share) < target:
        return float("nan")
    lo, hi = 0.5, top
    for _ in range(40):  # power grows with the win rate for a fixed design: bisection
        mid = (lo + hi) / 2.0
        if power(n_prompts, mid, seeds, rho, alpha, family, tie_share) >= target:
            hi = mid
        else:
            lo = mid
    return hi


def prompts_needed(win_rate: float, seeds: int = 1, rho: float = 1.0, alpha: float = 0.05, family: int = 1,
                   target: float = DEFAULT_POWER, tie_share: float = 0.0, limit: int = 1_000_000) -> int:
    """The least number of prompts with power ≥ ``target`` from which on power stays there (up to twice that).

    The sign test's power is a saw-tooth in the number of prompts (its discreteness), so the first
    crossing can be followed by a dip; the answer is the first size after which no size up to twice
    it dips below the target. Raises ``ValueError`` beyond ``limit`` prompts.
    """
    if not win_rate > 0.5:
        raise ValueError(f"a win rate of {win_rate} is no effect to detect: give one above 0.5")

    def enough(k: int) -> bool:
        return power(k, win_rate, seeds, rho, alpha, family, tie_share) >= target

    hi = 2
    while not enough(hi):
        hi *= 2
        if hi > limit:
            raise ValueError(f"a win rate of {win_rate} needs more than {limit} prompts")
    lo = hi // 2
    while hi - lo > 1:  # first crossing
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if enough(mid) else (mid, hi)
    k = hi
    step = max(1, k // 200)  # saw-tooth check on a grid: exact for small k, 0.5 % steps for large k
    while True:
        dip = next((j for j in range(k + 1, 2 * k + 1, step) if not enough(j)), None)
        if dip is None:
            return k
        k = dip + 1
        while not enough(k):
            k += 1


def power_table(win_rate: float, seeds_options=(1, 2, 4, 8), alpha: float = 0.05, family: int = 1,
                target: float = DEFAULT_POWER, tie_share: float = 0.0) -> list[dict]:
    """Prompts needed for ``win_rate`` per number of seeds, for seeds that agree (ρ = 1) and independent seeds (ρ = 0)."""
    return [{"seeds": s, "prompts_if_seeds_agree": prompts_needed(win_rate, s, 1.0, alpha, family, target, tie_share),
             "prompts_if_seeds_independent": prompts_needed(win_rate, s, 0.0, alpha, family, target, tie_share)}
            for s in seeds_options]


def format_power_table(win_rate: float, seeds_options=(1, 2, 4, 8), alpha: float = 0.05, family: int = 1,
                       target: float = DEFAULT_POWER, tie_share: float = 0.0) -> str:
    rows = power_table(win_rate, seeds_options, alpha, family, target, tie_share)
    head = (f"Prompts needed to find a win rate of {100 * win_rate:g} % (ties {100 * tie_share:g} %) with "
            f"{100 * target:g} % power: exact sign test over prompts at α = {alpha:g}"
            + (f" / {family} (Holm over {family} comparisons, first step)" if family > 1 else "") + ".")
    lines = [head, "", "seeds per prompt | prompts (seeds agree) | prompts (seeds independent) | images per variant"]
    for r in rows:
        lines.append(f"{r['seeds']:>16} | {r['prompts_if_seeds_agree']:>21} | {r['prompts_if_seeds_independent']:>27} | "
                     f"{r['seeds'] * r['prompts_if_seeds_independent']}–{r['seeds'] * r['prompts_if_seeds_agree']}")
    lines += ["", "Seeds of one prompt usually agree in part: the truth lies between the two columns."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m metrics.power", description=__doc__.split("\n\n")[0])
    parser.add_argument("win_rate", type=float, help="the pair-level win rate to detect, e.g. 0.6")
    parser.add_argument("--seeds", default="1,2,4,8", help="comma-separated seeds per prompt to tabulate")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--family", type=int, default=1, help="comparisons in the Holm family (default 1)")
    parser.add_argument("--power", type=float, default=DEFAULT_POWER, dest="target")
    parser.add_argument("--ties", type=float, default=0.0, help="tie share of pairs (default 0)")
    args = parser.parse_args(argv)
    try:
        seeds = tuple(int(s) for s in args.seeds.split(","))
        print(format_power_table(args.win_rate, seeds, args.alpha, args.family, args.target, args.ties))
    except ValueError as exc:
        parser.exit(2, f"python -m metrics.power: error: {exc}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
