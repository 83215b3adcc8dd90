"""Confidence scores that decide which masked positions stay masked (confidence kind)."""
from __future__ import annotations

import torch

from . import randomness
from .components import Confidence, register_component, require
from .schedules import linspace_value


@register_component("confidence", "gumbel")
class GumbelConfidence(Confidence):
    """log p(sampled) + τ_i · Gumbel, τ linear from `start` to `end` (Meissonic vanilla: 2 → 0).

    MaskGIT's "mask_by_random_topk" (Chang et al. 2022, §3.2) with the annealed temperature of
    diffusers' AmusedScheduler: τ_i = linspace(start, end, T)[i]. The Gumbel draw covers every position
    (as the reference does) so that the random stream stays aligned with it.
    """

    start: float = 2.0
    end: float = 0.0

    def validate(self) -> None:
        require(self.start >= 0 and self.end >= 0, "confidence", self.name, "temperatures must be >= 0")

    def temperature(self, ctx) -> torch.Tensor:
        return linspace_value(self.start, self.end, ctx.step, ctx.total_steps).to(ctx.device)

    def score(self, probs, sampled, ctx):
        selected = torch.gather(probs, -1, sampled.unsqueeze(-1)).squeeze(-1)
        noise = randomness.gumbel(ctx.generators, (ctx.seq_len,), ctx.device, selected.dtype)
        return torch.log(selected.clamp(1e-20)) + self.temperature(ctx) * noise


@register_component("confidence", "random")
class RandomOrder(Confidence):
    """A uniformly random reveal order: confidence ~ U(0, 1), independent of the model.

    With one token per step this makes the sampler an exact ancestral sampler of the model's joint
    distribution (each token drawn from its exact conditional given the revealed ones).
    """

    def score(self, probs, sampled, ctx):
        return randomness.uniform(ctx.generators, (ctx.seq_len,), ctx.device)
