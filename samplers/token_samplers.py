"""Token samplers: draw a token for every position from the step's probabilities (token_sampler kind).

Every stochastic sampler here accepts a *sampling* temperature schedule (neither Meissonic code base
anneals it: both draw at temperature 1 and anneal only the Gumbel noise of the confidence;
MaskGIT-family ablations do): tokens are drawn from
softmax(log p / T_i) ∝ p^(1/T_i), with T_i from `temperature` (first step) to `temperature_end` (last
step, default = `temperature`) along `temperature_schedule` (constant, linear, cosine). Only the draw
is tempered: the confidence still sees the untempered probabilities. At T_i = 1 the probabilities
pass through untouched, so the vanilla path is bit-identical.

Each sampler also declares its fused form for the `fast` step mode (`fused()`): a `DrawKernel` that
draws from the guided logits inside the single pass (samplers/fused_step.py), next to its exact form.
`gumbel-max-scored` (P2's draw, which also scores itself for the `draw-score` confidence) has none.
"""
from __future__ import annotations

import dataclasses

import torch

from . import counter_random as cr
from . import randomness, schedules
from .components import TokenSampler, register_component, require
from .fused_step import DrawKernel, FusedTokenSampler, race_bits

SAMPLING_TEMPERATURE_SCHEDULES = ("constant", "linear", "cosine")

#: entries per chunk of positions when a sampler transforms the probabilities (a tempered, truncated or
#: sorted copy of the whole (B, N, V) tensor is 128 MiB per image at Meissonic's size; one chunk of 2^20
#: entries is 4 MiB in float32, so even the sort's temporaries stay a fraction of a copy).
_CHUNK_ENTRIES = 1 << 20


