"""An adaptive reveal count: entropy-bounded unmasking (Ben-Hamu et al. 2025, "Accelerated Sampling from
Masked Diffusion Models via Entropy Bounded Unmasking", EB-sampler, arXiv 2505.24857).

Revealing several tokens in one step samples them independently, which errs by (at most) the mutual
information between them; EB-sampler bounds that error by the tokens' entropies. Taking the masked
positions in the order in which they would be revealed (here: descending confidence of the variant,
so the set matches what the re-mask policy reveals), it reveals the longest prefix U with

    Σ_{j∈U} H(p_j) − max_{j∈U} H(p_j) ≤ γ,

which is never empty (one token costs 0). Our MGT adaptation keeps the base schedule as the slowest
pace: after step i, min(base mask_len, masked − |U|) positions stay masked, so the sampler reveals at
least as much as the base schedule and more when the model is certain. The count may reach 0: the
generation then ends before step T (the loop stops), and the number of forward passes follows the
model's certainty. γ = 0 reveals exactly the base schedule (ties of zero-entropy tokens aside).
"""
from __future__ import annotations

import torch

from .components import ConfigError, RevealSchedule, build_component, register_component, require


def entropy_bounded_count(entropy: torch.Tensor, order_score: torch.Tensor, candidates: torch.Tensor,
                          gamma: float) -> torch.Tensor:
    """|U| per row ``(B, 1)``: the longest prefix (by descending `order_score` among candidates) whose
    Σ H − max H ≤ γ (EB-sampler, arXiv 2505.24857)."""
    score = torch.where(candidates, order_score, torch.full_like(order_score, -torch.inf))
    order = score.argsort(dim=-1, descending=True, stable=True)
    h = torch.gather(entropy, -1, order)
    ok_position = torch.gather(candidates, -1, order)
    h = torch.where(ok_position, h, torch.zeros_like(h))
    # Σ − max is non-decreasing along the prefix, so "how many satisfy it" is the prefix length.
    excess = h.cumsum(dim=-1) - h.cummax(dim=-1).values
    within = (excess <= gamma) & ok_position
    return within.sum(dim=-1, keepdim=True)


@register_component("reveal_schedule", "entropy-bounded")
class EntropyBoundedReveal(RevealSchedule):
    """Reveal the longest confidence-ordered prefix with Σ H − max H ≤ γ, at least the base schedule (EB-sampler, arXiv 2505.24857)."""

    gamma: float = 1.0
    base: str = "cosine"

    def validate(self) -> None:
        require(self.gamma >= 0, self.kind, self.name, f"gamma must be >= 0 (nats), got {self.gamma}")
        require(self.base != self.name, self.kind, self.name, "base must be a fixed schedule, not itself")
        self._base = build_component("reveal_schedule", self.base)

    def check_composition(self, variant) -> None:
        if not hasattr(self, "_base"):
            self.validate()

    def mask_len(self, ctx):
        if ctx.probs is None or ctx.confidence is None:
            raise ConfigError("reveal_schedule 'entropy-bounded' needs the step's probabilities and confidence; "
                              "run it through SamplerEngine.step")
        if not hasattr(self, "_base"):
            self.validate()
        base = self._base.mask_len(ctx)
        entropy = -torch.xlogy(ctx.probs, ctx.probs).sum(dim=-1)
        revealed = entropy_bounded_count(entropy, ctx.confidence, ctx.unknown, self.gamma)
        masked = ctx.unknown.sum(dim=-1, keepdim=True)
        return torch.minimum(base, masked - revealed).clamp(min=0)
