"""The world's metrics whose optimum is the truth: typicality, faithfulness and coverage.

Each is checked against its formula on hand-made cases, against exact samples of the world (the exact
sampler must score the optimum), and against samplers that must lose: too clean or too noisy images
on typicality, a wrong attribute on faithfulness, greedy / low-temperature decoding on coverage.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats as sps

from bench.models.synthetic.grammar import SceneGrammar
from bench.models.synthetic.world import TokenWorld
from metrics.base import METRICS, ScoreBatch
from metrics.set_jackknife import jackknife_interval, leave_one_out_weights


@pytest.fixture(scope="module")
def world():
    return TokenWorld(SceneGrammar())


@pytest.fixture(scope="module")
def prompts(world):
    return [text for _, text, _ in world.grammar.prompt_set(48)]


def _typicality(world, tokens, prompts, **params):
    return METRICS.get("world-typicality")(**params).score(ScoreBatch(world.render(tokens), list(prompts), world=world))


def _set_value(name, world, tokens, prompts, **params):
    metric = METRICS.get(name)(**params)
    features = metric.features(world.render(tokens), list(prompts), world)
    return metric, features, metric.compute_from_features(features)[name].value


# -- typicality --------------------------------------------------------------------------------------
def test_typical_range_is_the_binomial_law_of_matches(world):
    """A full prompt (one scene): log p(x | c) / N = (m log a + (N − m) log b) / N exactly; the range's ends lie
    half a match from the Binomial(N, a) quantiles."""
    prompt = "a small red circle at the center on a blue background"
    assert int(world.scene_set(prompt).sum()) == 1
    n, v, eps = world.seq_len, world.codebook_size, world.epsilon
    a, b = 1 - eps + eps / v, eps / v
    lo, hi = world.typical_loglik_range(prompt, 0.99)
    m_lo, m_hi = sps.binom.ppf(0.005, n, a), sps.binom.ppf(0.995, n, a)
    assert lo == pytest.approx(((m_lo - 0.5) * math.log(a) + (n - m_lo + 0.5) * math.log(b)) / n)
    assert hi == pytest.approx(((m_hi + 0.5) * math.log(a) + (n - m_hi - 0.5) * math.log(b)) / n)
    # a prompt with K scenes lowers both ends by log(K) / N
    lo2, hi2 = world.typical_loglik_range("a small circle", 0.99)
    k = int(world.scene_set("a small circle").sum())
    assert (lo - lo2, hi - hi2) == pytest.approx((math.log(k) / n, math.log(k) / n))


def test_exact_samples_are_typical_and_their_outside_share_is_the_binomial_tail(world, prompts):
    tokens = world.sample_tokens(prompts, 40, seed=5)
    rows = [p for p in prompts for _ in range(40)]
    score = _typicality(world, tokens, rows)
    n, a = world.seq_len, 1 - world.epsilon + world.epsilon / world.codebook_size
    m_lo, m_hi = sps.binom.ppf(0.005, n, a), sps.binom.ppf(0.995, n, a)
    tail = sps.binom.cdf(m_lo - 1, n, a) + sps.binom.sf(m_hi, n, a)  # ≤ 0.01
    outside = float((score > 0).double().mean())
    assert tail <= 0.01 and abs(outside - tail) < 4 * math.sqrt(tail / len(rows)) + 1e-3, (outside, tail)
    assert float(score.mean()) < 1e-3  # the optimum is 0; the exact sampler is within 0.001 nats of it


def test_typicality_punishes_too_clean_and_too_noisy(world, prompts):
    scenes = torch.stack([torch.nonzero(world.scene_set(p))[0, 0] for p in prompts])
    clean = world.prototypes[scenes]  # no token noise: more likely than any exact sample
    assert bool((_typicality(world, clean, prompts) > 0.05).all())
    noisy = TokenWorld(world.grammar, epsilon=0.3).sample_tokens(prompts, 1, seed=0)  # six times the world's noise
    assert bool((_typicality(world, noisy, prompts) > 0.5).all())
    # the diagnostic says which side: clean images are *more* likely than the truth, noisy ones less
    loglik = METRICS.get("world-loglik")()
    assert loglik.diagnostic and loglik.describe()["role"] == "diagnostic"
    lo, hi = zip(*(world.typical_loglik_range(p) for p in prompts))
    assert bool((world.log_likelihood(clean, prompts) > torch.tensor(hi)).all())
    assert bool((world.log_likelihood(noisy, prompts) < torch.tensor(lo)).all())


# -- faithfulness ------------------------------------------------------------------------------------
def test_exact_samples_are_faithful_and_decoded_to_their_scene(world, prompts):
    tokens = world.sample_tokens(prompts, 50, seed=1)
    rows = [p for p in prompts for _ in range(50)]
    decoded = world.decode_scenes(tokens)
    inside = torch.stack([world.scene_set(p) for p in rows]).gather(1, decoded[:, None])[:, 0]
    assert bool(inside.all())  # 2 400 exact samples, no decoding error across the prompt's scene set
    assert _set_value("world-faithfulness", world, tokens[:48 * 4:50], rows[:48 * 4:50])[2] == 1.0


def _wrong_colour(world, prompt, rng):
    """A scene that has every attribute the prompt names except the shape colour (a wrong-attribute sampler)."""
    named = world.grammar.parse(prompt)
    options = [i for i, s in enumerate(world.grammar.scenes)
               if all(getattr(s, k) == v for k, v in named.items() if k != "colour") and s.colour != named["colour"]]
    return options[int(rng.integers(len(options)))]


def test_a_wrong_attribute_sampler_loses_faithfulness_in_proportion(world, prompts):
    rng = np.random.default_rng(0)
    named = [p for p in prompts if "colour" in world.grammar.parse(p)]
    clean = world.sample_tokens(named, 4, seed=2)
    rows = [p for p in named for _ in range(4)]
    # every second seed shows the prompt with the wrong shape colour
    wrong = torch.stack([world.prototypes[_wrong_colour(world, p, rng)] for p in rows])
    mixed = torch.where(torch.tensor([i % 2 == 1 for i in range(len(rows))])[:, None], wrong, clean)
    assert _set_value("world-faithfulness", world, clean, rows)[2] == 1.0
    assert _set_value("world-faithfulness", world, mixed, rows)[2] == pytest.approx(0.5)
    assert _set_value("world-faithfulness", world, mixed, rows, attribute="colour")[2] == pytest.approx(0.5)
    # the other attributes are all right; an attribute no prompt names has no value
    assert _set_value("world-faithfulness", world, mixed, rows, attribute="background")[2] == 1.0
    unnamed = [p for p in prompts if "size" not in world.grammar.parse(p)][:3]
    assert math.isnan(_set_value("world-faithfulness", world, world.sample_tokens(unnamed, 1, 0), unnamed,
                                 attribute="size")[2])


# -- coverage ----------------------------------------------------------------------------------------
def test_coverage_formula_on_a_hand_made_prompt(world):
    prompt = "a red square on a blue background"  # 10 scenes: 5 positions × 2 sizes
    allowed = torch.nonzero(world.scene_set(prompt))[:, 0]
    outside = torch.nonzero(~world.scene_set(prompt))[0, 0]
    k = len(allowed)
    metric = METRICS.get("world-coverage")()
    # seeds show scenes A, A, B, outside: of the 6 pairs, both allowed and different: (A, B) twice → 2/6
    scenes = torch.stack([allowed[0], allowed[0], allowed[1], outside])
    assert metric.prompt_value(world, prompt, scenes) == pytest.approx((2 / 6) / (1 - 1 / k))
    assert metric.prompt_value(world, prompt, allowed[:1].repeat(4)) == 0.0  # one scene whatever the seed
    assert math.isnan(metric.prompt_value(world, prompt, allowed[:1]))  # one image: no pair
    assert math.isnan(metric.prompt_value(world, "a small red circle at the center on a blue background",
                                          allowed[:2]))  # one allowed scene: nothing to cover


@pytest.mark.parametrize("seeds", [2, 4])
def test_exact_sampler_has_coverage_one_in_expectation(world, prompts, seeds):
    """Unbiased at any number of seeds: scenes drawn as the exact sampler draws them (uniform over the prompt's,
    decoded without error: test above), 400 runs of the default prompts, mean 1 within its Monte Carlo error."""
    metric = METRICS.get("world-coverage")()
    rng = np.random.default_rng(seeds)
    allowed = [torch.nonzero(world.scene_set(p))[:, 0].numpy() for p in prompts]
    values = []
    for _ in range(400):
        values.append(np.nanmean([metric.prompt_value(world, p, torch.from_numpy(rng.choice(allowed[i], seeds)))
                                  for i, p in enumerate(prompts)]))
    mean, se = float(np.mean(values)), float(np.std(values, ddof=1) / np.sqrt(len(values)))
    assert abs(mean - 1.0) < 3 * se, (mean, se)


def test_mode_collapse_and_a_scene_subset_lose_coverage(world, prompts):
    open_prompts = [p for p in prompts if int(world.scene_set(p).sum()) >= 2]
    rows = [p for p in open_prompts for _ in range(4)]
    first = torch.stack([world.prototypes[torch.nonzero(world.scene_set(p))[0, 0]] for p in rows])
    assert _set_value("world-coverage", world, first, rows)[2] == 0.0  # every seed the same scene
    # a sampler that uses only the first two scenes of each prompt, alternately: 4 of 6 pairs differ
    two = torch.stack([world.prototypes[torch.nonzero(world.scene_set(p))[i % 2, 0]] for i, p in enumerate(rows)])
    expected = np.mean([(4 / 6) / (1 - 1 / int(world.scene_set(p).sum())) for p in open_prompts])
    assert _set_value("world-coverage", world, two, rows)[2] == pytest.approx(expected)


def test_jackknife_of_a_per_prompt_mean_is_the_t_interval_over_the_prompts_with_a_value(world, prompts):
    """Prompts without a value (one scene) give NaN replicates: the interval is Student's t on the others' values."""
    metric = METRICS.get("world-coverage")()
    tokens = world.sample_tokens(prompts, 3, seed=9)
    rows = [p for p in prompts for _ in range(3)]
    features = metric.features(world.render(tokens), rows, world)
    texts, values, row_prompt = metric.per_prompt(features)
    estimate = metric.compute_from_features(features)["world-coverage"].value
    reps = metric.resampled(features, leave_one_out_weights(row_prompt, len(texts)))["world-coverage"]
    used = np.isfinite(values)
    assert np.isnan(reps[~used]).all() and np.isfinite(reps[used]).all() and used.sum() == 32
    lo, hi = jackknife_interval(estimate, reps)
    ref = sps.t.interval(0.95, used.sum() - 1, loc=values[used].mean(), scale=sps.sem(values[used]))
    assert (lo, hi) == pytest.approx(ref)
    with pytest.raises(ValueError, match="equal for all images of a prompt"):
        metric.resampled(features, np.eye(len(rows))[:1])


# -- through the sampler: the exact denoiser, run exactly, greedily or cold --------------------------------
# 24 scenes whose prototypes differ in ≥ 4 of 144 tokens (on some small grids two scenes coincide, and no
# metric can tell apart two scenes that look the same); 144 tokens so that a noise-free image is atypical.
SMALL = dict(grid=12, colours=["red", "blue", "green"], shapes=["circle", "square"], positions=["center"],
             sizes=["small", "large"], epsilon=0.05, text_strength=1.0, logit_temperature=1.0)


def _generate(model, spec, prompts, seeds, steps):
    from samplers.engine import SamplerEngine
    from samplers.variant import build_variant

    rows = [p for p in prompts for _ in range(seeds)]
    variant = build_variant("under-test", {"under-test": spec})
    generation = SamplerEngine(model).generate(variant, model.encode(rows), list(range(len(rows))),
                                               model.token_grid(), steps, guidance_scale=1.0)
    return generation.tokens, rows


def test_the_exact_sampler_is_at_the_optimum_greedy_loses_coverage_and_cold_loses_typicality():
    """On the exact denoiser, random order with one token per step is the exact sampler (tests/test_exact_sampler.py):
    coverage 1, faithfulness 1, typicality 0 up to its 1 % tail. Greedy tokens make every seed show the same scenes
    (coverage lost); cold tokens (temperature 0.3) drop the world's token noise: *more* likely than the truth on
    world-loglik, atypical on world-typicality."""
    from bench.models.synthetic import SyntheticModel

    model = SyntheticModel(**SMALL)
    world = model.world
    prompts = ["a circle", "something red", "a large square"]  # 12, 8 and 6 scenes
    exact, rows = _generate(model, {"base": "random-order", "reveal_schedule": "linear"}, prompts, 20, world.seq_len)
    greedy, _ = _generate(model, {"base": "vanilla", "token_sampler": "greedy"}, prompts, 20, 16)
    cold, _ = _generate(model, {"base": "vanilla", "token_sampler": {"name": "multinomial", "temperature": 0.3}},
                        prompts, 20, 16)
    coverage = {name: _set_value("world-coverage", world, t, rows)[2] for name, t in
                (("exact", exact), ("greedy", greedy), ("cold", cold))}
    typicality = {name: _typicality(world, t, rows) for name, t in (("exact", exact), ("cold", cold))}
    assert coverage["exact"] > 0.9 and coverage["greedy"] < coverage["exact"] - 0.3, coverage
    assert _set_value("world-faithfulness", world, exact, rows)[2] == 1.0
    assert float((typicality["exact"] > 0).double().mean()) <= 0.05 and float(typicality["exact"].mean()) < 0.002
    assert float(typicality["cold"].mean()) > 5 * float(typicality["exact"].mean())
    assert float(world.log_likelihood(cold, rows).mean()) > float(world.log_likelihood(exact, rows).mean())


def test_the_shipped_exact_config_scores_the_default_runs_prompts_and_seeds():
    from bench.config import load_config

    exact, default = load_config("world-exact"), load_config("default")
    for key in ("limit", "seeds", "prompts", "metrics"):
        assert exact.values[key] == default.values[key], key
    assert exact.model_args == {"text_strength": 1.0, "logit_temperature": 1.0}
    assert exact.steps == 256 and exact.guidance == 1.0  # one token per step on 16 × 16, no guidance
