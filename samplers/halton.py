"""The Halton reveal order (Besnier et al. 2025, "Halton Scheduler for Masked Generative Image
Transformer", arXiv 2503.17076): positions are revealed in the order of a 2-D Halton
low-discrepancy sequence over the token grid, so that every step's new tokens are spread evenly over
the image and far from each other (less correlated, so sampling them independently costs less).

The order: the Halton points (radical inverse of n in base 2, radical inverse of n in base 3),
n = n₀, n₀ + 1, …, mapped to grid cells (floor(x·rows), floor(y·cols)); the first visit of each cell
gives its rank. The reference (valeoai/Halton-MaskGIT, `Sampler/halton_sampler.py`) starts at
n₀ = 1 (its generator's first point is (1/2, 1/3)), so that is the component's default; n₀ = 0 puts
cell (0, 0) first (this component's order before version 2). Integer arithmetic throughout, so the
order is exact for any grid size, and the sequence runs until every cell is visited. The reference
draws a fixed 10 000 points: they visit every cell of every grid up to 49 × 49 (aMUSEd's 16 × 16,
Meissonic-512's 32 × 32), where its cell list is exactly our order; at 64 × 64 (Meissonic-1024) they
leave 6 of 4 096 cells unvisited, and the reference sampler fails there with a shape error (it puts
its 4 090-row list into an (N, 2) tensor, with or without the roll), so it has no 64 × 64 behaviour.
Our order visits the missing cells last, in Halton order, the sequence's own continuation. How many
positions a step reveals is still the reveal schedule's business (the reference's count is the
`halton-maskgit` reveal schedule below); Halton only decides which.

Randomisation: the reference rolls its cell list by a random offset k ∈ {0, …, N − 1} per image
(`roll = true` here: the same roll of the same order wherever the reference runs; at 64 × 64 we roll
the completed order); `shift = true` is our 2-D toroidal shift of the grid, kept as an alternative.
"""
from __future__ import annotations

import functools
import math

import torch

from . import randomness
from .components import Confidence, RevealSchedule, clip_mask_len, register_component, require
from .fused_step import model_free_confidence


def radical_inverse(index: int, base: int) -> tuple[int, int]:
    """The base-b radical inverse of `index` as an exact fraction (numerator, denominator).

    Mirrors the base-b digits of n around the radix point: n = 6 = 110₂ → 0.011₂ = 3/8.
    """
    numerator, denominator = 0, 1
    while index > 0:
        index, digit = divmod(index, base)
        numerator = numerator * base + digit
        denominator *= base
    return numerator, denominator


@functools.lru_cache(maxsize=32)
def halton_order(rows: int, cols: int, first_index: int = 0) -> tuple[int, ...]:
    """Row-major position indices of a rows × cols grid in 2-D Halton order (bases 2 and 3), from n = first_index."""
    if rows < 1 or cols < 1:
        raise ValueError(f"grid must be at least 1x1, got {rows}x{cols}")
    seen: set[int] = set()
    order: list[int] = []
    index = first_index
    total = rows * cols
    while len(order) < total:
        xn, xd = radical_inverse(index, 2)
        yn, yd = radical_inverse(index, 3)
        cell = (xn * rows // xd) * cols + (yn * cols // yd)
        if cell not in seen:
            seen.add(cell)
            order.append(cell)
        index += 1
    return tuple(order)


def halton_rank(rows: int, cols: int, first_index: int = 0, roll: int = 0) -> torch.Tensor:
    """rank[position] = when the Halton order visits it (0 = first); `roll` rotates the 1-D order as torch.roll."""
    order = torch.tensor(halton_order(rows, cols, first_index), dtype=torch.long)
    if roll:
        order = torch.roll(order, roll, 0)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel())
    return rank


