"""Reveal (masking) schedules: how many positions stay masked after each step (reveal_schedule kind).

Every schedule is a mask ratio γ(r) of progress r = (i+1)/T (pure functions in `schedules.py`); the
count that stays masked is floor(N·γ(r)) clipped to [1, masked − 1], the vanilla step's rule
(diffusers AmusedScheduler.step: reveal at least one token a step, and never re-mask all of them). The adaptive, model-dependent count
(`entropy-bounded`) lives in `adaptive.py`.
"""
from __future__ import annotations

from . import schedules
from .components import RevealSchedule, clip_mask_len, register_component, require


@register_component("reveal_schedule", "cosine")
class CosineReveal(RevealSchedule):
    """floor(N · cos(π (i+1) / 2T)) stay masked (MaskGIT §3.3, Chang et al. 2022; Meissonic's default)."""

    def mask_ratio(self, progress):
        return schedules.cosine_mask_ratio(progress)


@register_component("reveal_schedule", "linear")
class LinearReveal(RevealSchedule):
    """floor(N · (1 − (i+1)/T)) stay masked: the same number revealed at every step (MaskGIT §3.3)."""

    def mask_ratio(self, progress):
        return schedules.linear_mask_ratio(progress)


@register_component("reveal_schedule", "power")
class PowerReveal(RevealSchedule):
    """floor(N · (1 − r^k)) stay masked: MaskGIT's concave family, any exponent k > 0 (MaskGIT §3.3 and its schedule ablation).

    k > 1 reveals few tokens early and many late (k = 2 is "square", k = 3 "cubic"); k = 1 is linear;
    k < 1 is convex (see also `root`).
    """

    exponent: float = 2.0

    def validate(self):
        require(self.exponent > 0, self.kind, self.name, f"exponent must be > 0, got {self.exponent}")

    def mask_ratio(self, progress):
        return schedules.power_mask_ratio(progress, self.exponent)


@register_component("reveal_schedule", "square")
class SquareReveal(RevealSchedule):
    """floor(N · (1 − r²)) stay masked: MaskGIT's "square" (concave; MaskGIT §3.3 and its schedule ablation)."""

    def mask_ratio(self, progress):
        return schedules.power_mask_ratio(progress, 2.0)


@register_component("reveal_schedule", "cubic")
class CubicReveal(RevealSchedule):
    """floor(N · (1 − r³)) stay masked: MaskGIT's "cubic" (concave; MaskGIT §3.3 and its schedule ablation)."""

    def mask_ratio(self, progress):
        return schedules.power_mask_ratio(progress, 3.0)


@register_component("reveal_schedule", "root")
class RootReveal(RevealSchedule):
    """floor(N · (1 − r^(1/d))) stay masked: MaskGIT's convex "square root" for d = 2 (MaskGIT §3.3).

    Many tokens early, few late: the opposite of the concave schedules.
    """

    degree: float = 2.0

    def validate(self):
        require(self.degree > 0, self.kind, self.name, f"degree must be > 0, got {self.degree}")

    def mask_ratio(self, progress):
        return schedules.root_mask_ratio(progress, self.degree)


@register_component("reveal_schedule", "arccos")
class ArccosReveal(RevealSchedule):
    """floor(N · arccos(r)/(π/2)) stay masked: the "arccos" schedule of MaskGIT-pytorch / Halton-MaskGIT."""

    def mask_ratio(self, progress):
        return schedules.arccos_mask_ratio(progress)


class _LengthDependentReveal(RevealSchedule):
    """A γ that also depends on the number of positions N (MaskGIT's exponential and logarithmic)."""

    def mask_ratio_n(self, progress, seq_len):
        raise NotImplementedError

    def mask_ratio(self, progress):  # pragma: no cover - mask_len below is the entry point
        raise TypeError(f"{self.name} needs the number of positions; call mask_len")

    def mask_len(self, ctx):
        progress = schedules.progress(ctx.step, ctx.total_steps).to(ctx.device)
        return clip_mask_len((ctx.seq_len * self.mask_ratio_n(progress, ctx.seq_len)).floor(), ctx.unknown)

    def fused(self):
        return self  # the count reads the step, N and the mask only


@register_component("reveal_schedule", "exponential")
class ExponentialReveal(_LengthDependentReveal):
    """floor(N · (1 − N^(r−1))) stay masked: MaskGIT's "exponential" (concave; official MaskGIT mask_schedule)."""

    def mask_ratio_n(self, progress, seq_len):
        return schedules.exponential_mask_ratio(progress, seq_len)


@register_component("reveal_schedule", "logarithmic")
class LogarithmicReveal(_LengthDependentReveal):
    """floor(N · (−log2 r / log2 N)) stay masked: MaskGIT's "logarithmic" (convex; official mask_schedule)."""

    def mask_ratio_n(self, progress, seq_len):
        return schedules.logarithmic_mask_ratio(progress, seq_len)


@register_component("reveal_schedule", "sigmoid")
class SigmoidReveal(RevealSchedule):
    """open-muse's sigmoid schedule: γ(r) = (σ(e/τ) − σ((s + r(e − s))/τ)) / (σ(e/τ) − σ(s/τ)), s = −3, e = 3."""

    start: float = -3.0
    end: float = 3.0
    tau: float = 1.0

    def validate(self):
        require(self.start < self.end, self.kind, self.name, f"start must be < end, got {self.start} >= {self.end}")
        require(self.tau > 0, self.kind, self.name, f"tau must be > 0, got {self.tau}")

    def mask_ratio(self, progress):
        return schedules.sigmoid_mask_ratio(progress, self.start, self.end, self.tau)
