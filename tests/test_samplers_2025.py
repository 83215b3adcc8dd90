"""The 2025 samplers and the audit's fidelity fixes (issue 13): hand-computed cases, reference formulas on
fixed inputs, neutral settings that are another sampler exactly, and batch independence."""
from __future__ import annotations

import math

import pytest
import torch

from mgt_common.errors import ConfigError
from samplers.components import build_component
from samplers.differential import kl_reference, smallest_fraction
from samplers.engine import SamplerEngine
from samplers.guidance_projection import apg_update, cfg_zero_star
from samplers.halton import halton_maskgit_revealed, halton_order, halton_rank, radical_inverse
from samplers.planning import p2_scores
from samplers.randomness import make_generator
from samplers.schedules import noise_regularization_sigma
from samplers.search import effective_sample_size, permute_state, systematic_resample
from samplers.threshold import above_threshold_count
from samplers.token_samplers import scored_gumbel_argmax
from samplers.variant import build_variant
from catalogue_fakes import MASK, FixedLogits, generate, make_ctx

NEW_PRESETS = ["remdm-loop", "threshold-parallel", "fast-dllm", "p2", "p2-remask", "self-critic", "apg", "cfg-zero-star",
               "halton-maskgit", "differential-reference"]


def token_sum_reward(tokens, rows):
    """A deterministic per-image reward for the search loops (higher = larger token ids)."""
    return tokens.double().sum(dim=-1)


