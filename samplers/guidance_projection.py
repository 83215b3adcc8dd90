"""Guidance that reshapes the CFG update on logits: APG and CFG-Zero* (guidance kind).

Both papers act on a continuous model's prediction (APG on the denoised image D, CFG-Zero* on the flow
velocity v). A masked generative transformer's prediction is a logit vector ℓ_j ∈ R^V per position j,
and a logit vector is defined only up to an additive constant (softmax(ℓ + c) = softmax(ℓ)). So every
inner product and norm below is taken on *centred* logits, ℓ̄ = ℓ − mean_v ℓ: the canonical
representative, for which projections do not depend on the arbitrary offset. The sums run over the
codebook of each position (`over = "position"`) or over the codebook and every position still masked
at this step (`over = "image"`: the papers' per-sample reductions; committed positions are not
sampled, so their logits must not steer the rest). Computed in float64, returned as float32.

With w_i the step's CFG scale (the run's guidance, applied only when w > 1 as `constant` does):

APG (Sadat et al. 2024, "Eliminating Oversaturation and Artifacts of High Guidance Scales in
Diffusion Models", arXiv 2410.02416):

    Δ_i = ℓ̄_c − ℓ̄_u,   m_i = Δ_i + β m_{i−1}   (momentum β; m from the previous *step*)
    m_i ← m_i · min(1, r / ‖m_i‖)               (norm threshold r; r = 0: off)
    Δ_∥ = (⟨m_i, ℓ̄_c⟩ / ⟨ℓ̄_c, ℓ̄_c⟩) ℓ̄_c,   Δ_⊥ = m_i − Δ_∥
    ℓ = ℓ̄_c + (w_i − 1)(Δ_⊥ + η Δ_∥)

η = 1, β = 0, r = 0 is CFG (softmax-equal; the component then returns CFG's own tensor, bit for bit).
Defaults η = 0 (drop the parallel part, the paper's main ingredient), β = 0, r = 0: the threshold r
is in logit units (a norm over V = 8192 or over a whole image); the paper's thresholds are
image-space norms and do not transfer, so set it per model.

CFG-Zero* (Fan et al. 2025, "CFG-Zero*: Improved Classifier-Free Guidance for Flow Matching Models",
arXiv 2503.18886):

    s* = ⟨ℓ̄_c, ℓ̄_u⟩ / ‖ℓ̄_u‖²                 (optimized scale; ‖ℓ̄_u‖ = 0 → s* = 1)
    ℓ = s* ℓ̄_u + w_i (ℓ̄_c − s* ℓ̄_u)
    ℓ = 0 for the first `zero_init_steps` steps  (zero-init)

Zero-init zeroes the velocity at the first ODE step(s) of a flow model, which leaves the sample at
its noise. Its logit form, ℓ = 0, is a uniform distribution: the MGT then *commits* uniformly random
tokens at those steps (a reveal is final), which is not the same mild intervention, so the default
is 0 steps. `optimized_scale = false` and 0 zero-init steps is CFG bit for bit.
"""
from __future__ import annotations

import torch

from .components import Guidance, register_component, require

REDUCTIONS = ("image", "position")


def centred(logits: torch.Tensor) -> torch.Tensor:
    """ℓ − mean_v ℓ in float64: the offset-free representative of each position's logits."""
    logits = logits.double()
    return logits - logits.mean(dim=-1, keepdim=True)


def inner(a: torch.Tensor, b: torch.Tensor, over: str, unknown: torch.Tensor | None) -> torch.Tensor:
    """⟨a, b⟩ per position ``(B, N, 1)`` or per image over masked positions ``(B, 1, 1)``."""
    per_position = (a * b).sum(dim=-1, keepdim=True)
    if over == "position":
        return per_position
    weights = torch.ones_like(per_position) if unknown is None else unknown.unsqueeze(-1).to(per_position.dtype)
    return (per_position * weights).sum(dim=-2, keepdim=True)


def safe_ratio(numerator: torch.Tensor, denominator: torch.Tensor, fallback: float) -> torch.Tensor:
    return torch.where(denominator > 0, numerator / denominator.clamp(min=torch.finfo(denominator.dtype).tiny),
                       torch.full_like(numerator, fallback))


