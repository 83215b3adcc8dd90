"""Confidence scores that decide which masked positions stay masked (confidence kind).

The engine keeps the `mask_len` lowest-scoring masked positions masked and reveals the rest, so a
confidence is an order over positions. Model-based orders (probability, margin, entropy) may carry
annealed Gumbel noise τ_i·g (MaskGIT's "mask_by_random_topk", Chang et al. 2022 §3.2); model-free
orders are `random` and `halton` (in `halton.py`).

Temperature schedules for the Gumbel noise (the only temperature Meissonic anneals: its confidence's
Gumbel scale falls linearly from 2 to 0, its token draws stay at temperature 1): τ_i from `start` to
`end` with shape `schedule`:

- linear (vanilla, Meissonic 2 → 0): ``torch.linspace(start, end, T)[i]`` in float32, as diffusers;
- constant: τ_i = start;
- cosine: start + (end − start)(1 − cos(π i/(T−1)))/2;
- exponential: start·(end/start)^(i/(T−1)) (start, end > 0);
- maskgit: τ_i = start·(1 − (i+1)/T), the official MaskGIT choice temperature (τ0 = 4.5 there; `end` unused).

For the `fast` step mode each confidence declares its fused form (`fused()`): the statistic the single
pass computes per position (samplers/fused_step.py) and the score it makes from it, with the same noise
draws as its exact form.
"""
from __future__ import annotations

import dataclasses

import torch

from . import randomness, schedules
from .components import ConfigError, Confidence, register_component, require
from .fused_step import FusedConfidence, StatisticKernel, model_free_confidence

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
        # dimensions, which promotes log p + τ·g to float32 (post_model_dtype = "model", docs/scaling.md)
        return score.float() + tau * noise.float()


@register_component("confidence", "gumbel")
class GumbelConfidence(AnnealedGumbel):
    """log p(sampled) + τ_i · Gumbel, τ annealed from `start` to `end` (Meissonic vanilla: linear 2 → 0).

    MaskGIT's "mask_by_random_topk" (Chang et al. 2022, §3.2) with the annealed temperature of
    diffusers' AmusedScheduler (c_j = log p_j(x̂_j) + τ_i·g_j, g_j = −log(−log u), u clamped at 1e-20,
    τ_i = linspace(2, 0, T)[i]). The Gumbel draw covers every position and is made even when τ_i = 0,
    as the reference does, so that the random stream stays aligned with it.
    """

    def score(self, probs, sampled, ctx):
        selected = torch.gather(probs, -1, sampled.unsqueeze(-1)).squeeze(-1)
        return self.with_noise(torch.log(selected.clamp(1e-20)), ctx, always_draw=True)

    def fused(self):
        # the pass's log p(token) is the same clamped log as above
        return FusedConfidence(StatisticKernel(),
                               lambda log_p, sampled, ctx: self.with_noise(log_p, ctx, always_draw=True))


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

    def fused(self):
        return FusedConfidence(Margin(), lambda margin, sampled, ctx: self.with_noise(margin, ctx, always_draw=False))


@dataclasses.dataclass(frozen=True)
class Margin(StatisticKernel):
    """p(top-1) − p(top-2) from the block's two largest shifted logits: (e^s₁ − e^s₂) / Σ_v e^s_v."""

    materialises = True

    def compute(self, shifted, total, log_total, log_p):
        two = shifted.topk(2, dim=-1).values
        return (two[..., 0].exp() - two[..., 1].exp()) / total[..., 0]


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

    def fused(self):
        return FusedConfidence(NegativeEntropy(),
                               lambda entropy, sampled, ctx: self.with_noise(entropy, ctx, always_draw=False))


@dataclasses.dataclass(frozen=True)
class NegativeEntropy(StatisticKernel):
    """Σ_v p log p in one reduction, with no probability tensor: Σ_v e^s (s − log Z) / Z, s = ℓ − max ℓ."""

    def compute(self, shifted, total, log_total, log_p):
        weights = shifted.exp()
        return (weights * torch.where(weights > 0, shifted, 0.0)).sum(dim=-1) / total[..., 0] - log_total[..., 0]


@register_component("confidence", "random")
class RandomOrder(Confidence):
    """A uniformly random reveal order: confidence ~ U(0, 1), independent of the model.

    With one token per step this makes the sampler an exact ancestral sampler of the model's joint
    distribution (each token drawn from its exact conditional given the revealed ones).
    """

    def score(self, probs, sampled, ctx):
        return randomness.uniform(ctx.generators, (ctx.seq_len,), ctx.device)

    def fused(self):
        return model_free_confidence(self)


@register_component("confidence", "draw-score")
class DrawScore(Confidence):
    """The token sampler's own score of its draw at every position: log softmax(ℓ/T + g)[x̂] (needs `gumbel-max-scored`; P2, arXiv 2502.03540).

    P2's confidence (`score_fn = logP` applied to the Gumbel-perturbed logits its draw came from),
    coupled with the draw through the same noise, so it can only come from the sampler that drew.
    At committed positions it is the score of the fresh draw there, which `p2-confidence` uses.
    """

    def check_composition(self, variant) -> None:
        from .token_samplers import ScoredGumbelMax  # imported here: the confidence kind loads no token sampler

        if not isinstance(variant.token_sampler, ScoredGumbelMax):
            raise ConfigError(f"confidence 'draw-score' reads the token sampler's score of its own draw: use it with "
                              f"token_sampler 'gumbel-max-scored', not {variant.token_sampler.name!r}")

    def score(self, probs, sampled, ctx):
        state = ctx.state(ctx.generation.variant.token_sampler)
        if "draw_score" not in state:
            raise ConfigError("confidence 'draw-score' needs this step's draw by token_sampler 'gumbel-max-scored'; "
                              "run it through SamplerEngine.step")
        return state.pop("draw_score").to(probs.device)  # popped: a later step can never read a stale score