def run(variant, seeds, model_seed=3, steps=8, seq_len=64, reward=None):
    model = FixedLogits(steps, seq_len, 8, seed=model_seed)
    variant = build_variant(variant) if isinstance(variant, str) else variant
    side = int(seq_len ** 0.5)
    return SamplerEngine(model).generate(variant, {}, list(seeds), (side, seq_len // side), steps, 3.0, reward=reward)


@pytest.mark.parametrize("name", NEW_PRESETS + ["best-of-4", "smc-4"])
def test_an_image_never_depends_on_its_batch(name):
    reward = token_sum_reward if name in ("best-of-4", "smc-4") else None
    batch = run(name, [0, 1, 2], reward=reward)
    alone = run(name, [2], reward=reward)
    assert not bool((batch.tokens == MASK).any())
    assert torch.equal(alone.tokens[0], batch.tokens[2])
    assert alone.forward_passes[0] == batch.forward_passes[2]


# -- Fast-dLLM confidence threshold (arXiv 2505.22618) -----------------------------------------------


def test_threshold_count_by_hand():
    probs = torch.tensor([[[0.95, 0.05], [0.5, 0.5], [0.1, 0.9], [0.02, 0.98]]])
    sampled = torch.tensor([[0, 0, 1, 1]])
    candidates = torch.tensor([[True, True, True, False]])
    # p(sampled) = 0.95, 0.5, 0.9, 0.98; > 0.9 among candidates: only position 0 (0.9 is not > 0.9)
    assert above_threshold_count(probs, sampled, candidates, 0.9).tolist() == [[1]]


def test_fast_dllm_reveals_every_confident_token_and_stops_early():
    model = FixedLogits(8, 64, 8, seed=3, scale=6.0)
    seen = []

    def after_step(generation, step):
        seen.append((step, generation.prediction.clone(), generation.tokens.clone()))

    generation = SamplerEngine(model).generate(build_variant("fast-dllm"), {}, [0], (8, 8), 8, 3.0, callback=after_step)
    assert int(generation.forward_passes[0]) == len(seen) < 8  # adaptive: fewer passes than steps, counted
    masked_before = torch.ones(64, dtype=torch.bool)
    for step, prediction, tokens in seen[:-1]:
        probs = (model.uncond[step] + 3.0 * (model.cond[step] - model.uncond[step])).softmax(dim=-1)
        confident = (torch.gather(probs, -1, prediction[0].unsqueeze(-1)).squeeze(-1) > 0.9) & masked_before
        revealed = masked_before & (tokens[0] != MASK)
        base = int(masked_before.sum()) - max(1, min(int(masked_before.sum()) - 1,
                                                     math.floor(64 * math.cos(math.pi * (step + 1) / 16))))
        assert bool((revealed | ~confident).all())  # every confident masked token is revealed …
        assert int(revealed.sum()) == max(int(confident.sum()), base)  # … and no more than that or the schedule
        masked_before = tokens[0] == MASK


# -- P2 and the self-critic (arXiv 2502.03540, 2209.04439) -----------------------------------------------


def test_p2_scores_by_hand():
    confidence = torch.tensor([[-0.5, -2.0, 0.0, 0.0]])
    committed_log_prob = torch.tensor([[0.0, 0.0, -1.0, -0.25]])
    unknown = torch.tensor([[True, True, False, False]])
    assert p2_scores(confidence, committed_log_prob, unknown, 2.0).tolist() == [[-0.5, -2.0, -2.0, -0.5]]
    assert p2_scores(confidence, committed_log_prob, unknown, 0.0).tolist() == [[-0.5, -2.0, math.inf, math.inf]]


def reference_p2_sampling(model: FixedLogits, seed: int, guidance: float, eta: float) -> torch.Tensor:
    """The authors' `p2_sampling` (pengzhangzhi/path_planning; score_fn = logP, no planner, τ = 1, κ(t) = t),
    transcribed for one image: its logits are log p of the engine's float32 CFG softmax (a constant per
    position away from the guided logits), in float64 as its `.double()`, and its `rand_like` draws come
    from the image's generator."""
    steps, positions = model.cond.shape[:2]
    generator = make_generator(seed)
    xt = torch.full((1, positions), MASK)
    for i in range(1, steps + 1):
        kappa = i * (1 / steps)
        cond, uncond = model.cond[i - 1][None], model.uncond[i - 1][None]
        logits = (uncond + guidance * (cond - uncond)).softmax(dim=-1).double().log()
        last_mask = xt == MASK
        u = torch.empty(logits.shape[1:], dtype=torch.float64).uniform_(0, 1, generator=generator)[None]
        perturbed = logits + -torch.log(-torch.log(u + 1e-8) + 1e-8)
        score, x0 = perturbed.log_softmax(dim=-1).max(dim=-1)  # = logP(perturbed, x0)
        score = torch.where(~last_mask, score * eta, score)
        num_to_mask = (torch.tensor([[positions]]).float() * (1 - kappa)).long()
        cutoff = score.sort(dim=-1).values.gather(-1, num_to_mask)
        to_mask = score < cutoff
        xt = torch.where(to_mask, MASK, torch.where(last_mask, x0, xt))
    return xt


@pytest.mark.parametrize("eta", [1.0, 2.5, 0.0])
def test_p2_preset_is_the_authors_p2_sampling(eta):
    tables = {"x": {"base": "p2", "remask": {"name": "p2-confidence", "eta": eta}}}
    reopened = 0
    for seed in range(4):
        model = FixedLogits(8, 64, 16, seed=seed)
        generation = generate(model, "x", seeds=[seed], tables=tables)
        assert torch.equal(generation.tokens, reference_p2_sampling(FixedLogits(8, 64, 16, seed=seed), seed, 3.0, eta))
        assert generation.trajectory == [[64 - 8 * (i + 1)] for i in range(8)]  # κ(t) = t: linear
        inputs = [tokens for tokens, _, _ in model.calls]
        reopened += sum(int(((a != MASK) & (b == MASK)).sum()) for a, b in zip(inputs, inputs[1:]))
    assert (reopened > 0) == (eta > 0)  # η = 0: committed positions score 0, above every log-probability


def test_linear_count_is_p2s_float32_count_on_every_image_grid():
    """P2's count (N·(1 − κ)).long() in float32 with κ = i·(1/T) in float64, vs `linear`'s floor(N·(1 − (i+1)/T)),
    both clipped to [1, N − 1] as the step clips: equal for every power-of-two N (every image grid)."""
    linear = build_component("reveal_schedule", "linear")
    for positions in (64, 256, 1024, 4096):
        for steps in range(2, 129):
            # RevealSchedule.mask_len's arithmetic for every step at once (elementwise, so the same roundings)
            ours = (positions * linear.mask_ratio(torch.arange(1, steps)[:, None] / steps)).floor().clamp(1, positions - 1)
            code = [(torch.tensor([[positions]]).float() * (1 - i * (1 / steps))).long() for i in range(1, steps)]
            assert ours.long().flatten().tolist() == torch.cat(code).clamp(1, positions - 1).flatten().tolist(), steps
    # and the step's own call gives the same: floor(4096·(1 − 47/48)) = floor(85.3) at step 46 of 48
    assert int(linear.mask_len(make_ctx(46, 48, torch.ones(1, 4096, dtype=torch.bool), seeds=[0]))) == 85


def test_scored_gumbel_max_draws_from_p_and_scores_its_draw():
    probs = torch.tensor([[0.5, 0.3, 0.2, 0.0]]).expand(20_000, -1)
    tokens, score = scored_gumbel_argmax(probs, make_generator(0))
    frequencies = torch.bincount(tokens, minlength=4) / 20_000
    assert torch.allclose(frequencies, probs[0], atol=0.015) and frequencies[3] == 0
    # the score is the log-softmax of the perturbed logits at the draw: log of a probability, at most 0
    assert bool((score <= 0).all()) and bool((score > -30).all())
    generator = make_generator(0)
    u = torch.empty(4, dtype=torch.float64).uniform_(0, 1, generator=generator)
    perturbed = torch.log(probs[0].double()) - torch.log(-torch.log(u + 1e-8) + 1e-8)
    assert tokens[0] == perturbed.argmax() and score[0] == pytest.approx(float(perturbed.log_softmax(-1).max()))


def test_draw_score_needs_the_scoring_sampler():
    with pytest.raises(ConfigError, match="confidence 'draw-score' reads the token sampler's score of its own draw: "
                                          "use it with token_sampler 'gumbel-max-scored', not 'multinomial'"):
        build_variant("x", {"x": {"confidence": "draw-score"}})


@pytest.mark.parametrize("name, passes", [("p2-remask", 8), ("self-critic", 15)])
def test_replanning_reopens_committed_tokens_and_keeps_the_pace(name, passes):
    model = FixedLogits(8, 64, 8, seed=6)
    tables = {"x": {"base": name, "remask": {"name": "p2", "eta": 4.0}}} if name == "p2-remask" else None
    generation = generate(model, "x" if tables else name, seeds=[0, 1], tables=tables)
    vanilla = generate(FixedLogits(8, 64, 8, seed=6), "vanilla", seeds=[0, 1])
    assert generation.trajectory == vanilla.trajectory
    assert generation.forward_passes.tolist() == [passes, passes]
    inputs = [tokens for tokens, _, _ in model.calls]
    reopened = sum(int(((a != MASK) & (b == MASK)).sum()) for a, b in zip(inputs, inputs[1:]))
    assert reopened > 0


def test_self_critic_without_reopen_only_orders_the_new_tokens():
    model = FixedLogits(8, 64, 8, seed=6)
    generation = generate(model, "c", seeds=[0, 1], tables={"c": {"remask": {"name": "self-critic", "reopen": False}}})
    inputs = [tokens for tokens, _, _ in model.calls[::2]]  # the step inputs (every other call is the critic's)
    assert all(not bool(((a != MASK) & (b == MASK)).any()) for a, b in zip(inputs, inputs[1:]))
    assert generation.forward_passes.tolist() == [15, 15]


# -- ReMDM-loop and the official η (arXiv 2503.00307; kuleshov-group/remdm scripts) ---------------------------


def test_remdm_loop_alpha_schedule_by_hand():
    schedule = build_component("reveal_schedule", "remdm-loop")  # α_on 0.9, t_on 0.55, t_off 0.05
    # T = 20: t_i = 1 − i/20; rise while t > 0.55 (i ≤ 8), hold for 0.05 < t ≤ 0.55 (9 ≤ i ≤ 18), finish at i = 19
    assert [schedule.phase(i, 20) for i in (0, 8, 9, 18, 19)] == ["rise", "rise", "hold", "hold", "finish"]
    assert schedule.masked_ratio(0, 20) == pytest.approx(1 - 0.05 * 0.9 / 0.45)   # α_s = (1 − s)·α_on/(1 − t_on)
    assert schedule.masked_ratio(8, 20) == pytest.approx(0.1)                      # capped at α_on
    assert schedule.masked_ratio(12, 20) == pytest.approx(0.1)                     # held
    assert schedule.masked_ratio(19, 20) == 0.0


def test_remdm_loop_has_no_finish_phase_below_20_steps_in_either_code():
    """The last step starts at t = 1/T, a hold step while 1/T > t_off = 0.05; the reference's time grid
    (torch.linspace(1, 1e-5, T + 1), the phase read off t = timesteps[i]) puts it later still."""
    schedule = build_component("reveal_schedule", "remdm-loop")
    for steps in (8, 16, 19):
        reference_t = torch.linspace(1, 1e-5, steps + 1, dtype=torch.float64)[steps - 1]
        assert schedule.phase(steps - 1, steps) == "hold" and float(reference_t) > 0.05
        assert "finish" not in {schedule.phase(i, steps) for i in range(steps)}
    assert schedule.phase(19, 20) == "finish"
    generation = generate(FixedLogits(16, 64, 8, seed=2), "remdm-loop", seeds=[0])
    assert generation.trajectory[-2] == [6] and generation.trajectory[-1] == [0]  # held at 1 − α_on, then all revealed


def test_remdm_loop_holds_the_masked_count_while_it_remasks():
    model = FixedLogits(20, 100, 8, seed=4)
    generation = generate(model, "remdm-loop", seeds=[0, 1], grid=(10, 10))
    counts = [row[0] for row in generation.trajectory]
    # rising: floor(100·(1 − (i+1)/20 · 0.9/0.45)) = 90, 80, …, capped at 10 from i = 8
    assert counts[:9] == [90, 80, 70, 60, 50, 40, 30, 20, 10]
    assert set(counts[8:19]) == {10}  # α held at 0.9 → 10 of 100 masked from the end of the rise to the last step
    inputs = [tokens for tokens, _, _ in model.calls]
    reopened = sum(int(((a != MASK) & (b == MASK)).sum()) for a, b in zip(inputs[9:], inputs[10:]))
    assert reopened > 0  # σ = η = 0.02 over ~90 committed tokens and 10 steps


def test_remdm_presets_use_the_official_eta():
    assert build_variant("remdm-cap").remask.eta == 0.008
    assert build_variant("remdm-rescale").remask.eta == 0.015
    loop = build_variant("remdm-loop")
    assert (loop.remask.eta, loop.reveal_schedule.alpha_on, loop.reveal_schedule.t_on, loop.reveal_schedule.t_off) == \
        (0.02, 0.9, 0.55, 0.05)


# -- APG and CFG-Zero* on logits (arXiv 2410.02416, 2503.18886) ------------------------------------------------


def test_apg_against_its_formula_on_fixed_logits():
    cond = torch.tensor([[[2.0, 0.0, 1.0]]])
    uncond = torch.tensor([[[1.0, 1.0, 1.0]]])
    # centred: c̄ = (1, −1, 0), Δ = c̄ − ū = (1, −1, 0) − (0, 0, 0) → Δ ∥ c̄ entirely
    guided, _ = apg_update(cond, uncond, None, w=3.0, eta=0.0, momentum=0.0, norm_threshold=0.0, over="position",
                           unknown=None)
    assert guided.tolist() == [[[1.0, -1.0, 0.0]]]  # the parallel part dropped: c̄ itself
    guided, _ = apg_update(cond, uncond, None, w=3.0, eta=1.0, momentum=0.0, norm_threshold=0.0, over="position",
                           unknown=None)
    assert guided.tolist() == [[[3.0, -3.0, 0.0]]]  # η = 1: c̄ + 2Δ, CFG up to a constant
    cond = torch.tensor([[[1.0, -1.0, 0.0]]])
    uncond = torch.tensor([[[0.0, 0.0, 3.0]]])
    # c̄ = (1, −1, 0); ū = (−1, −1, 2); Δ = (2, 0, −2); ⟨Δ, c̄⟩/⟨c̄, c̄⟩ = 1 → Δ_∥ = (1, −1, 0), Δ_⊥ = (1, 1, −2)
    guided, state = apg_update(cond, uncond, None, w=2.0, eta=0.0, momentum=0.0, norm_threshold=0.0,
                               over="position", unknown=None)
    assert guided.tolist() == [[[2.0, 0.0, -2.0]]]
    # norm threshold r = √6/2 halves Δ (‖Δ‖ = √8 … r/‖Δ‖ = √6/(2√8)); momentum β adds β·m_prev first
    guided, state = apg_update(cond, uncond, torch.tensor([[[1.0, 0.0, -1.0]]], dtype=torch.float64), w=2.0, eta=0.0,
                               momentum=-0.5, norm_threshold=0.0, over="position", unknown=None)
    assert state.tolist() == [[[1.5, 0.0, -1.5]]]  # m = Δ − 0.5·(1, 0, −1)


def test_cfg_zero_star_against_its_formula_on_fixed_logits():
    cond = torch.tensor([[[3.0, 1.0, 2.0]]])   # c̄ = (1, −1, 0)
    uncond = torch.tensor([[[2.0, 0.0, 1.0]]])  # ū = (1, −1, 0) → s* = 1
    assert cfg_zero_star(cond, uncond, 4.0, "position", None).tolist() == [[[1.0, -1.0, 0.0]]]
    uncond = torch.tensor([[[4.0, 0.0, 2.0]]])  # ū = (2, −2, 0) → s* = 1/2, s*ū = c̄: guidance vanishes
    assert cfg_zero_star(cond, uncond, 4.0, "position", None).tolist() == [[[1.0, -1.0, 0.0]]]
    uncond = torch.tensor([[[0.0, 0.0, 3.0]]])  # ū = (−1, −1, 2): ⟨c̄, ū⟩ = 0 → s* = 0, ℓ = w·c̄
    assert cfg_zero_star(cond, uncond, 4.0, "position", None).tolist() == [[[4.0, -4.0, 0.0]]]


@pytest.mark.parametrize("spec", [{"name": "apg", "eta": 0.0, "momentum": -0.5, "norm_threshold": 5.0},
                                  {"name": "cfg-zero-star"}])
def test_guidance_on_logits_ignores_the_logit_offset(spec):
    guidance = build_component("guidance", spec)
    ctx = type("Ctx", (), {"guidance_scale": 4.0, "step": 0, "unknown": torch.ones(1, 5, dtype=torch.bool),
                           "state": lambda self, c: {}})()
    cond, uncond = torch.randn(1, 5, 7, generator=torch.Generator().manual_seed(0)), torch.randn(1, 5, 7)
    shift = torch.randn(1, 5, 1) * 10
    a = guidance.combine(cond, uncond, ctx).softmax(-1)
    b = guidance.combine(cond + shift, uncond - shift, ctx).softmax(-1)
    assert torch.allclose(a, b, atol=1e-5)


def test_cfg_zero_init_gives_uniform_first_steps_without_an_unconditional_pass():
    model = FixedLogits(6, 16, 8, seed=1)
    generate(model, "z", seeds=[0], tables={"z": {"guidance": {"name": "cfg-zero-star", "zero_init_steps": 2}}})
    assert [with_uncond for _, _, with_uncond in model.calls] == [False, False, True, True, True, True]


# -- Halton-MaskGIT (arXiv 2503.17076; valeoai/Halton-MaskGIT) ---------------------------------------------------


def test_halton_maskgit_reveal_count_by_hand():
    # N = 64, T = 8: int(64·(1 − arccos(r)/(π/2))) → 5.107 → 5 at r = 1/8, …; the arccos *masked* floor gives 6
    assert [halton_maskgit_revealed(i, 8, 64) for i in range(8)] == [5, 10, 15, 21, 27, 34, 43, 64]
    assert halton_maskgit_revealed(0, 100, 64) == 1  # max(i + 1, ·): never fewer than one token a step


REFERENCE_HALTON_POINTS = [(xn / xd, yn / yd) for (xn, xd), (yn, yd) in
                           ((radical_inverse(n, 2), radical_inverse(n, 3)) for n in range(1, 10_001))]


def reference_halton_cells(size: int) -> list[int]:
    """valeoai/Halton-MaskGIT `build_halton_mask`: 10 000 points from n = 1, each cell's first visit (floor of
    the float coordinate times the size), row-major."""
    seen, cells = set(), []
    for x, y in REFERENCE_HALTON_POINTS:
        cell = math.floor(x * size) * size + math.floor(y * size)
        if cell not in seen:
            seen.add(cell)
            cells.append(cell)
    return cells


def test_halton_order_equals_the_reference_points_and_completes_them():
    # At 64 × 64 the reference's points miss 6 of 4096 cells; our order continues the sequence.
    size, reference = 64, reference_halton_cells(64)
    ours = halton_order(size, size, 1)
    assert len(reference) == size * size - 6
    assert ours[:len(reference)] == tuple(reference) and sorted(ours) == list(range(size * size))


def test_halton_roll_is_the_references_on_every_grid_it_runs():
    """The reference rolls its cell list by k = randint(0, N) per image. Its 10 000 points visit every cell of
    every grid up to 49 × 49 (aMUSEd's 16 × 16, Meissonic-512's 32 × 32), where the list *is* our order, so
    the rolled orders are equal. From 50 × 50 on some grids are incomplete; at 64 × 64 the list has 4 090
    rows for an (N, 2) tensor of 4 096, and the reference sampler stops at that assignment (or at its
    `expand` without the roll): it has no 64 × 64 behaviour to match, and we roll the completed order."""
    complete = [size for size in range(1, 65) if len(reference_halton_cells(size)) == size * size]
    assert complete == list(range(1, 50)) + [51, 54]
    for size in (16, 32):
        reference = torch.tensor(reference_halton_cells(size))
        for k in (0, 1, 7, size * size // 3, size * size - 1):
            rank = halton_rank(size, size, 1, k)
            assert torch.equal(rank[torch.roll(reference, k, 0)], torch.arange(size * size)), (size, k)


def test_halton_maskgit_reveals_the_references_sets_step_by_step():
    """At step i the reference reveals rolled_order[prev_r:r_i]: the revealed set is the first r_i of the
    image's rolled Halton order, r_i its count (clipped to leave one token for the last step)."""
    model = FixedLogits(5, 16, 8, seed=0)
    generate(model, "halton-maskgit", seeds=[0, 1, 2, 3, 4, 5])
    base = halton_order(4, 4, 1)
    patterns = set()
    for row in range(6):
        first = {j for j in range(16) if model.calls[1][0][row, j] != MASK}
        k = next(k for k in range(16) if first == {base[(j - k) % 16] for j in range(len(first))})
        rolled = [base[(j - k) % 16] for j in range(16)]
        for step in range(4):
            revealed = {j for j in range(16) if model.calls[step + 1][0][row, j] != MASK}
            count = min(halton_maskgit_revealed(step, 5, 16), 15)
            assert revealed == set(rolled[:count]), (row, step)
        patterns.add(k)
    assert len(patterns) > 1  # the roll differs between images


# -- differential sampling: the reference's KL order (issue 13 audit) --------------------------------------------


def test_reference_kl_sorts_underflow_last():
    probs = torch.tensor([[[0.5, 0.5, 0.0], [0.6, 0.4, 0.0], [0.5, 0.5, 0.0], [0.3, 0.7, 0.0]]])
    previous = torch.tensor([[[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.3, 0.7, 0.0]]])
    kl = kl_reference(probs, previous)
    # p(v) = p_prev(v) = 0 → 0·(log 0 − log 0) = NaN in every row; a p_prev = 0 < p would be +inf
    assert bool(torch.isnan(kl).all())
    chosen = smallest_fraction(kl, torch.ones(1, 4, dtype=torch.bool), 0.5, "all")
    assert chosen.tolist() == [[True, True, False, False]]  # all NaN: position order (stable), as a stable sort
    finite = kl_reference(torch.tensor([[[0.5, 0.5], [0.9, 0.1]]]), torch.tensor([[[0.5, 0.5], [0.0, 1.0]]]))
    assert finite[0, 0] == 0 and finite[0, 1] == math.inf


def test_differential_reference_equals_scope_all_without_underflow():
    for seed in range(3):
        a = generate(FixedLogits(8, 16, 8, seed=2), "differential-reference", [seed]).tokens
        b = generate(FixedLogits(8, 16, 8, seed=2), "differential-all", [seed]).tokens
        assert torch.equal(a, b)


# -- noise regularization's σ in float32 (issue 13 audit) ----------------------------------------------------------


def test_noise_sigma_is_the_reference_float32_value():
    for total in (2, 3, 16, 33, 64):
        for step in range(total):
            t = torch.tensor(total - 1 - step)
            reference = 2 * torch.abs(torch.cos(math.pi * t / (total - 1)))  # CODE-BT src/scheduler.py
            assert noise_regularization_sigma("cosine", 2.0, step, total) == float(reference)


# -- best-of-N and SMC with a reward ----------------------------------------------------------------------------


@pytest.mark.parametrize("loop", [{"name": "best-of-n", "n": 1}, {"name": "smc", "particles": 1}])
def test_a_search_of_size_one_is_the_plain_sampler(loop):
    variant = build_variant("s", {"s": {"loop": loop}})
    searched = run(variant, [0, 1], reward=token_sum_reward)
    plain = run("vanilla", [0, 1])
    assert torch.equal(searched.tokens, plain.tokens)
    assert searched.forward_passes.tolist() == plain.forward_passes.tolist()


def test_best_of_n_keeps_the_highest_reward_and_counts_its_cost():
    searched = run("best-of-4", [0, 1, 2], reward=token_sum_reward)
    first = run("vanilla", [0, 1, 2])  # candidate 0 is the image's own stream
    assert bool((token_sum_reward(searched.tokens, None) >= token_sum_reward(first.tokens, None)).all())
    assert searched.forward_passes.tolist() == [32] * 3 and searched.scorer_calls.tolist() == [4] * 3
    assert build_variant("best-of-4").forward_passes(8) == 32


def test_smc_counts_particle_passes_and_scorer_calls_and_steers():
    searched = run("smc-4", [0, 1, 2], reward=token_sum_reward)
    assert searched.forward_passes.tolist() == [32] * 3
    assert searched.scorer_calls.tolist() == [4 * 7 + 4] * 3  # 7 look-ahead scorings and the final one
    plain = run("vanilla", [0, 1, 2])
    assert token_sum_reward(searched.tokens, None).mean() > token_sum_reward(plain.tokens, None).mean()


def test_smc_drawing_the_final_particle_is_batch_independent():
    variant = {"s": {"loop": {"name": "smc", "particles": 3, "select": "sample", "strength": 1.0,
                              "resample_every": 2, "ess_threshold": 1.0}}}
    batch = run(build_variant("s", variant), [0, 1, 2], reward=token_sum_reward)
    alone = run(build_variant("s", variant), [1], reward=token_sum_reward)
    assert torch.equal(batch.tokens[1], alone.tokens[0])
    assert batch.scorer_calls.tolist() == [3 * 3 + 3] * 3  # scored after steps 1, 3, 5, and at the end


def test_search_without_a_reward_is_a_clear_error():
    with pytest.raises(ConfigError, match="needs a reward"):
        run("best-of-4", [0])


def test_resampling_helpers_by_hand():
    assert systematic_resample(torch.tensor([0.25] * 4), 0.3).tolist() == [0, 1, 2, 3]
    # cumulative 0.5, 0.5, 0.75, 1 with points 0.1, 0.35, 0.6, 0.85 → 0, 0, 2, 3
    assert systematic_resample(torch.tensor([0.5, 0.0, 0.25, 0.25]), 0.4).tolist() == [0, 0, 2, 3]
    assert effective_sample_size(torch.log(torch.tensor([[0.5, 0.5, 0.0, 0.0]]))).tolist() == [2.0]
    state = {"a": {"h": torch.arange(4)}, "b": torch.arange(3), "c": [torch.arange(4) * 10]}
    moved = permute_state(state, torch.tensor([1, 1, 3, 0]), 4)
    assert moved["a"]["h"].tolist() == [1, 1, 3, 0] and moved["b"].tolist() == [0, 1, 2]
    assert moved["c"][0].tolist() == [10, 10, 30, 0]
