"""The basic physics: with the exact model, random order and one token per step, the engine is an exact
ancestral sampler, so its images follow the world's true distribution (chi-square test); revealing
everything at once does not (the same test must reject it, or it has no power)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy import stats

from bench.models.synthetic import SyntheticModel
from samplers.engine import SamplerEngine
from samplers.variant import build_variant

WORLD = dict(grid=2, colours=["red", "blue", "green"], shapes=["circle"], positions=["center"], sizes=["small"],
             epsilon=0.15, text_strength=1.0, logit_temperature=1.0)
PROMPT = "a circle"  # leaves both colours open: a mixture over 6 scenes
SAMPLES = 3000


def true_distribution(model):
    world = model.world
    images = torch.tensor(list(itertools.product(range(world.codebook_size), repeat=world.seq_len)))
    return images, torch.exp(world.log_likelihood(images, [PROMPT] * len(images)) * world.seq_len)


def chi_square_p(model, tokens) -> float:
    images, probs = true_distribution(model)
    index = {tuple(x.tolist()): i for i, x in enumerate(images)}
    observed = np.bincount([index[tuple(t.tolist())] for t in tokens], minlength=len(images)).astype(float)
    expected = probs.numpy() * len(tokens)
    # pool the rare images into one bin so that every expected count is at least 5
    rare = expected < 5
    observed = np.append(observed[~rare], observed[rare].sum())
    expected = np.append(expected[~rare], expected[rare].sum())
    return stats.chisquare(observed, expected).pvalue


def generate(model, variant: str, steps: int) -> torch.Tensor:
    conditioning = model.encode([PROMPT] * SAMPLES)
    generation = SamplerEngine(model).generate(build_variant(variant), conditioning, list(range(SAMPLES)),
                                               model.token_grid(), steps, guidance_scale=1.0)
    return generation.tokens


@pytest.fixture(scope="module")
def model():
    return SyntheticModel(**WORLD)


def test_random_order_one_token_per_step_is_exact(model):
    # linear reveal with T = N steps reveals exactly one token per step, in random order
    tokens = generate(model, "random-order+linear", model.world.seq_len)
    assert chi_square_p(model, tokens) > 1e-3


def test_revealing_everything_at_once_is_rejected(model):
    tokens = generate(model, "random-order+linear", 1)
    assert chi_square_p(model, tokens) < 1e-6


@pytest.fixture(autouse=True, scope="module")
def _variant():
    from samplers.variant import VARIANT_PRESETS, register_variant

    if "random-order+linear" not in VARIANT_PRESETS:
        register_variant("random-order+linear", {"base": "random-order", "reveal_schedule": "linear"})
