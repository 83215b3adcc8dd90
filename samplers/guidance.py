"""Classifier-free guidance schedules (guidance kind).

CFG on logits: ℓ = ℓ_u + w_i (ℓ_c − ℓ_u) (Ho & Salimans 2022; Meissonic applies it to the transformer's
raw logits, and only when w > 1). The run's `guidance` value is the base scale w; a schedule shapes w_i.
Neither Meissonic code base schedules w (both keep it constant over the steps); the shapes follow the
CFG-scheduler study of Wang et al. 2024 ("Analysis of Classifier-Free Guidance Weight Schedulers", arXiv 2404.13040:
increasing schedules — linear, cosine, power — help) and the guidance interval of Kynkäänniemi et
al. 2024 (arXiv 2404.07724), as diffusers' guiders implement it (`start`/`stop` step fractions).
When w_i = 1 the step needs no unconditional branch, and the model is asked for the conditional only.
The negative prompt is the model's business (its unconditional branch).
"""
from __future__ import annotations

from . import schedules
from .components import Guidance, register_component, require
from .schedules import linear_value


def _run_scale(ctx) -> float:
    return float(ctx.guidance_scale)


@register_component("guidance", "constant")
class ConstantGuidance(Guidance):
    """Constant w (Meissonic vanilla): guided only when w > 1, as the reference pipeline does."""

    scale_override: float | None = None

    def scale(self, ctx) -> float:
        w = ctx.guidance_scale if self.scale_override is None else self.scale_override
        # The reference enables CFG only for w > 1 (`do_classifier_free_guidance`); w ≤ 1 means no guidance.
        return w if w > 1.0 else 1.0


@register_component("guidance", "fixed")
class FixedGuidance(Guidance):
    """w exactly as given, whatever the run's scale: 0 = unconditional only, 1 = conditional only.

    Unlike `constant`, w ≤ 1 is honoured (the zig-zag inversion of arXiv 2411.10781's code uses
    w_inv = 0 this way: the unconditional logits alone).
    """

    scale_value: float = 1.0

    def scale(self, ctx) -> float:
        return float(self.scale_value)


@register_component("guidance", "linear")
class LinearGuidance(Guidance):
    """Linearly increasing CFG: w_i goes from `start` to `end` (default: the run's guidance) over the steps.

    Wang et al. 2024 (arXiv 2404.13040), "linear" increasing schedule: w_i = start + (w − start)·i/(T−1).
    """

    start: float = 1.0
    end: float | None = None

    def validate(self) -> None:
        require(self.start >= 0, "guidance", self.name, f"start must be >= 0, got {self.start}")
        require(self.end is None or self.end >= 0, "guidance", self.name, f"end must be >= 0, got {self.end}")

    def scale(self, ctx) -> float:
        end = ctx.guidance_scale if self.end is None else self.end
        return linear_value(self.start, end, ctx.step, ctx.total_steps)


@register_component("guidance", "linear-decreasing")
class LinearDecreasingGuidance(Guidance):
    """Linearly decreasing CFG: w_i goes from `start` (default: the run's guidance) down to `end` (default 1).

    The mirror of `linear` (Wang et al. 2024, arXiv 2404.13040, "decreasing" schedules: usually worse).
    """

    start: float | None = None
    end: float = 1.0

    def validate(self) -> None:
        require(self.start is None or self.start >= 0, "guidance", self.name, f"start must be >= 0, got {self.start}")
        require(self.end >= 0, "guidance", self.name, f"end must be >= 0, got {self.end}")

    def scale(self, ctx) -> float:
        start = _run_scale(ctx) if self.start is None else self.start
        return linear_value(start, self.end, ctx.step, ctx.total_steps)


@register_component("guidance", "cosine")
class CosineGuidance(Guidance):
    """Cosine-increasing CFG: w_i = start + (w − start)·(1 − cos(π i/(T−1)))/2 (arXiv 2404.13040, "cosine").

    Weak guidance while the layout forms, full guidance for the details; flat at both ends.
    """

    start: float = 1.0
    end: float | None = None

    def validate(self) -> None:
        require(self.start >= 0, "guidance", self.name, f"start must be >= 0, got {self.start}")
        require(self.end is None or self.end >= 0, "guidance", self.name, f"end must be >= 0, got {self.end}")

    def scale(self, ctx) -> float:
        end = _run_scale(ctx) if self.end is None else self.end
        return schedules.ramp("cosine", self.start, end, ctx.step, ctx.total_steps)


@register_component("guidance", "power")
class PowerGuidance(Guidance):
    """Power-law CFG: w_i = start + (w − start)·(i/(T−1))^k (arXiv 2404.13040, "power" family)."""

    start: float = 1.0
    end: float | None = None
    exponent: float = 2.0

    def validate(self) -> None:
        require(self.start >= 0, "guidance", self.name, f"start must be >= 0, got {self.start}")
        require(self.end is None or self.end >= 0, "guidance", self.name, f"end must be >= 0, got {self.end}")
        require(self.exponent > 0, "guidance", self.name, f"exponent must be > 0, got {self.exponent}")

    def scale(self, ctx) -> float:
        end = _run_scale(ctx) if self.end is None else self.end
        return schedules.ramp("power", self.start, end, ctx.step, ctx.total_steps, self.exponent)


@register_component("guidance", "interval")
class IntervalGuidance(Guidance):
    """The run's w only for steps int(start·T) ≤ i < int(stop·T), no guidance (w = 1) elsewhere.

    Guidance in a limited interval (Kynkäänniemi et al. 2024, arXiv 2404.07724), with the step
    rule of diffusers' guiders (`ClassifierFreeGuidance(start, stop)`). Outside the interval the model
    is asked for the conditional logits only.
    """

    start: float = 0.0
    stop: float = 1.0

    def validate(self) -> None:
        require(0 <= self.start < self.stop <= 1, "guidance", self.name,
                f"need 0 <= start < stop <= 1, got start={self.start}, stop={self.stop}")

    def scale(self, ctx) -> float:
        first, stop = int(self.start * ctx.total_steps), int(self.stop * ctx.total_steps)
        w = _run_scale(ctx)
        return w if first <= ctx.step < stop and w > 1.0 else 1.0
