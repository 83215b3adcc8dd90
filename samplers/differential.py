"""Differential sampling: the token-distribution correction of Shao et al. 2024 ("Bag of Design Choices
…", arXiv 2411.10781, §3 "Enhanced Inference"; the flag `low_entropy` of its code's `scheduler.step`).

At step i, with p_i the step's probabilities and p_prev those kept from the previous step:

1. KL_j = Σ_v p_i,j(v) · [log p_i,j(v) − log p_prev,j(v)] per position j;
2. among the candidate positions, the fraction f (default 0.75) with the *smallest* KL are corrected;
3. a corrected position samples from the normalised positive part of the change,
   p̃_j = max(p_i,j − p_prev,j, floor) / Σ_v max(·), floor = 1e-6;
4. p̃ replaces p for both the token draw and the confidence (it is a probability corrector).

The first step has no p_prev and passes through; so does the last step by default (the reference's
step counter never corrects its last call).

Where we differ from the reference code (each documented in docs/catalogue.md):
- State is scoped to one generation (`ctx.state`). The reference keeps p_prev and its step counter on
  the scheduler object, so a second image starts with the first image's p_prev and a shifted counter.
- p_prev is looked up by step index (the latest distribution computed at step i − 1), so a loop that
  runs a step twice (zig-zag) compares with the previous *step*, not the previous call, as the
  reference's call counter does.
- Candidates (`scope`): "masked" (default) ranks only the positions still masked at this step and
  corrects floor(f · #masked) of them — only those are sampled. "all" is the reference: rank all N
  positions, correct floor(f · N), decoded ones included (late in sampling they fill most slots).
- `previous = "corrected"` (default) keeps p̃ as the next step's p_prev, as the reference does (it
  aliases the arrays); "model" keeps the uncorrected p_i.
- Underflow (`kl`): where a probability underflows to 0 in float32 (large logits, e.g. CFG 9), the
  reference's `F.kl_div(p_prev.log(), p)` is +∞ (p_prev(v) = 0 < p(v)) or NaN (p(v) = p_prev(v) = 0:
  0·log 0 − 0·(−∞)), and its ascending sort puts +∞ after every finite value and NaN last, so those
  positions are never corrected. Our default `kl = "clamped"` uses 0·log 0 = 0 and floors p_prev at
  float32's smallest normal, so every KL is finite and ranked by its size: a different set is
  corrected once anything underflows (end to end at CFG 9 on Meissonic-size logits, 0 of 9 images
  matched the reference). `kl = "reference"` computes the reference's expression itself and keeps
  its order (NaN last; ties in position order); with `scope = "all"` that is the reference's
  correction token for token, underflow included (the `differential-reference` preset).
"""
from __future__ import annotations

import math

import torch

from .components import ConfigError, ProbabilityCorrector, register_component, require

SCOPES = ("masked", "all")
KL_MODES = ("clamped", "reference")
PREVIOUS = ("corrected", "model")


def kl_per_position(probs: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """KL(p ‖ p_prev) summed over the codebook, ``(B, N)``; 0·log 0 = 0, p_prev floored at float32 tiny."""
    tiny = torch.finfo(previous.dtype).tiny
    return torch.xlogy(probs, probs).sum(dim=-1) - (probs * torch.log(previous.clamp(min=tiny))).sum(dim=-1)


def kl_reference(probs: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """The reference's KL, ``F.kl_div(p_prev.log(), p, reduction="none").sum(-1)``: +inf / NaN where probabilities underflow."""
    return torch.nn.functional.kl_div(previous.log(), probs, reduction="none").sum(dim=-1)


def smallest_fraction(kl: torch.Tensor, candidates: torch.Tensor, fraction: float, scope: str) -> torch.Tensor:
    """Boolean ``(B, N)``: the floor(f·n) candidates with the smallest KL per row (n = N for scope "all")."""
    count = candidates.sum(dim=-1) if scope == "masked" else torch.full(kl.shape[:1], kl.shape[1], device=kl.device)
    k = torch.floor(count.double() * fraction).long()
    ranked = torch.where(candidates, kl, torch.full_like(kl, math.inf)).argsort(dim=-1, stable=True)
    rank = torch.empty_like(ranked).scatter_(-1, ranked, torch.arange(kl.shape[1], device=kl.device).expand_as(ranked))
    return (rank < k.unsqueeze(-1)) & candidates


def corrected_distribution(probs: torch.Tensor, previous: torch.Tensor, floor: float) -> torch.Tensor:
    """max(p − p_prev, floor) renormalised over the codebook (step 3 of the module doc; the reference's floor is 1e-6)."""
    positive = (probs - previous).clamp(min=floor)
    return positive / positive.sum(dim=-1, keepdim=True)


@register_component("probability_corrector", "differential")
class DifferentialSampling(ProbabilityCorrector):
    """Sample the lowest-KL fraction f of tokens from max(p_t − p_prev, 1e-6), renormalised (arXiv 2411.10781 §3)."""

    fraction: float = 0.75
    floor: float = 1e-6
    scope: str = "masked"
    previous: str = "corrected"
    last_step: bool = False
    kl: str = "clamped"

    def validate(self) -> None:
        require(0 <= self.fraction <= 1, self.kind, self.name, f"fraction must be in [0, 1], got {self.fraction}")
        require(self.floor > 0, self.kind, self.name, f"floor must be > 0 (it keeps p̃ a distribution), got {self.floor}")
        require(self.scope in SCOPES, self.kind, self.name, f"scope must be one of {', '.join(SCOPES)}, got {self.scope!r}")
        require(self.kl in KL_MODES, self.kind, self.name, f"kl must be one of {', '.join(KL_MODES)}, got {self.kl!r}")
        require(self.previous in PREVIOUS, self.kind, self.name,
                f"previous must be one of {', '.join(PREVIOUS)}, got {self.previous!r}")

    def check_composition(self, variant) -> None:
        same = [c for c in variant.probability_correctors if isinstance(c, DifferentialSampling)]
        if len(same) > 1:
            raise ConfigError(f"probability_corrector {self.name!r} appears {len(same)} times; a second correction "
                              "would compare against the first one's output, not the previous step. Keep one.")

    def __call__(self, probs, ctx):
        history = ctx.state(self).setdefault("history", {})
        previous = history.get(ctx.step - 1)
        out = probs
        if previous is not None and (self.last_step or not ctx.is_last) and self.fraction > 0:
            candidates = ctx.unknown if self.scope == "masked" else torch.ones_like(ctx.unknown)
            kl = kl_per_position(probs, previous) if self.kl == "clamped" else kl_reference(probs, previous)
            chosen = smallest_fraction(kl, candidates, self.fraction, self.scope)
            out = torch.where(chosen.unsqueeze(-1), corrected_distribution(probs, previous, self.floor), probs)
        history[ctx.step] = out if self.previous == "corrected" else probs
        # Keep the three latest step indices: a zig-zag inversion run with processors records step i + 1
        # before step i is re-denoised, which still needs step i − 1.
        for old in sorted(history)[:-3]:
            del history[old]
        return out
