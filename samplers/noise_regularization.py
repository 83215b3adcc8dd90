"""Noise regularization (Shao et al. 2024, "Bag of Design Choices for Inference of High-Resolution Masked
Generative Transformer", arXiv 2411.10781, §3 "Enhanced Inference"; its code's `scheduler.step`).

Gaussian noise on the guided logits before the softmax:

    ℓ ← ℓ + σ(t) · ε,   ε ~ N(0, I) per position and codebook entry,   t = T − 1 − i,
    σ(t) = s · |cos(π t / (T − 1))|,   s = 2   (the paper's code, `add_noise='cos'`)

so σ = s at the first and last steps and ≈ 0 in the middle. The noise changes both the sampled tokens
and their confidences (both read the noisy softmax). Constant and linear σ are offered for ablation.

Where we differ from the reference code: the reference draws ε from the global torch RNG
(`randn_like`), so it is reproducible only through a global seed and depends on what else ran; here ε
comes from each image's own generator, so an image is the same alone or in any batch.

In the `fast` step mode the noise is drawn inside the single pass (`GaussianNoise`, from the counter hash
keyed by the image's generator): the same law, not the same numbers.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from . import counter_random as cr
from . import randomness, schedules
from .components import LogitsProcessor, register_component, require
from .fused_step import FusedLogitsProcessor, LogitsKernel

NOISE_SCHEDULES = ("cosine", "constant", "linear")


@register_component("logits_processor", "noise-regularization")
class NoiseRegularization(LogitsProcessor):
    """Gaussian noise σ(t)·ε on the guided logits, σ(t) = s·|cos(π t/(T−1))| (arXiv 2411.10781 §3)."""

    # 2: σ in float32 as the reference computes it; the noise's last bit may differ from version 1.
    version = "2"
    scale: float = 2.0
    schedule: str = "cosine"

    def validate(self) -> None:
        require(self.scale >= 0, self.kind, self.name, f"scale must be >= 0, got {self.scale}")
        require(self.schedule in NOISE_SCHEDULES, self.kind, self.name,
                f"schedule must be one of {', '.join(NOISE_SCHEDULES)}, got {self.schedule!r}")

    def sigma(self, step: int, total_steps: int) -> float:
        return schedules.noise_regularization_sigma(self.schedule, self.scale, step, total_steps)

    def __call__(self, logits, ctx):
        sigma = self.sigma(ctx.step, ctx.total_steps)
        if sigma == 0.0:
            # No draw at all: with s = 0 the variant is the vanilla sampler, random stream included.
            return logits
        # float32 noise even for half-precision logits: σ·ε must not be rounded to the logits' grid.
        noise = randomness.normal(ctx.generators, tuple(logits.shape[1:]), logits.device, torch.float32)
        # In place in the noise buffer: the same two float32 roundings as ``logits.float() + sigma * noise``
        # (σ·ε, then the sum; a bf16 addend is widened exactly), without the σ·ε, float() and sum temporaries
        # (4 logits-sized copies → 2).
        return noise.mul_(sigma).add_(logits)

    def fused(self):
        return FusedLogitsProcessor(GaussianNoise(), lambda ctx: self.sigma(ctx.step, ctx.total_steps))


@dataclass(frozen=True)
class GaussianNoise(LogitsKernel):
    """ℓ + σ·n inside the fused pass, n standard normal by Box–Muller from the entry's hashed bits."""

    def apply(self, logits, scalar, index, keys):
        bits = cr.hashed_bits(index, keys[:, 0, None, None], keys[:, 1, None, None])
        return logits + scalar * cr.normal_from_bits(bits, cr.second_stream(bits))
