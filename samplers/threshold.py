"""Confidence-threshold parallel decoding (Wu et al. 2025, "Fast-dLLM: Training-free Acceleration of
Diffusion LLM via KV Cache and Parallel Decoding", arXiv 2505.22618, its threshold strategy for parallel decoding).

Fast-dLLM reveals, at every step, every masked position whose predicted token has confidence
p(x̂_j) > τ (and the single most confident one when none does): when the model is sure of many
tokens at once they are decoded together, and the number of forward passes follows the model's
certainty. The paper bounds the error of decoding them independently when their confidences
are high.

Our MGT form keeps the base schedule as the slowest pace: after step i,

    min(base mask_len, masked − #{j masked : p_j(x̂_j) > τ})

positions stay masked, x̂_j the token the step sampled and p the step's probabilities (after guidance,
logits processors and probability correctors). So the sampler reveals at least the base schedule's
count, and more when the model is confident; the count may reach 0, and the generation then ends
before step T (the standard loop stops; every pass is counted per image). *Which* positions are
revealed is the variant's confidence: with the pure probability order (`confidence = gumbel` at
temperature 0, the `fast-dllm` preset) the revealed set is exactly the above-threshold set plus the
schedule's fill-up, as in the paper; with vanilla's Gumbel-noised order the count is Fast-dLLM's but
the set is noised. τ ≥ 1 never fires: the base schedule exactly.
"""
from __future__ import annotations

import torch

from .components import ConfigError, RevealSchedule, build_component, register_component, require


def above_threshold_count(probs: torch.Tensor, sampled: torch.Tensor, candidates: torch.Tensor,
                          threshold: float) -> torch.Tensor:
    """``(B, 1)``: how many candidate positions have p(sampled token) > threshold (Fast-dLLM, arXiv 2505.22618)."""
    chosen = torch.gather(probs, -1, sampled.unsqueeze(-1)).squeeze(-1)
    return ((chosen > threshold) & candidates).sum(dim=-1, keepdim=True)


@register_component("reveal_schedule", "confidence-threshold")
class ConfidenceThresholdReveal(RevealSchedule):
    """Reveal every masked position with p(sampled token) > τ, at least the base schedule (Fast-dLLM, arXiv 2505.22618)."""

    threshold: float = 0.9
    base: str = "cosine"

    def validate(self) -> None:
        require(0 <= self.threshold, self.kind, self.name,
                f"threshold must be >= 0 (a probability; >= 1 never fires), got {self.threshold}")
        require(self.base not in (self.name, "entropy-bounded"), self.kind, self.name,
                "base must be a fixed schedule, not an adaptive one")
        self._base = build_component("reveal_schedule", self.base)

    def check_composition(self, variant) -> None:
        if not hasattr(self, "_base"):
            self.validate()

    def mask_len(self, ctx):
        if ctx.probs is None or ctx.sampled is None:
            raise ConfigError("reveal_schedule 'confidence-threshold' needs the step's probabilities and sampled "
                              "tokens; run it through SamplerEngine.step")
        if not hasattr(self, "_base"):
            self.validate()
        base = self._base.mask_len(ctx)
        confident = above_threshold_count(ctx.probs, ctx.sampled, ctx.unknown, self.threshold)
        masked = ctx.unknown.sum(dim=-1, keepdim=True)
        return torch.minimum(base, masked - confident).clamp(min=0)