@register_component("confidence", "halton")
class HaltonOrder(Confidence):
    """Reveal positions in 2-D Halton low-discrepancy order (Halton-MaskGIT, arXiv 2503.17076).

    Model-free and deterministic: confidence = −(Halton rank), so the earliest-ranked masked positions
    are revealed first. ``first_index`` is n₀ (1: the reference). With ``roll = true`` each image's
    1-D order is rotated by its own offset k = floor(u·N) (the reference's randomisation, drawn once
    per generation from the image's generator); with ``shift = true`` the grid is instead rolled by a
    random toroidal offset. Both keep the low-discrepancy spread but vary the pattern between images.
    """

    version = "2"
    shift: bool = False
    first_index: int = 1
    roll: bool = False

    def validate(self) -> None:
        require(self.first_index >= 0, self.kind, self.name, f"first_index must be >= 0, got {self.first_index}")
        require(not (self.shift and self.roll), self.kind, self.name,
                "choose one randomisation: roll (the reference's 1-D roll) or shift (a 2-D toroidal shift)")

    def score(self, probs, sampled, ctx):
        rows, cols = _grid(ctx)
        rank = halton_rank(rows, cols, self.first_index).to(ctx.device)
        if self.roll:
            state = ctx.state(self)
            if "rolls" not in state:
                u = randomness.uniform(ctx.generators, (1,), ctx.device, torch.float64)
                state["rolls"] = (u[:, 0] * ctx.seq_len).long().clamp(max=ctx.seq_len - 1)
            ranks = [halton_rank(rows, cols, self.first_index, int(k)) for k in state["rolls"].tolist()]
            return -torch.stack(ranks).to(ctx.device).to(probs.dtype)
        if not self.shift:
            return -rank.to(probs.dtype).expand(probs.shape[0], -1)
        state = ctx.state(self)
        if "offsets" not in state:
            u = randomness.uniform(ctx.generators, (2,), ctx.device, torch.float64)
            state["offsets"] = (u * torch.tensor([rows, cols], device=ctx.device)).long()
        grid_rank = rank.view(rows, cols)
        shifted = [torch.roll(grid_rank, shifts=(int(a), int(b)), dims=(0, 1)).reshape(-1)
                   for a, b in state["offsets"].tolist()]
        return -torch.stack(shifted).to(probs.dtype)

    def fused(self):
        return model_free_confidence(self)


def _grid(ctx) -> tuple[int, int]:
    if ctx.grid is not None and ctx.grid[0] * ctx.grid[1] == ctx.seq_len:
        return ctx.grid
    side = int(round(ctx.seq_len ** 0.5))
    if side * side != ctx.seq_len:
        raise ValueError(f"halton needs the token grid; {ctx.seq_len} positions are not a square and no grid was given")
    return side, side


def halton_maskgit_revealed(step: int, total_steps: int, seq_len: int) -> int:
    """Positions revealed after step i in Halton-MaskGIT: max(i + 1, int(N·(1 − arccos(r)/(π/2)))), r = (i+1)/T.

    In float32, as the reference computes it (a Python ratio made a float32 tensor, arccos, the
    product truncated by int()).
    """
    ratio = torch.tensor((step + 1) / total_steps, dtype=torch.float32)
    revealed_fraction = 1 - torch.arccos(ratio) / (math.pi * 0.5)
    return max(step + 1, int(revealed_fraction * seq_len))


@register_component("reveal_schedule", "halton-maskgit")
class HaltonMaskGITReveal(RevealSchedule):
    """Halton-MaskGIT's count: max(i+1, int(N(1 − arccos(r)/(π/2)))) revealed after step i (arXiv 2503.17076; valeoai/Halton-MaskGIT).

    The arccos schedule written as the reference writes it: it truncates the *revealed* count, where
    `arccos` floors the *masked* count, so the two differ by one token whenever N·arccos(r)/(π/2) is
    not an integer. The masked count N − revealed is then clipped to [1, masked − 1] as every schedule.
    """

    def mask_len(self, ctx):
        revealed = halton_maskgit_revealed(ctx.step, ctx.total_steps, ctx.seq_len)
        count = torch.full((ctx.unknown.shape[0], 1), ctx.seq_len - revealed, device=ctx.device)
        return clip_mask_len(count, ctx.unknown)

    def fused(self):
        return self  # the count reads the step and the mask only
