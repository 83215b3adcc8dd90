"""Hand-computed cases for single catalogue components: ReMDM, Halton, token samplers, CFG schedules, EB."""
from __future__ import annotations

import math

import pytest
import torch

from samplers.adaptive import entropy_bounded_count
from samplers.components import build_component
from samplers.halton import halton_order, radical_inverse
from samplers.remdm import sigma_max
from samplers.token_samplers import nucleus
from catalogue_fakes import MASK, FixedLogits, generate, make_ctx

# -- ReMDM (arXiv 2503.00307 §4.1) -------------------------------------------------------------------


def test_remdm_sigma_max_by_hand():
    # N = 16, 8 masked now (α_t = 1/2), 4 after the step (α_s = 3/4): (1 − 3/4)/(1/2) = 1/2
    assert sigma_max(torch.tensor([[8]]), torch.tensor([[4]]), 16).item() == 0.5
    assert sigma_max(torch.tensor([[8]]), torch.tensor([[12]]), 16).item() == 1.0   # capped at 1
    assert sigma_max(torch.tensor([[16]]), torch.tensor([[12]]), 16).item() == 0.0  # nothing committed


@pytest.mark.parametrize("strategy, eta, expected", [("cap", 0.2, 0.2), ("cap", 0.9, 0.5), ("rescale", 0.2, 0.1)])
def test_remdm_sigma_by_hand(strategy, eta, expected):
    unknown = torch.tensor([[True] * 8 + [False] * 8])
    remdm = build_component("remask", {"name": "remdm", "strategy": strategy, "eta": eta})
    assert remdm.sigma(make_ctx(3, 8, unknown), torch.tensor([[4]])).item() == pytest.approx(expected)


def test_remdm_conf_spreads_sigma_max_by_low_confidence():
    unknown = torch.tensor([[True, False, False, False]])
    remdm = build_component("remask", {"name": "remdm", "strategy": "conf"})
    ctx = make_ctx(2, 8, unknown)
    # ψ (probability at reveal) 0, ln 2, ln 4 → exp(−ψ) = 1, 1/2, 1/4 → weights 4/7, 2/7, 1/7
    ctx.state(remdm)["psi"] = torch.tensor([[math.inf, 0.0, math.log(2), math.log(4)]], dtype=torch.float64)
    sigma = remdm.sigma(ctx, torch.tensor([[1]]))  # σ_max = min(1, 1/3)
    assert sigma[0].tolist() == pytest.approx([0, 4 / 21, 2 / 21, 1 / 21])


def test_remdm_reopens_committed_tokens_and_keeps_the_schedule_pace():
    model = FixedLogits(8, 64, 8, seed=6)
    tables = {"r": {"remask": {"name": "remdm", "strategy": "cap", "eta": 1.0}}}
    generation = generate(model, "r", seeds=[0, 1], tables=tables)
    vanilla = generate(FixedLogits(8, 64, 8, seed=6), "vanilla", seeds=[0, 1])
    assert generation.trajectory == vanilla.trajectory  # the same number masked after every step
    inputs = [tokens for tokens, _, _ in model.calls]
    reopened = sum(int(((a != MASK) & (b == MASK)).sum()) for a, b in zip(inputs, inputs[1:]))
    assert reopened > 0


@pytest.mark.parametrize("spec", [{"name": "remdm", "strategy": "cap", "eta": 0.0},
                                  {"name": "remdm", "strategy": "rescale", "eta": 0.5, "start": 0.95}])
def test_remdm_off_is_the_vanilla_step(spec):
    model = FixedLogits(8, 16, 8, seed=1)
    for seed in range(3):
        assert torch.equal(generate(model, "r", [seed], tables={"r": {"remask": spec}}).tokens,
                           generate(model, "vanilla", [seed]).tokens)

# -- Halton (arXiv 2503.17076 §3) ------------------------------------------------------------------


def test_radical_inverse_by_hand():
    assert radical_inverse(6, 2) == (3, 8)   # 110₂ → 0.011₂
    assert radical_inverse(5, 3) == (7, 9)   # 12₃ → 0.21₃
    assert radical_inverse(0, 2) == (0, 1)


def test_halton_order_by_hand():
    # points (0,0), (1/2,1/3), (1/4,2/3), (3/4,1/9), (1/8,4/9), (5/8,7/9) on a 2×2 grid:
    # cells (0,0), (1,0), (0,1), dup, dup, (1,1) → row-major 0, 2, 1, 3
    assert halton_order(2, 2) == (0, 2, 1, 3)
    # 4×4: (0,0)→0, (2,1)→9, (1,2)→6, (3,0)→12, (0,1)→1
    assert halton_order(4, 4)[:5] == (0, 9, 6, 12, 1)
    assert sorted(halton_order(5, 7)) == list(range(35))


