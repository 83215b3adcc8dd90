"""Confidence scores that decide which masked positions stay masked (confidence kind).

The engine keeps the `mask_len` lowest-scoring masked positions masked and reveals the rest, so a
confidence is an order over positions. Model-based orders (probability, margin, entropy) may carry
annealed Gumbel noise τ_i·g (MaskGIT's "mask_by_random_topk", Chang et al. 2022 §3.2); model-free
orders are `random` and `halton` (in `halton.py`).

Temperature schedules for the Gumbel noise (reference §2.4 "Temperature annealing"): τ_i from `start`
to `end` with shape `schedule`:

- linear (vanilla, Meissonic 2 → 0): ``torch.linspace(start, end, T)[i]`` in float32, as diffusers;
- constant: τ_i = start;
- cosine: start + (end − start)(1 − cos(π i/(T−1)))/2;
- exponential: start·(end/start)^(i/(T−1)) (start, end > 0);
- maskgit: τ_i = start·(1 − (i+1)/T), the official MaskGIT choice temperature (τ0 = 4.5 there; `end` unused).
"""
from __future__ import annotations

import dataclasses

import torch

from . import randomness, schedules
from .components import Confidence, register_component, require

TEMPERATURE_SCHEDULES = ("linear", "constant", "cosine", "exponential", "maskgit")


@dataclasses.dataclass
class AnnealedGumbel(Confidence):
    """A confidence plus τ_i · Gumbel noise, τ following a temperature schedule (see the module doc)."""

    start: float = 2.0
    end: float = 0.0
    schedule: str = "linear"

    def validate(self) -> None:
        require(self.start >= 0 and self.end >= 0, self.kind, self.name, "temperatures must be >= 0")
        require(self.schedule in TEMPERATURE_SCHEDULES, self.kind, self.name,
                f"schedule must be one of {', '.join(TEMPERATURE_SCHEDULES)}, got {self.schedule!r}")
        require(self.schedule != "exponential" or (self.start > 0 and self.end > 0), self.kind, self.name,
                "an exponential temperature schedule needs start > 0 and end > 0 (it is geometric)")

    def temperature(self, ctx) -> torch.Tensor:
        if self.schedule == "linear":
            # Exactly diffusers' float32 linspace entry: the vanilla reveal order depends on it.
            return schedules.linspace_value(self.start, self.end, ctx.step, ctx.total_steps).to(ctx.device)
        if self.schedule == "maskgit":
            value = schedules.maskgit_temperature(self.start, ctx.step, ctx.total_steps)
        else:
            value = schedules.ramp(self.schedule, self.start, self.end, ctx.step, ctx.total_steps)
        return torch.tensor(value, dtype=torch.float32, device=ctx.device)

    def with_noise(self, score: torch.Tensor, ctx, always_draw: bool) -> torch.Tensor:
        tau = self.temperature(ctx)
        if not always_draw and float(tau) == 0.0:
            return score
        noise = randomness.gumbel(ctx.generators, (ctx.seq_len,), ctx.device, score.dtype)
        # float32 sums even for half-precision scores: diffusers' temperature is a float32 tensor with
        # dimensions, which promotes log p + τ·g to float32 (post_model_dtype = "model", issue 12)
        return score.float() + tau * noise.float()


@register_component("confidence", "gumbel")
class GumbelConfidence(AnnealedGumbel):
    """log p(sampled) + τ_i · Gumbel, τ annealed from `start` to `end` (Meissonic vanilla: linear 2 → 0).

    MaskGIT's "mask_by_random_topk" (Chang et al. 2022, §3.2) with the annealed temperature of
    diffusers' AmusedScheduler (reference §1 step 3f). The Gumbel draw covers every position and is
    made even when τ_i = 0, as the reference does, so that the random stream stays aligned with it.
    """

    def score(self, probs, sampled, ctx):
        selected = torch.gather(probs, -1, sampled.unsqueeze(-1)).squeeze(-1)
        return self.with_noise(torch.log(selected.clamp(1e-20)), ctx, always_draw=True)


@register_component("confidence", "margin")
class MarginConfidence(AnnealedGumbel):
    """p(top-1) − p(top-2) per position: reveal where the model's best guess leads its runner-up most.

    Margin-based unmasking as studied for masked diffusion models (Kim et al. 2025, arXiv 2502.06768,
    "Train for the worst, plan for the best"). Independent of the sampled token. Optional
    annealed Gumbel noise (default none: start = end = 0).
    """

    start: float = 0.0
    end: float = 0.0

    def score(self, probs, sampled, ctx):
        top2 = probs.topk(2, dim=-1).values
        return self.with_noise(top2[..., 0] - top2[..., 1], ctx, always_draw=False)


@register_component("confidence", "entropy")
class EntropyConfidence(AnnealedGumbel):
    """−H(p) = Σ_v p log p per position: reveal the positions whose distribution is most peaked first.

    The entropy error proxy of EB-sampler (Ben-Hamu et al. 2025, arXiv 2505.24857) and of
    entropy-ordered unmasking for masked diffusion models. Optional annealed Gumbel noise (default none).
    """

    start: float = 0.0
    end: float = 0.0

    def score(self, probs, sampled, ctx):
        return self.with_noise(torch.xlogy(probs, probs).sum(dim=-1), ctx, always_draw=False)


@register_component("confidence", "random")
class RandomOrder(Confidence):
    """A uniformly random reveal order: confidence ~ U(0, 1), independent of the model.

    With one token per step this makes the sampler an exact ancestral sampler of the model's joint
    distribution (each token drawn from its exact conditional given the revealed ones).
    """

    def score(self, probs, sampled, ctx):
        return randomness.uniform(ctx.generators, (ctx.seq_len,), ctx.device)
