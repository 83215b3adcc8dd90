"""Re-mask policies that re-score committed tokens: P2 path planning and a self-critic (remask kind).

In the vanilla step a revealed token is final. Both policies here choose the positions masked after
step i among *all* N positions, committed ones included, by a score; the count is still the reveal
schedule's mask_len, so the pace is kept (a re-opened committed token takes one of its slots).

P2, self-planning (Peng et al. 2025, "Path Planning for Masked Diffusion Model Sampling", arXiv
2502.03540, its sampler with the denoiser as its own planner): the step's forward already gives
probabilities at committed positions (their tokens were visible in its input), so the model re-scores
every committed token for free:

    score_j = confidence_j                (masked j: the variant's confidence, e.g. log p + τ·Gumbel)
    score_j = η · log p_j(x_j)            (committed j: the model's own re-scoring of its token)

and the mask_len lowest scores are masked. η > 1 re-masks committed tokens more readily, η < 1 less;
η = 0 keeps them (the vanilla step, exactly). Differences from the reference code (the authors'
`p2_sampling`): it scores a committed position by a *fresh draw* x̂_j from the model there, we by the
committed token itself (for a denoiser that copies visible tokens they coincide; for an MGT trained
on masked positions only, the committed token is what the planner must judge); its η = 0 gives
committed positions score 0, the top of its noise-free log-probability scale, which is our "keep".

Self-critic (Token-Critic, Lezama et al. 2022, "Improved Masked Image Generation with Token-Critic",
arXiv 2209.04439, with the MGT itself as the critic instead of a trained critic network): after
the step's draw x̂ (every position filled), one extra forward on x̂ scores every token by the model's
conditional log-probability of it given the whole completed image, log p(x̂_j | x̂, c), and the
mask_len lowest are masked (re-opening committed tokens when `reopen`, else only ordering the new
ones). One extra forward pass per step except the last, counted per image. The critic reads the
conditional logits without guidance: guidance schedules keep per-step state that a second call
within the step would disturb, and the critic's question (is this token plausible for this prompt
and image?) is the conditional one. Token-Critic samples its mask with annealed noise; ours is
deterministic (the lowest scores). That the MGT's predictions at *visible* positions carry
information is an assumption: the synthetic world's exact denoiser satisfies it (it conditions on
every visible token), an MGT trained only on masked positions may not; the benchmark measures it.
"""
from __future__ import annotations

import torch

from .components import RemaskPolicy, register_component, require
from .remasking import lowest_confidence


def chosen_log_prob(probs: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log p_j(tokens_j) ``(B, N)`` (−inf where the probability is 0)."""
    return torch.gather(probs, -1, tokens.unsqueeze(-1)).squeeze(-1).log()


def p2_scores(confidence: torch.Tensor, committed_log_prob: torch.Tensor, unknown: torch.Tensor,
              eta: float) -> torch.Tensor:
    """P2's planner scores (arXiv 2502.03540): confidence where masked, η·log p where committed (+inf: η = 0)."""
    if eta == 0.0:
        committed = torch.full_like(confidence, torch.inf)
    else:
        committed = eta * committed_log_prob.to(confidence.dtype)
    return torch.where(unknown, confidence, committed)


@register_component("remask", "p2")
class PathPlanning(RemaskPolicy):
    """P2 self-planning: mask the lowest of (masked: confidence; committed: η·log p of its token) over all positions (arXiv 2502.03540)."""

    eta: float = 1.0

    def validate(self) -> None:
        require(self.eta >= 0, self.kind, self.name, f"eta must be >= 0 (0 = committed tokens stay), got {self.eta}")

    def select(self, confidence, mask_len, ctx):
        committed = chosen_log_prob(ctx.probs, ctx.sampled)
        score = p2_scores(confidence, committed, ctx.unknown, self.eta)
        return lowest_confidence(score, torch.ones_like(ctx.unknown), mask_len)


@register_component("remask", "self-critic")
class SelfCritic(RemaskPolicy):
    """Token-Critic with the MGT as critic: one extra forward on the completed draw, mask the lowest log p(x̂_j | x̂) (arXiv 2209.04439)."""

    reopen: bool = True

    def extra_forward_passes(self) -> int:
        """The critic's forward on the completed draw, once per `select` (every step but the last)."""
        return 1

    def select(self, confidence, mask_len, ctx):
        completed = ctx.sampled
        # Counted for every image still being generated (masked at the step's start); `completed` has no
        # masked position left, so the engine's default rule would count none.
        cond, _ = ctx.engine.model_logits(ctx.generation, ctx.step, completed, with_uncond=False,
                                          images=ctx.unknown.any(dim=-1))
        score = torch.gather(cond.float().log_softmax(dim=-1), -1, completed.unsqueeze(-1)).squeeze(-1)
        candidates = torch.ones_like(ctx.unknown) if self.reopen else ctx.unknown
        return lowest_confidence(score, candidates, mask_len)