def test_halton_reveals_in_halton_order():
    # the component starts at n = 1, as the reference: (1/2, 1/3) → (2, 1) = 9 first; (0, 0) comes 11th
    assert halton_order(4, 4, 1) == (9, 6, 12, 1, 11, 4, 14, 3, 8, 5, 0, 7, 13, 2, 15, 10)
    model = FixedLogits(4, 16, 8, seed=0)
    generate(model, "halton", seeds=[0])
    revealed_after = [set(torch.nonzero(tokens[0] != MASK).flatten().tolist()) for tokens, _, _ in model.calls[1:]]
    assert revealed_after[0] == {9, 6}             # 16 − 14 revealed
    assert revealed_after[1] == {9, 6, 12, 1, 11}  # 16 − 11 revealed
    tables = {"h0": {"confidence": {"name": "halton", "first_index": 0}}}
    model = FixedLogits(4, 16, 8, seed=0)
    generate(model, "h0", seeds=[0], tables=tables)
    assert set(torch.nonzero(model.calls[1][0][0] != MASK).flatten().tolist()) == {0, 9}


def test_halton_shift_rolls_the_order_per_image():
    model = FixedLogits(4, 16, 8, seed=0)
    generation = generate(model, "halton-shifted", seeds=[0, 1, 2, 3])
    first = model.calls[1][0] != MASK
    patterns = {tuple(torch.nonzero(row).flatten().tolist()) for row in first}
    assert len(patterns) > 1  # the shift differs between images
    for row in first:  # each is {9, 6} = {(2, 1), (1, 2)} rolled on the torus: differences ±1 in both
        (a, b) = torch.nonzero(row).flatten().tolist()
        (ra, ca), (rb, cb) = divmod(a, 4), divmod(b, 4)
        assert {(rb - ra) % 4, (ra - rb) % 4} == {1, 3} and {(cb - ca) % 4, (ca - cb) % 4} == {1, 3}
    assert not bool((generation.tokens == MASK).any())

# -- token samplers ------------------------------------------------------------------------------------


def test_nucleus_by_hand():
    probs = torch.tensor([[[0.3, 0.5, 0.05, 0.15]]])
    # sorted .5, .3, .15, .05; mass before: 0, .5, .8, .95 → p = .7 keeps .5 and .3
    assert (nucleus(probs, 0.7) > 0)[0, 0].tolist() == [True, True, False, False]
    assert (nucleus(probs, 0.5) > 0)[0, 0].tolist() == [False, True, False, False]


def _draws(spec, probs, n=4000, seed=0):
    sampler = build_component("token_sampler", spec)
    unknown = torch.ones(1, n, dtype=torch.bool)
    ctx = make_ctx(0, 4, unknown, seeds=[seed])
    return sampler.sample(probs.expand(1, n, -1).contiguous(), ctx)[0]


def test_top_k_never_draws_outside_the_k_most_probable():
    drawn = set(_draws({"name": "top-k", "k": 2}, torch.tensor([0.1, 0.4, 0.2, 0.3])).tolist())
    assert drawn == {1, 3}


def test_greedy_is_argmax():
    assert set(_draws("greedy", torch.tensor([0.1, 0.4, 0.2, 0.3]), n=8).tolist()) == {1}


@pytest.mark.parametrize("spec", ["gumbel-max-f64", "multinomial"])
def test_samplers_draw_the_right_frequencies(spec):
    probs = torch.tensor([0.5, 0.25, 0.15, 0.1])
    counts = torch.bincount(_draws(spec, probs, n=20000), minlength=4).double()
    expected = probs.double() * 20000
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 16.3  # χ²(3) 0.999 quantile


def test_sampling_temperature_by_hand():
    sampler = build_component("token_sampler", {"name": "multinomial", "temperature": 0.5})
    ctx = make_ctx(0, 4, torch.ones(1, 1, dtype=torch.bool))
    # p^(1/0.5) = .25, .0625, .0625 → / .375
    out = sampler.tempered(torch.tensor([[[0.5, 0.25, 0.25]]]), ctx)
    assert out[0, 0].tolist() == pytest.approx([2 / 3, 1 / 6, 1 / 6])
    linear = build_component("token_sampler", {"name": "top-p", "temperature": 1.2, "temperature_end": 0.6,
                                               "temperature_schedule": "linear"})
    assert [linear.sampling_temperature(make_ctx(i, 4, ctx.unknown)) for i in range(4)] == \
        pytest.approx([1.2, 1.0, 0.8, 0.6])

