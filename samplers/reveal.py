"""Reveal (masking) schedules: how many positions stay masked after each step (reveal_schedule kind)."""
from __future__ import annotations

from .components import RevealSchedule, register_component
from .schedules import cosine_mask_ratio, linear_mask_ratio


@register_component("reveal_schedule", "cosine")
class CosineReveal(RevealSchedule):
    """floor(N · cos(π (i+1) / 2T)) stay masked (MaskGIT §3.2; Meissonic's default)."""

    def mask_ratio(self, progress):
        return cosine_mask_ratio(progress)


@register_component("reveal_schedule", "linear")
class LinearReveal(RevealSchedule):
    """floor(N · (1 − (i+1)/T)) stay masked: the same number revealed at every step."""

    def mask_ratio(self, progress):
        return linear_mask_ratio(progress)