def _position_step(vocab: int) -> int:
    return max(1, _CHUNK_ENTRIES // vocab)


def _chunkable(probs: torch.Tensor, generators) -> bool:
    """CPU only: there a draw consumes the generator entry by entry, so drawing position chunks in order
    from a row's generator reproduces the whole-row draw; CUDA's Philox offsets depend on each call's size."""
    return probs.device.type == "cpu" and all(g.device.type == "cpu" for g in generators)


def sample_transformed(generators, probs: torch.Tensor, transform) -> torch.Tensor:
    """``randomness.multinomial(generators, transform(probs))`` for a position-wise `transform`, built one
    chunk of positions at a time so that the transformed copy never exists at full size.

    Rows are drawn in order, and within a row the chunks in position order from the row's generator,
    which consumes it exactly as the whole-row draw does (tests/test_sampler_memory.py checks tokens and
    generator states against the unchunked form).
    """
    if not _chunkable(probs, generators):
        return randomness.multinomial(generators, transform(probs))
    out = torch.empty(probs.shape[:-1], dtype=torch.long, device=probs.device)
    step = _position_step(probs.shape[-1])
    for row, generator in enumerate(generators):
        for start in range(0, probs.shape[1], step):
            chunk = transform(probs[row, start:start + step])
            out[row, start:start + step] = randomness.multinomial([generator], chunk[None])[0]
    return out


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
        return _temper(probs, self.sampling_temperature(ctx))


def _temper(probs: torch.Tensor, tau: float) -> torch.Tensor:
    if tau == 1.0:
        return probs
    return (torch.log(probs) / tau).softmax(dim=-1)


@register_component("token_sampler", "multinomial")
class MultinomialSampler(TemperedSampler):
    """Categorical draw for every position (`torch.multinomial`; Meissonic vanilla at temperature 1)."""

    def sample(self, probs, ctx):
        tau = self.sampling_temperature(ctx)
        if tau == 1.0:
            return randomness.multinomial(ctx.generators, probs)
        return sample_transformed(ctx.generators, probs, lambda chunk: _temper(chunk, tau))

    def fused(self):
        return FusedTokenSampler(DrawKernel(), self.sampling_temperature)


@register_component("token_sampler", "gumbel-max-f64")
class GumbelMaxFloat64(TemperedSampler):
    """argmax_v (log p_v + g_v) with Gumbel noise g drawn in float64 (Zheng et al. 2024, arXiv 2409.02908).

    Gumbel-max is an exact categorical sampler only with enough precision: in float32, u is rounded so
    that −log(−log u) is truncated at about 16.6, which lowers the effective temperature and the token
    diversity (the paper's finding for masked diffusion models). Float64 uniforms push the truncation
    past 36. Costs one float64 uniform per codebook entry and position.
    """

    def sample(self, probs, ctx):
        tau = self.sampling_temperature(ctx)
        out = torch.empty(probs.shape[:-1], dtype=torch.long, device=probs.device)
        # One image at a time, and on the CPU one chunk of positions at a time: an (N, V) float64 draw per
        # image is 268 MB at Meissonic's 4096 × 8192 and its log temporaries as many again. The
        # chunks' uniforms come from the row's generator in position order, the same numbers as one draw.
        step = _position_step(probs.shape[-1]) if _chunkable(probs, ctx.generators) else probs.shape[1]
        for row, generator in enumerate(ctx.generators):
            for start in range(0, probs.shape[1], step):
                out[row, start:start + step] = _gumbel_argmax(_temper(probs[row, start:start + step], tau), generator)
        return out

    def fused(self):
        return FusedTokenSampler(Float64Race(), self.sampling_temperature)


@dataclasses.dataclass(frozen=True)
class Float64Race(DrawKernel):
    """The race in float64 with 53-bit uniforms (Gumbel up to 36.7), as the exact float64 sampler."""

    def tokens(self, logits, inv_temp, index, keys):
        bits = race_bits(index, keys)
        return ((logits * inv_temp).double() + cr.gumbel64_from_bits(bits, cr.second_stream(bits))).argmax(dim=-1)


def _gumbel_argmax(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """argmax(log p + g) over the last dim of probs ``(n, V)``, g from float64 uniforms of `generator`."""
    tiny = torch.finfo(torch.float64).tiny
    u = randomness.uniform([generator], tuple(probs.shape), probs.device, torch.float64)[0]
    gumbel = -torch.log(-torch.log(u.clamp(min=tiny)))
    return (torch.log(probs.double()) + gumbel).argmax(dim=-1)


#: the ε of the reference's Gumbel noise −log(−log(u + ε) + ε) (its `stochastic_sample_from_categorical`)
P2_GUMBEL_EPSILON = 1e-8


def scored_gumbel_argmax(probs: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(x̂, log softmax(log p + g)[x̂]) per row of probs ``(n, V)``, g = −log(−log(u + ε) + ε), u float64 uniforms
    of `generator` (P2's `stochastic_sample_from_categorical` and `logP` on the perturbed logits, arXiv 2502.03540).

    log p differs from the logits by a constant per row, which neither the argmax nor the log-softmax sees.
    """
    u = randomness.uniform([generator], tuple(probs.shape), probs.device, torch.float64)[0]
    perturbed = torch.log(probs.double()) - torch.log(-torch.log(u + P2_GUMBEL_EPSILON) + P2_GUMBEL_EPSILON)
    tokens = perturbed.argmax(dim=-1)
    score = perturbed.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(perturbed, dim=-1)
    return tokens, score


@register_component("token_sampler", "gumbel-max-scored")
class ScoredGumbelMax(TemperedSampler):
    """Gumbel-max draws in float64 that also score themselves: log softmax(ℓ/T + g)[x̂], for `draw-score` (P2, arXiv 2502.03540).

    x̂_j = argmax_v(log p_jv/T + g_jv), an exact categorical draw from softmax(ℓ/T), at every position
    (committed ones included: P2 judges them by this fresh draw); the score of each draw is kept for
    the step's `draw-score` confidence. The noise is P2's, −log(−log(u + 1e-8) + 1e-8) with float64 u.
    """

    def sample(self, probs, ctx):
        tau = self.sampling_temperature(ctx)
        tokens = torch.empty(probs.shape[:-1], dtype=torch.long, device=probs.device)
        scores = torch.empty(probs.shape[:-1], dtype=torch.float64, device=probs.device)
        # as gumbel-max-f64: one image at a time, on the CPU one chunk of positions at a time (the same
        # uniforms as one draw), so that no (N, V) float64 tensor exists at full size
        step = _position_step(probs.shape[-1]) if _chunkable(probs, ctx.generators) else probs.shape[1]
        for row, generator in enumerate(ctx.generators):
            for start in range(0, probs.shape[1], step):
                part = slice(start, start + step)
                tokens[row, part], scores[row, part] = scored_gumbel_argmax(_temper(probs[row, part], tau), generator)
        ctx.state(self)["draw_score"] = scores
        return tokens


@register_component("token_sampler", "top-k")
class TopKSampler(TemperedSampler):
    """Sample among the k most probable tokens only, renormalised (Fan et al. 2018, top-k sampling)."""

    k: int = 50

    def validate(self) -> None:
        super().validate()
        require(self.k >= 1, self.kind, self.name, f"k must be >= 1, got {self.k}")

    def sample(self, probs, ctx):
        tau = self.sampling_temperature(ctx)
        k = min(self.k, probs.shape[-1])

        def truncate(chunk):
            chunk = _temper(chunk, tau)
            kth = chunk.topk(k, dim=-1).values[..., -1:]
            # Ties at the k-th value are all kept: the draw must not depend on an arbitrary tie order.
            return torch.where(chunk >= kth, chunk, torch.zeros_like(chunk))

        return sample_transformed(ctx.generators, probs, truncate)

    def fused(self):
        return FusedTokenSampler(TopKRace(self.k), self.sampling_temperature)


@dataclasses.dataclass(frozen=True)
class TopKRace(DrawKernel):
    """The race among the entries ≥ the k-th largest tempered logit (ties at the k-th value kept, as the
    exact sampler keeps them)."""

    k: int
    materialises = True

    def truncate(self, tempered):
        kth = tempered.topk(min(self.k, tempered.shape[-1]), dim=-1).values[..., -1:]
        return torch.where(tempered >= kth, tempered, float("-inf"))


@register_component("token_sampler", "top-p")
class TopPSampler(TemperedSampler):
    """Nucleus sampling: the smallest set of most probable tokens with mass ≥ p (Holtzman et al. 2020, §3.1)."""

    p: float = 0.9

    def validate(self) -> None:
        super().validate()
        require(0 < self.p <= 1, self.kind, self.name, f"p must be in (0, 1], got {self.p}")

    def sample(self, probs, ctx):
        tau = self.sampling_temperature(ctx)
        # Chunked: the sort, its int64 order and the cumulative sums cost 7.5 copies at full size.
        return sample_transformed(ctx.generators, probs, lambda chunk: nucleus(_temper(chunk, tau), self.p))

    def fused(self):
        return FusedTokenSampler(TopPRace(float(self.p)), self.sampling_temperature)


@dataclasses.dataclass(frozen=True)
class TopPRace(DrawKernel):
    """The race within the nucleus of softmax(ℓ/T), from a sort of the block (Holtzman et al. 2020, §3.1):
    the entries whose tempered logit ≥ the smallest one the nucleus keeps."""

    p: float
    materialises = True

    def truncate(self, tempered):
        ordered = tempered.sort(dim=-1, descending=True).values
        mass = torch.softmax(ordered, dim=-1)
        before = mass.cumsum(dim=-1) - mass
        kept = (before < self.p).sum(dim=-1, keepdim=True).clamp(min=1)
        smallest = ordered.gather(-1, kept - 1)
        return torch.where(tempered >= smallest, tempered, float("-inf"))


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

    def fused(self):
        return FusedTokenSampler(Argmax())


@dataclasses.dataclass(frozen=True)
class Argmax(DrawKernel):
    """argmax_v ℓ_v of the guided logits: no temperature, no random numbers."""

    def tokens(self, logits, inv_temp, index, keys):
        return logits.argmax(dim=-1)
