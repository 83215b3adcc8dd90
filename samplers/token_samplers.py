"""Token samplers: draw a token for every position from the step's probabilities (token_sampler kind).

Every stochastic sampler here accepts a *sampling* temperature schedule (reference §2.4: neither
reference code base anneals it; MaskGIT-family ablations do): tokens are drawn from
softmax(log p / T_i) ∝ p^(1/T_i), with T_i from `temperature` (first step) to `temperature_end` (last
step, default = `temperature`) along `temperature_schedule` (constant, linear, cosine). Only the draw
is tempered: the confidence still sees the untempered probabilities. At T_i = 1 the probabilities
pass through untouched, so the vanilla path is bit-identical.
"""
from __future__ import annotations

import dataclasses

import torch

from . import randomness, schedules
from .components import TokenSampler, register_component, require

SAMPLING_TEMPERATURE_SCHEDULES = ("constant", "linear", "cosine")


@dataclasses.dataclass
class TemperedSampler(TokenSampler):
    """A token sampler with a sampling (softmax) temperature schedule."""

    temperature: float = 1.0
    temperature_end: float | None = None
    temperature_schedule: str = "constant"

    def validate(self) -> None:
        end = self.temperature if self.temperature_end is None else self.temperature_end
        require(self.temperature > 0 and end > 0, self.kind, self.name,
                f"sampling temperatures must be > 0 (use the 'greedy' sampler for T → 0), got {self.temperature}, {end}")
        require(self.temperature_schedule in SAMPLING_TEMPERATURE_SCHEDULES, self.kind, self.name,
                f"temperature_schedule must be one of {', '.join(SAMPLING_TEMPERATURE_SCHEDULES)}, "
                f"got {self.temperature_schedule!r}")

    def sampling_temperature(self, ctx) -> float:
        end = self.temperature if self.temperature_end is None else self.temperature_end
        return schedules.ramp(self.temperature_schedule, self.temperature, end, ctx.step, ctx.total_steps)

    def tempered(self, probs: torch.Tensor, ctx) -> torch.Tensor:
        """p^(1/T) renormalised, i.e. softmax(ℓ/T); the probabilities themselves when T = 1."""
        tau = self.sampling_temperature(ctx)
        if tau == 1.0:
            return probs
        return (torch.log(probs) / tau).softmax(dim=-1)


@register_component("token_sampler", "multinomial")
class MultinomialSampler(TemperedSampler):
    """Categorical draw for every position (`torch.multinomial`; Meissonic vanilla at temperature 1)."""

    def sample(self, probs, ctx):
        return randomness.multinomial(ctx.generators, self.tempered(probs, ctx))


@register_component("token_sampler", "gumbel-max-f64")
class GumbelMaxFloat64(TemperedSampler):
    """argmax_v (log p_v + g_v) with Gumbel noise g drawn in float64 (Zheng et al. 2024, arXiv 2409.02908).

    Gumbel-max is an exact categorical sampler only with enough precision: in float32, u is rounded so
    that −log(−log u) is truncated at about 16.6, which lowers the effective temperature and the token
    diversity (the paper's finding for masked diffusion models). Float64 uniforms push the truncation
    past 36. Costs one float64 uniform per codebook entry and position.
    """

    def sample(self, probs, ctx):
        probs = self.tempered(probs, ctx)
        tiny = torch.finfo(torch.float64).tiny
        out = torch.empty(probs.shape[:-1], dtype=torch.long, device=probs.device)
        # One image at a time: an (N, V) float64 draw per image is 268 MB at Meissonic's 4096 × 8192.
        for row, generator in enumerate(ctx.generators):
            u = randomness.uniform([generator], tuple(probs.shape[1:]), probs.device, torch.float64)[0]
            gumbel = -torch.log(-torch.log(u.clamp(min=tiny)))
            out[row] = (torch.log(probs[row].double()) + gumbel).argmax(dim=-1)
        return out


@register_component("token_sampler", "top-k")
class TopKSampler(TemperedSampler):
    """Sample among the k most probable tokens only, renormalised (Fan et al. 2018, top-k sampling)."""

    k: int = 50

    def validate(self) -> None:
        super().validate()
        require(self.k >= 1, self.kind, self.name, f"k must be >= 1, got {self.k}")

    def sample(self, probs, ctx):
        probs = self.tempered(probs, ctx)
        k = min(self.k, probs.shape[-1])
        kth = probs.topk(k, dim=-1).values[..., -1:]
        # Ties at the k-th value are all kept: the draw must not depend on an arbitrary tie order.
        return randomness.multinomial(ctx.generators, torch.where(probs >= kth, probs, torch.zeros_like(probs)))


@register_component("token_sampler", "top-p")
class TopPSampler(TemperedSampler):
    """Nucleus sampling: the smallest set of most probable tokens with mass ≥ p (Holtzman et al. 2020, §3.1)."""

    p: float = 0.9

    def validate(self) -> None:
        super().validate()
        require(0 < self.p <= 1, self.kind, self.name, f"p must be in (0, 1], got {self.p}")

    def sample(self, probs, ctx):
        probs = self.tempered(probs, ctx)
        return randomness.multinomial(ctx.generators, nucleus(probs, self.p))


def nucleus(probs: torch.Tensor, p: float) -> torch.Tensor:
    """probs with everything outside the top-p nucleus zeroed (not renormalised; multinomial does not need it).

    A token is kept when the mass of the strictly more probable tokens is < p, so the most probable
    token is always kept and the token that crosses p is included.
    """
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
    keep_sorted = mass_before < p
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    return torch.where(keep, probs, torch.zeros_like(probs))


@register_component("token_sampler", "greedy")
class GreedySampler(TokenSampler):
    """argmax_v p_v for every position: deterministic, the T → 0 limit of sampling (MaskGIT ablations)."""

    def sample(self, probs, ctx):
        return probs.argmax(dim=-1)
