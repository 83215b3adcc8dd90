"""Masked Z-sampling: zig-zag with inversion (Shao et al. 2024, "Bag of Design Choices …", arXiv
2411.10781, §3 "Enhanced Inference"; the reference is its code, `pipeline.forward_ours` and
`scheduler_inv.step_zigzag`), the MGT form of Z-sampling (Bai et al. 2024, arXiv 2412.10891), which
alternates strong-guidance denoising with weak-guidance inversion.

For every step i < T − 1, with m_i positions masked at its start:

1. denoise: a full step i (run guidance w, the variant's processors and correctors) → x′;
2. invert: one forward on x′ at step index i + 1 under the inversion guidance w_inv (default 0: the
   unconditional logits), without processors or correctors as in the reference; q = softmax;
   the n committed positions with the highest max_v q are re-masked, n = (revealed by step 1) − 1;
3. re-denoise: step i again from that state → x_{i+1}, the state kept.

The last step is a plain step, so a generation costs 3(T − 1) + 1 forward passes.

Where we differ from the reference code:
- batch > 1: n and the re-masked set are per image (the reference indexes image 0 and flattens the
  batch, so it only works for one image);
- n is computed from the tokens the denoise step actually revealed (m_i − m_{i+1} − 1), which equals
  the reference's (m_i − 1) − floor(N·cos(π(i+1)/2T)) whenever the cosine count is not clipped, and
  generalises to every reveal schedule (adaptive ones included);
- the reference's inversion step also draws tokens and Gumbel noise whose results it throws away; we
  make no such draws (the image's random stream is used only for what changes the image).
"""
from __future__ import annotations

import torch

from .components import Loop, register_component, require
from .engine import StepContext
from .guidance import FixedGuidance


def most_confident(score: torch.Tensor, candidates: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """Boolean ``(B, N)``: the `count` (per row) candidates with the highest score (ties: lower index first)."""
    masked_score = torch.where(candidates, score, torch.full_like(score, -torch.inf))
    order = masked_score.argsort(dim=-1, descending=True, stable=True)
    rank = torch.empty_like(order).scatter_(-1, order, torch.arange(score.shape[-1], device=score.device).expand_as(order))
    return (rank < count.reshape(-1, 1)) & candidates


@register_component("loop", "zigzag")
class ZigZagLoop(Loop):
    """Masked Z-sampling: denoise, re-mask the most inversion-confident tokens, denoise again (arXiv 2411.10781 §3)."""

    inversion_guidance: float = 0.0
    inversion_processors: bool = False

    def validate(self) -> None:
        require(self.inversion_guidance >= 0, self.kind, self.name,
                f"inversion_guidance must be >= 0 (0 = unconditional), got {self.inversion_guidance}")

    def forward_passes(self, total_steps, step_passes):
        """Two steps and one inversion forward for every i < T − 1, then the last step: 3(T − 1) + 1 calls
        when a step is one forward."""
        return sum(2 * step_passes(step) + 1 for step in range(total_steps - 1)) + step_passes(total_steps - 1)

    def run(self, engine, generation) -> None:
        inversion = FixedGuidance(scale_value=self.inversion_guidance)
        total = generation.total_steps
        for step in range(total):
            if step > 0 and not bool(generation.masked().any()):
                break
            if step == total - 1:
                engine.step(generation, step)
                break
            masked_before = generation.masked().sum(dim=-1)
            engine.step(generation, step, notify=False)
            unknown = generation.masked()
            revealed = masked_before - unknown.sum(dim=-1)
            count = (revealed - 1).clamp(min=0)
            # The inversion forward sees x′ at the next step's timestep (reference: t_{i+1}).
            ctx = StepContext(generation, step + 1, unknown)
            q = engine.guided_probs(generation, ctx, guidance=inversion, processors=self.inversion_processors)
            reopen = most_confident(q.max(dim=-1).values, ~unknown, count)
            generation.tokens = torch.where(reopen, engine.model.mask_token_id, generation.tokens)
            engine.step(generation, step)
