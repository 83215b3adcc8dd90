"""Token samplers: draw a token for every position from the step's probabilities (token_sampler kind)."""
from __future__ import annotations

from . import randomness
from .components import TokenSampler, register_component


@register_component("token_sampler", "multinomial")
class MultinomialSampler(TokenSampler):
    """Categorical draw at temperature 1 for every position (`torch.multinomial`, Meissonic vanilla)."""

    def sample(self, probs, ctx):
        return randomness.multinomial(ctx.generators, probs)