# -- CFG schedules -------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec, expected", [
    ("linear", [1, 1.5, 2, 2.5, 3]),
    ("linear-decreasing", [3, 2.5, 2, 1.5, 1]),
    ("cosine", [1, 2 - math.cos(math.pi / 4), 2, 2 + math.cos(math.pi / 4), 3]),
    ({"name": "power", "exponent": 2.0}, [1, 1.125, 1.5, 2.125, 3]),
    ("constant", [3] * 5),
    ({"name": "fixed", "scale_value": 0.0}, [0] * 5),
])
def test_cfg_schedules_by_hand(spec, expected):
    guidance = build_component("guidance", spec)
    unknown = torch.ones(1, 4, dtype=torch.bool)
    assert [guidance.scale(make_ctx(i, 5, unknown)) for i in range(5)] == pytest.approx(expected)


def test_cfg_interval_follows_the_diffusers_guider_rule_and_skips_the_uncond_pass():
    guidance = build_component("guidance", {"name": "interval", "start": 0.25, "stop": 0.75})
    unknown = torch.ones(1, 4, dtype=torch.bool)
    # T = 8: int(.25·8) = 2 ≤ i < int(.75·8) = 6
    assert [guidance.scale(make_ctx(i, 8, unknown)) for i in range(8)] == [1, 1, 3, 3, 3, 3, 1, 1]
    model = FixedLogits(8, 16, 8)
    generate(model, "cfg-interval", seeds=[0])
    assert [with_uncond for _, _, with_uncond in model.calls] == [False, False, True, True, True, True, False, False]

# -- EB-sampler (arXiv 2505.24857) ----------------------------------------------------------------------


@pytest.mark.parametrize("gamma, expected", [(0.05, 1), (0.25, 2), (0.35, 3), (1.0, 4)])
def test_entropy_bound_by_hand(gamma, expected):
    entropy = torch.tensor([[0.1, 0.5, 0.2, 1.0]])
    order = torch.tensor([[4.0, 3.0, 2.0, 1.0]])
    # prefix Σ H − max H: 0, .1, .3, .8
    assert entropy_bounded_count(entropy, order, torch.ones(1, 4, dtype=torch.bool), gamma).item() == expected


def test_entropy_bound_skips_committed_positions():
    entropy = torch.tensor([[0.1, 0.5, 0.2, 1.0]])
    order = torch.tensor([[4.0, 3.0, 2.0, 1.0]])
    candidates = torch.tensor([[True, False, True, True]])  # prefix 0, 2, 3: Σ − max = 0, .1, .3
    assert entropy_bounded_count(entropy, order, candidates, 0.25).item() == 2


def test_eb_adaptive_finishes_early_on_a_certain_model_and_follows_the_schedule_on_an_uncertain_one():
    certain = FixedLogits(8, 16, 8, seed=0, scale=40.0)
    generation = generate(certain, "eb-adaptive", seeds=[0, 1])
    assert int(generation.forward_passes.max()) < 8 and not bool((generation.tokens == MASK).any())
    # every token has entropy ln 8 = 2.08 nats: with γ = 1 only one token fits the bound, fewer than cosine
    flat = FixedLogits(8, 16, 8, seed=0, scale=0.0)
    eb = generate(flat, "eb1", seeds=[0], tables={"eb1": {"reveal_schedule": {"name": "entropy-bounded", "gamma": 1.0}}})
    assert eb.trajectory == generate(FixedLogits(8, 16, 8, seed=0, scale=0.0), "vanilla", seeds=[0]).trajectory
    # with γ = 5 the bound admits 3 tokens (Σ − max = 2·2.08 = 4.16 ≤ 5): step 0 reveals 3 > cosine's 1
    eb5 = generate(FixedLogits(8, 16, 8, seed=0, scale=0.0), "eb5", seeds=[0],
                   tables={"eb5": {"reveal_schedule": {"name": "entropy-bounded", "gamma": 5.0}}})
    assert eb5.trajectory[0] == [13]


def test_eb_gamma_zero_is_the_base_schedule():
    model = FixedLogits(8, 16, 8, seed=2)
    tables = {"eb0": {"reveal_schedule": {"name": "entropy-bounded", "gamma": 0.0}}}
    for seed in range(3):
        assert torch.equal(generate(model, "eb0", [seed], tables=tables).tokens, generate(model, "vanilla", [seed]).tokens)
