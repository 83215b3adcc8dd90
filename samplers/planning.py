"""Re-mask policies that re-score committed tokens: P2 path planning and a self-critic (remask kind).

In the vanilla step a revealed token is final. Both policies here choose the positions masked after
step i among *all* N positions, committed ones included, by a score; the count is still the reveal
schedule's mask_len, so the pace is kept (a re-opened committed token takes one of its slots).

P2, self-planning (Peng et al. 2025, "Path Planning for Masked Diffusion Model Sampling", arXiv
2502.03540, its sampler with the denoiser as its own planner): the step's forward already gives
probabilities at committed positions (their tokens were visible in its input), so the model re-scores
every committed position for free, and the mask_len lowest scores over all N positions are masked.
Two forms of the score:

- as the authors' code (`p2_sampling` with `score_fn = logP`, pengzhangzhi/path_planning), remask
  `p2-confidence` with the `gumbel-max-scored` token sampler (token_samplers.py) and the `draw-score`
  confidence (confidence.py) (preset `p2`): every position j, masked or committed, draws x̂_j = argmax_v(ℓ_jv/τ + g_jv) (Gumbel-max,
  float64) and is scored by log softmax(ℓ_j/τ + g_j)[x̂_j], the log-probability of its draw under the
  *perturbed* logits; committed positions' scores are multiplied by η (the scores are ≤ 0, so η > 1
  re-masks committed tokens more readily, η = 0 gives them 0, the top: kept). A committed position is
  judged by a fresh draw there, not by its token (they coincide for a denoiser that copies visible
  tokens). Its count is linear, κ(t) = t: floor(N(1 − (i+1)/T)) masked after step i.
- ours, remask `p2` on the vanilla sampler (preset `p2-remask`, "vanilla with one change"):

    score_j = confidence_j                (masked j: the variant's confidence, e.g. log p + τ_i·Gumbel)
    score_j = η · log p_j(x_j)            (committed j: the noise-free log-probability of its token)

  η = 0 keeps committed tokens (the vanilla step, exactly); the count is the variant's (cosine).

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


@register_component("remask", "p2-confidence")
class PathPlanningConfidence(RemaskPolicy):
    """P2 as the authors' code: mask the lowest of one score everywhere, the confidence, committed positions' × η (arXiv 2502.03540).

    score_j = confidence_j for masked j, η · confidence_j for committed j (`p2_sampling`: ``score[unmask_t]
    *= eta``). With the `draw-score` confidence (≤ 0) η = 0 keeps committed tokens; a confidence that can
    be positive (e.g. the annealed Gumbel one) has no such reading, so prefer `p2` with it.
    """

    eta: float = 1.0

    def validate(self) -> None:
        require(self.eta >= 0, self.kind, self.name, f"eta must be >= 0, got {self.eta}")

    def select(self, confidence, mask_len, ctx):
        score = torch.where(ctx.unknown, confidence, self.eta * confidence)
        return lowest_confidence(score, torch.ones_like(ctx.unknown), mask_len)


@register_component("remask", "p2")
class PathPlanning(RemaskPolicy):
    """P2 self-planning on any sampler: mask the lowest of (masked: confidence; committed: η·log p of its token) over all positions (arXiv 2502.03540).

    Our form (see the module doc): the committed token itself is judged, noise-free; the reference's
    form is `p2-confidence` with `draw-score`.
    """

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
