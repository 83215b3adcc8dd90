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
  `p2-confidence` with the `gumbel-max-scored` token sampler and the `draw-score` confidence (preset
  `p2`): every position j, masked or committed, draws x̂_j = argmax_v(ℓ_jv/τ + g_jv) (Gumbel-max,
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

from . import randomness
from .components import ConfigError, Confidence, RemaskPolicy, register_component, require
from .remasking import lowest_confidence
from .token_samplers import TemperedSampler, _chunkable, _position_step, _temper


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


@register_component("confidence", "draw-score")
class DrawScore(Confidence):
    """The token sampler's own score of its draw at every position: log softmax(ℓ/T + g)[x̂] (needs `gumbel-max-scored`; P2, arXiv 2502.03540).

    P2's confidence (`score_fn = logP` applied to the Gumbel-perturbed logits its draw came from),
    coupled with the draw through the same noise, so it can only come from the sampler that drew.
    At committed positions it is the score of the fresh draw there, which `p2-confidence` uses.
    """

    def check_composition(self, variant) -> None:
        if not isinstance(variant.token_sampler, ScoredGumbelMax):
            raise ConfigError(f"confidence 'draw-score' reads the token sampler's score of its own draw: use it with "
                              f"token_sampler 'gumbel-max-scored', not {variant.token_sampler.name!r}")

    def score(self, probs, sampled, ctx):
        state = ctx.state(ctx.generation.variant.token_sampler)
        if "draw_score" not in state:
            raise ConfigError("confidence 'draw-score' needs this step's draw by token_sampler 'gumbel-max-scored'; "
                              "run it through SamplerEngine.step")
        return state.pop("draw_score").to(probs.device)  # popped: a later step can never read a stale score


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
