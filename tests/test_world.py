"""The synthetic world's exact maths against brute-force enumeration on a world small enough to enumerate."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from bench.models.synthetic import SyntheticModel
from bench.models.synthetic.grammar import SceneGrammar

TINY = dict(grid=2, colours=["red", "blue"], shapes=["circle", "square"], positions=["center"], sizes=["small"])


@pytest.fixture(scope="module")
def tiny():
    return SyntheticModel(text_strength=1.0, logit_temperature=1.0, epsilon=0.2, **TINY)


def brute_force(model: SyntheticModel, prompt: str | None):
    """p(x | prompt) for every image x, straight from the generative story."""
    world = model.world
    prior = world.log_prior(prompt).exp()
    V, N = world.codebook_size, world.seq_len
    table = {}
    for x in itertools.product(range(V), repeat=N):
        total = 0.0
        for s in range(world.num_scenes):
            if prior[s] == 0:
                continue
            q = 1.0
            for j, v in enumerate(x):
                q *= (1 - world.epsilon) * (int(world.prototypes[s, j]) == v) + world.epsilon / V
            total += float(prior[s]) * float(q)
        table[x] = total
    return table


def test_distribution_sums_to_one_and_likelihood_matches(tiny):
    prompt = "a red circle"
    table = brute_force(tiny, prompt)
    assert math.isclose(sum(table.values()), 1.0, rel_tol=1e-9)
    xs = list(table)[::17]
    ll = tiny.world.log_likelihood(torch.tensor(xs), [prompt] * len(xs))
    expected = torch.tensor([math.log(table[x]) / tiny.world.seq_len for x in xs], dtype=torch.float64)
    torch.testing.assert_close(ll, expected)


def test_denoiser_is_the_exact_conditional_marginal(tiny):
    prompt = "a blue square"
    table = brute_force(tiny, prompt)
    mask = tiny.mask_token_id
    visible = {0: 3, 2: 1}  # positions 0 and 2 revealed
    tokens = torch.full((1, tiny.world.seq_len), mask)
    for j, v in visible.items():
        tokens[0, j] = v
    cond, uncond = tiny.logits(tokens, tiny.encode([prompt]), 0, 1)
    consistent = {x: p for x, p in table.items() if all(x[j] == v for j, v in visible.items())}
    total = sum(consistent.values())
    for j in (1, 3):
        for v in range(tiny.world.codebook_size):
            expected = sum(p for x, p in consistent.items() if x[j] == v) / total
            assert math.isclose(math.exp(float(cond[0, j, v])), expected, rel_tol=1e-5)


def test_imperfection_knobs_follow_their_formulas():
    exact = SyntheticModel(text_strength=1.0, logit_temperature=1.0, **TINY)
    weak = SyntheticModel(text_strength=0.25, logit_temperature=2.0, **TINY)
    tokens = torch.full((1, 4), exact.mask_token_id)
    tokens[0, 1] = 0
    conditioning = exact.encode(["a red square"])
    cond, uncond = exact.logits(tokens, conditioning, 0, 4)
    weak_cond, weak_uncond = weak.logits(tokens, conditioning, 0, 4)
    torch.testing.assert_close(weak_cond, (0.25 * cond + 0.75 * uncond) / 2.0)
    torch.testing.assert_close(weak_uncond, uncond / 2.0)
    # CFG at w = 1/alpha on the tempered logits restores the tempered exact conditional
    guided = weak_uncond + 4.0 * (weak_cond - weak_uncond)
    torch.testing.assert_close(guided, cond / 2.0, rtol=1e-5, atol=1e-5)


def test_prompt_parsing_and_posterior():
    grammar = SceneGrammar()
    assert grammar.parse("a small red circle at the top left on a blue background") == {
        "background": "blue", "colour": "red", "shape": "circle", "size": "small", "position": "top left"}
    assert grammar.parse("something purple") == {"colour": "purple"}
    assert grammar.scene_mask("an orange triangle").sum() == 7 * 5 * 2  # backgrounds × positions × sizes
    model = SyntheticModel()
    world = model.world
    prompt = "a large green cross at the center on a black background"
    clean = world.prototypes[torch.from_numpy(grammar.scene_mask(prompt)).nonzero()[0]]
    assert world.prompt_posterior(clean, [prompt]).item() > 0.999
    assert world.prompt_posterior(clean, ["a red circle"]).item() < 1e-6


def test_render_and_image_to_tokens_round_trip():
    model = SyntheticModel(grid=8)
    tokens = torch.randint(0, model.codebook_size, (5, 64), generator=torch.Generator().manual_seed(0))
    images = model.decode(tokens)
    assert images.shape == (5, 3, 32, 32)
    quantised = (images * 255).round() / 255  # what a PNG round trip gives
    assert torch.equal(model.world.image_to_tokens(quantised), tokens)


def test_exact_samples_follow_the_prompt():
    model = SyntheticModel()
    tokens = model.world.sample_tokens(["a red circle"] * 50, 1, seed=0)
    assert model.world.prompt_posterior(tokens, ["a red circle"] * 50).mean() > 0.95