def apg_update(cond: torch.Tensor, uncond: torch.Tensor, previous: torch.Tensor | None, w: float, eta: float,
               momentum: float, norm_threshold: float, over: str, unknown: torch.Tensor | None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """APG on logits (arXiv 2410.02416): returns (guided logits float64, momentum state m_i)."""
    c = centred(cond)
    m = c - centred(uncond)
    if momentum != 0.0 and previous is not None:
        m = m + momentum * previous
    state = m
    if norm_threshold > 0:
        norm = inner(m, m, over, unknown).sqrt()
        m = m * safe_ratio(torch.full_like(norm, norm_threshold), norm, 1.0).clamp(max=1.0)
    parallel = safe_ratio(inner(m, c, over, unknown), inner(c, c, over, unknown), 0.0) * c
    orthogonal = m - parallel
    return c + (w - 1.0) * (orthogonal + eta * parallel), state


def cfg_zero_star(cond: torch.Tensor, uncond: torch.Tensor, w: float, over: str,
                  unknown: torch.Tensor | None) -> torch.Tensor:
    """CFG-Zero* on logits (arXiv 2503.18886): s*·ℓ̄_u + w(ℓ̄_c − s*·ℓ̄_u), float64."""
    c, u = centred(cond), centred(uncond)
    s = safe_ratio(inner(c, u, over, unknown), inner(u, u, over, unknown), 1.0)
    return s * u + w * (c - s * u)


class _RunScale(Guidance):
    """The run's w when w > 1 (as `constant`), else no guidance."""

    def scale(self, ctx) -> float:
        w = float(ctx.guidance_scale)
        return w if w > 1.0 else 1.0

    def validate(self) -> None:
        require(self.over in REDUCTIONS, self.kind, self.name,
                f"over must be one of {', '.join(REDUCTIONS)}, got {self.over!r}")


@register_component("guidance", "apg")
class AdaptiveProjectedGuidance(_RunScale):
    """APG on logits: drop (η = 0) the CFG update's part parallel to the conditional logits, with momentum β and norm threshold r (arXiv 2410.02416)."""

    eta: float = 0.0
    momentum: float = 0.0
    norm_threshold: float = 0.0
    over: str = "image"

    def validate(self) -> None:
        super().validate()
        require(self.norm_threshold >= 0, self.kind, self.name, f"norm_threshold must be >= 0 (0 = off), got {self.norm_threshold}")
        require(-1 < self.momentum < 1, self.kind, self.name, f"momentum must be in (-1, 1), got {self.momentum}")

    def neutral(self) -> bool:
        return self.eta == 1.0 and self.momentum == 0.0 and self.norm_threshold == 0.0

    def combine(self, cond, uncond, ctx):
        w = self.scale(ctx)
        if w == 1.0 or uncond is None or self.neutral():
            return super().combine(cond, uncond, ctx)
        history = ctx.state(self).setdefault("momentum", {})
        guided, state = apg_update(cond, uncond, history.get(ctx.step - 1), w, self.eta, self.momentum,
                                   self.norm_threshold, self.over, ctx.unknown)
        if self.momentum != 0.0:
            history[ctx.step] = state
            for old in sorted(history)[:-2]:
                del history[old]
        return guided.float()


@register_component("guidance", "cfg-zero-star")
class CFGZeroStar(_RunScale):
    """CFG-Zero* on logits: CFG around s*·ℓ_u, s* = ⟨ℓ̄_c, ℓ̄_u⟩/‖ℓ̄_u‖², and optional zero-init steps (arXiv 2503.18886)."""

    optimized_scale: bool = True
    zero_init_steps: int = 0
    over: str = "image"

    def validate(self) -> None:
        super().validate()
        require(self.zero_init_steps >= 0, self.kind, self.name, f"zero_init_steps must be >= 0, got {self.zero_init_steps}")

    def needs_uncond(self, ctx) -> bool:
        return ctx.step >= self.zero_init_steps and super().needs_uncond(ctx)

    def combine(self, cond, uncond, ctx):
        if ctx.step < self.zero_init_steps:
            return torch.zeros_like(cond, dtype=torch.float32)
        w = self.scale(ctx)
        if w == 1.0 or uncond is None or not self.optimized_scale:
            return super().combine(cond, uncond, ctx)
        return cfg_zero_star(cond, uncond, w, self.over, ctx.unknown).float()
