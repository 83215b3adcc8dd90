"""Noise regularization (Shao et al. 2024, "Bag of Design Choices for Inference of High-Resolution Masked
Generative Transformer", arXiv 2411.10781, §3 "Enhanced Inference"; reference §2.1).

Gaussian noise on the guided logits before the softmax:

    ℓ ← ℓ + σ(t) · ε,   ε ~ N(0, I) per position and codebook entry,   t = T − 1 − i,
    σ(t) = s · |cos(π t / (T − 1))|,   s = 2   (the paper's code, `add_noise='cos'`)

so σ = s at the first and last steps and ≈ 0 in the middle. The noise changes both the sampled tokens
and their confidences (both read the noisy softmax). Constant and linear σ are offered for ablation.

Where we differ from the reference code: the reference draws ε from the global torch RNG
(`randn_like`), so it is reproducible only through a global seed and depends on what else ran; here ε
comes from each image's own generator, so an image is the same alone or in any batch.
"""
from __future__ import annotations

import torch

from . import randomness, schedules
from .components import LogitsProcessor, register_component, require

NOISE_SCHEDULES = ("cosine", "constant", "linear")


@register_component("logits_processor", "noise-regularization")
class NoiseRegularization(LogitsProcessor):
    """Gaussian noise σ(t)·ε on the guided logits, σ(t) = s·|cos(π t/(T−1))| (arXiv 2411.10781 §3; ref. §2.1)."""

    # 2: σ in float32 as the reference computes it (issue 13); the noise's last bit may differ from version 1.
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
        # (issue 7: 4 logits copies → 2).
        return noise.mul_(sigma).add_(logits)
