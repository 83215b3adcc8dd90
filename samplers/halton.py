"""The Halton reveal order (Besnier et al. 2025, "Halton Scheduler for Masked Generative Image
Transformer", arXiv 2503.17076): positions are revealed in the order of a 2-D Halton
low-discrepancy sequence over the token grid, so that every step's new tokens are spread evenly over
the image and far from each other (less correlated, so sampling them independently costs less).

The order: the Halton points (radical inverse of n in base 2, radical inverse of n in base 3),
n = 0, 1, 2, …, mapped to grid cells (floor(x·rows), floor(y·cols)); the first visit of each cell
gives its rank. Integer arithmetic throughout, so the order is exact for any grid size. How many
positions a step reveals is still the reveal schedule's business; Halton only decides which.
"""
from __future__ import annotations

import functools

import torch

from . import randomness
from .components import Confidence, register_component


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
def halton_order(rows: int, cols: int) -> tuple[int, ...]:
    """Row-major position indices of a rows × cols grid in 2-D Halton order (bases 2 and 3)."""
    if rows < 1 or cols < 1:
        raise ValueError(f"grid must be at least 1x1, got {rows}x{cols}")
    seen: set[int] = set()
    order: list[int] = []
    index = 0
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


def halton_rank(rows: int, cols: int) -> torch.Tensor:
    """rank[position] = when the Halton order visits it (0 = first)."""
    order = torch.tensor(halton_order(rows, cols), dtype=torch.long)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel())
    return rank


@register_component("confidence", "halton")
class HaltonOrder(Confidence):
    """Reveal positions in 2-D Halton low-discrepancy order (Halton-MaskGIT, arXiv 2503.17076).

    Model-free and deterministic: confidence = −(Halton rank), so the earliest-ranked masked positions
    are revealed first. With ``shift = true`` each image's order is rolled by its own random toroidal
    offset (drawn once per generation from the image's generator), which keeps the low-discrepancy
    spread but varies the pattern between images.
    """

    shift: bool = False

    def score(self, probs, sampled, ctx):
        rows, cols = _grid(ctx)
        rank = halton_rank(rows, cols).to(ctx.device)
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


def _grid(ctx) -> tuple[int, int]:
    if ctx.grid is not None and ctx.grid[0] * ctx.grid[1] == ctx.seq_len:
        return ctx.grid
    side = int(round(ctx.seq_len ** 0.5))
    if side * side != ctx.seq_len:
        raise ValueError(f"halton needs the token grid; {ctx.seq_len} positions are not a square and no grid was given")
    return side, side
