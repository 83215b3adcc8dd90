"""The synthetic world's basic physics, on which every report rests (issue 3): with the exact model,
fewer steps measurably hurt the exact log-likelihood, because tokens revealed in the same step are
drawn independently while the true scene distribution couples them. And two per-component facts
that follow from exactness."""
from __future__ import annotations

import pytest

from bench.models.synthetic import SyntheticModel
from samplers.engine import SamplerEngine
from samplers.variant import build_variant

IMAGES = 24


@pytest.fixture(scope="module")
def world():
    # 6×6 tokens, 3 colours: 240 scenes; the exact denoiser (no weakened text, no miscalibration).
    model = SyntheticModel(grid=6, patch=1, text_strength=1.0, logit_temperature=1.0,
                           colours=["red", "green", "blue"])
    prompts = [p for _, p, _ in model.grammar.prompt_set(IMAGES, seed=1)]
    return model, prompts, model.encode(prompts)


def mean_loglik(world, variant, steps, guidance=1.0):
    model, prompts, conditioning = world
    generation = SamplerEngine(model).generate(build_variant(variant), conditioning, list(range(IMAGES)),
                                               model.token_grid(), steps, guidance)
    return float(model.world.log_likelihood(generation.tokens, prompts).mean())


def test_fewer_steps_hurt_the_exact_log_likelihood(world):
    # random order, one token per step (T = N = 36) is an exact sampler: its mean is −H/N of the scenes.
    exact = mean_loglik(world, "random-order", 36)
    four = mean_loglik(world, "random-order", 4)
    two = mean_loglik(world, "random-order", 2)
    assert two < four - 0.05 < exact - 0.1
    # the vanilla (confidence-ordered) sampler too: 2 steps vs 16
    assert mean_loglik(world, "vanilla", 2) < mean_loglik(world, "vanilla", 16) - 0.2


def test_zigzag_does_not_break_an_exact_sampler(world):
    # On the exact model zig-zag's re-denoise replays the step from a state the model handles exactly;
    # it must not lose likelihood against the plain sampler at the same T.
    assert mean_loglik(world, "zigzag", 8) > mean_loglik(world, "vanilla", 8) - 0.05


def test_noise_on_exact_logits_costs_likelihood(world):
    # Noise regularization repairs a miscalibrated model; on exact logits it can only add error.
    assert mean_loglik(world, "noise-reg", 8) < mean_loglik(world, "vanilla", 8)
