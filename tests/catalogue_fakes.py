"""Stand-in models and contexts for the catalogue's component tests (no synthetic world needed)."""
from __future__ import annotations

import torch

from samplers.engine import SamplerEngine, StepContext
from samplers.protocol import MaskedTokenModel
from samplers.randomness import make_generator
from samplers.variant import build_variant

MASK = 1000


class FixedLogits(MaskedTokenModel):
    """Pre-drawn cond/uncond logits per step; records every call (tokens, step, with_uncond)."""

    mask_token_id = MASK

    def __init__(self, steps: int, seq_len: int, vocab: int, seed: int = 0, scale: float = 3.0):
        generator = torch.Generator().manual_seed(seed)
        self.cond = torch.randn(steps, seq_len, vocab, generator=generator) * scale
        self.uncond = torch.randn(steps, seq_len, vocab, generator=generator) * scale
        self.codebook_size = vocab
        self.forward_passes = 0
        self.calls: list[tuple[torch.Tensor, int, bool]] = []

    def logits(self, tokens, conditioning, step, total_steps, with_uncond=True):
        self.forward_passes += 1
        self.calls.append((tokens.clone(), step, with_uncond))
        batch = tokens.shape[0]
        cond = self.cond[step].expand(batch, -1, -1).clone()
        return cond, (self.uncond[step].expand(batch, -1, -1).clone() if with_uncond else None)


def generate(model, variant, seeds=(0,), steps=None, guidance=3.0, grid=None, tables=None):
    """Run a variant (name or SamplerVariant) on `model`; returns the Generation."""
    steps = steps if steps is not None else model.cond.shape[0]
    n = model.cond.shape[1]
    side = int(n ** 0.5)
    grid = grid or (side, n // side)
    if isinstance(variant, str):
        variant = build_variant(variant, tables)
    return SamplerEngine(model).generate(variant, {}, list(seeds), grid, steps, guidance)


class _Generation:
    def __init__(self, tokens, total_steps, seeds, grid):
        self.tokens = tokens
        self.total_steps = total_steps
        self.guidance_scale = 3.0
        self.generators = [make_generator(s) for s in seeds]
        self.component_state = {}
        self.grid = grid
        self.model = type("Model", (), {"mask_token_id": MASK})()

    @property
    def device(self):
        return self.tokens.device

    @property
    def seq_len(self):
        return self.tokens.shape[1]


def make_ctx(step: int, total_steps: int, unknown: torch.Tensor, seeds=None, grid=None, generation=None):
    """A StepContext at `step` with `unknown` ``(B, N)`` masked positions (a fresh generation unless given)."""
    if generation is None:
        tokens = torch.where(unknown, MASK, 0)
        generation = _Generation(tokens, total_steps, seeds or list(range(unknown.shape[0])), grid)
    return StepContext(generation, step, unknown)
