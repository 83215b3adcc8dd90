"""Classifier-free guidance schedules (guidance kind).

CFG on logits: ℓ = ℓ_u + w_i (ℓ_c − ℓ_u) (Ho & Salimans 2022; Meissonic applies it to the transformer's
raw logits, reference §1 step 2). The run's `guidance` value is the base scale w; a schedule shapes w_i.
"""
from __future__ import annotations

from .components import Guidance, register_component, require
from .schedules import linear_value


@register_component("guidance", "constant")
class ConstantGuidance(Guidance):
    """Constant w (Meissonic vanilla): guided only when w > 1, as the reference pipeline does."""

    scale_override: float | None = None

    def scale(self, ctx) -> float:
        w = ctx.guidance_scale if self.scale_override is None else self.scale_override
        # The reference enables CFG only for w > 1 (`do_classifier_free_guidance`); w ≤ 1 means no guidance.
        return w if w > 1.0 else 1.0


@register_component("guidance", "linear")
class LinearGuidance(Guidance):
    """Linearly increasing CFG: w_i goes from `start` to `end` (default: the run's guidance) over the steps."""

    start: float = 1.0
    end: float | None = None

    def validate(self) -> None:
        require(self.start >= 0, "guidance", self.name, f"start must be >= 0, got {self.start}")
        require(self.end is None or self.end >= 0, "guidance", self.name, f"end must be >= 0, got {self.end}")

    def scale(self, ctx) -> float:
        end = ctx.guidance_scale if self.end is None else self.end
        return linear_value(self.start, end, ctx.step, ctx.total_steps)
